"""Command line of the GraphCast inference package: `python -m graphcast_api COMMAND ...`.

Each command lives in its own module, which registers a sub-parser (`add_commands`) and sets
`run` (a function of the parsed arguments returning the exit code) and lists its exit codes
in `EXIT_CODES`. Keep imports here light (no torch): heavy dependencies belong inside the
`run` functions, so that `--help` answers at once.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from graphcast_api.service import serve
from graphcast_api.tools import bench, predict, synthetic_era5, weights
from graphcast_contract.errors import exit_code_help

COMMAND_MODULES = (serve, predict, bench, weights, synthetic_era5)
EXIT_CODES = tuple(sorted({code for module in COMMAND_MODULES for code in module.EXIT_CODES}))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m graphcast_api",
        description="GraphCast inference: service, predictions, benchmark, weights, data.",
        epilog=exit_code_help(*EXIT_CODES) + "\n(each command's --help lists its own)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command, return its exit code."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


def alias_main(command: str) -> int:
    """`python -m graphcast_api.COMMAND ARGS`: the same as
    `python -m graphcast_api COMMAND ARGS`."""
    return main([command, *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
