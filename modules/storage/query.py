"""Run one SQL statement against the job's database (embedded or DATABASE_URL), print the rows.

    python -m modules.query "SELECT forecast_time, COUNT(*), AVG(value) FROM predictions
                             GROUP BY forecast_time ORDER BY forecast_time;"
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import psycopg2

from graphcast_contract.errors import DatabaseError, ExitCode, exit_code_help
from modules.job.logs import command_settings, redact
from modules.storage.db import open_database


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modules.query",
        description="Run one SQL statement on the job's database (DATABASE_URL, else the "
                    "embedded server) and print its rows, ' | '-separated.",
        epilog=exit_code_help(ExitCode.USAGE, ExitCode.DATABASE),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sql", metavar="SQL", help="the statement, quoted as one argument")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the statement, return the exit code."""
    sql = build_parser().parse_args(argv).sql
    settings = command_settings()
    if settings is None:
        return ExitCode.USAGE
    try:
        conn = open_database(settings)
        with conn, conn.cursor() as cur:
            cur.execute(sql)
            if cur.description is None:
                print(f"{cur.rowcount} row(s) affected")
                return ExitCode.OK
            print(" | ".join(col.name for col in cur.description))
            for row in cur.fetchall():
                print(" | ".join(str(value) for value in row))
        conn.close()
    except (DatabaseError, psycopg2.Error) as exc:
        print(f"error: {redact(str(exc).strip())}", file=sys.stderr)
        return ExitCode.DATABASE
    return ExitCode.OK
