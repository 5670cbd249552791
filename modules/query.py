"""`python -m modules.query "SQL"`: the documented name of `modules.storage.query`."""
import sys

from modules.storage.query import main

if __name__ == "__main__":
    sys.exit(main())
