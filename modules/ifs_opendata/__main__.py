"""`python -m modules.ifs_opendata {fetch,status}` runs `modules.ifs_opendata.cli`."""
import sys

from modules.ifs_opendata.cli import main

sys.exit(main())
