"""Alias keeping `python -m graphcast_api.predict` working; the code is in tools/predict.py."""
import sys

from graphcast_api.tools.predict import main

if __name__ == "__main__":
    sys.exit(main())
