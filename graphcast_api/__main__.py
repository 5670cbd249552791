"""`python -m graphcast_api <command>`: the service's command line."""
from __future__ import annotations

import argparse
import sys

from graphcast_api import serve


def main(argv: list[str] | None = None) -> int:
    """Parse the subcommand and run it; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m graphcast_api")
    subcommands = parser.add_subparsers(required=True, metavar="command")
    serve.add_parser(subcommands)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
