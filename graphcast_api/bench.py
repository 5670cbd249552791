"""`python -m graphcast_api.bench`: alias of `python -m graphcast_api bench` (tools/bench.py)."""
import sys

from graphcast_api.__main__ import alias_main

if __name__ == "__main__":
    sys.exit(alias_main("bench"))
