"""`python -m modules.era5_loader`: the documented name of `python -m modules.inputs`, where
`load` may be left out (`python -m modules.era5_loader FILE ...`), as users call it."""
from __future__ import annotations

import sys

from modules.inputs.cli import COMMANDS, main


def with_command(argv: list[str]) -> list[str]:
    """`argv` with `load` in front unless it already starts with a command or asks for help."""
    if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        return ["load", *argv]
    return argv


if __name__ == "__main__":
    sys.exit(main(with_command(sys.argv[1:]), prog="python -m modules.era5_loader"))
