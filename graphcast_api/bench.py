"""Alias keeping `python -m graphcast_api.bench` working; the code is in tools/bench.py."""
import sys

from graphcast_api.tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
