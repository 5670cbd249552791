"""`python -m modules.inputs {load,download,status}` runs `modules.inputs.cli`."""
import sys

from modules.inputs.cli import main

sys.exit(main())
