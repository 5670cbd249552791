"""`python -m modules.era5_loader`: the documented name of `modules.inputs.cli`."""
import sys

from modules.inputs.cli import main

if __name__ == "__main__":
    sys.exit(main())
