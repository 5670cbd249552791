"""Command line of the GraphCast inference package: `python -m graphcast_api COMMAND ...`.

Each command lives in its own module, which registers a sub-parser and sets `run` (a function
of the parsed arguments returning the exit code). Keep imports here light (no torch): heavy
dependencies belong inside the `run` functions.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from graphcast_api.service import serve
from graphcast_api.tools import weights


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="python -m graphcast_api",
                                     description="GraphCast inference: weights, service.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    weights.add_commands(commands)
    serve.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command, return its exit code."""
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
