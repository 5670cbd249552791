"""Alias keeping `python -m graphcast_api.synthetic_era5` working; the code is in tools/synthetic_era5.py."""
import sys

from graphcast_api.tools.synthetic_era5 import main

if __name__ == "__main__":
    sys.exit(main())
