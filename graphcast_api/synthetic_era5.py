"""`python -m graphcast_api.synthetic_era5`: alias of `python -m graphcast_api synthetic-era5`
(tools/synthetic_era5.py)."""
import sys

from graphcast_api.__main__ import alias_main

if __name__ == "__main__":
    sys.exit(alias_main("synthetic-era5"))
