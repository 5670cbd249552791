"""`python -m modules.verification` runs `modules.verification.cli`."""
import sys

from modules.verification.cli import main

sys.exit(main())
