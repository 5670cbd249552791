"""`python -m graphcast_api.predict`: alias of `python -m graphcast_api predict`
(tools/predict.py)."""
import sys

from graphcast_api.__main__ import alias_main

if __name__ == "__main__":
    sys.exit(alias_main("predict"))
