"""`python -m modules.verification`: pair, score, print the table and write the plots.

    python -m modules.verification [--since DATE] [--model NAME]
        [--source era5|ifs-opendata] [--plot-dir DIR]
"""
from __future__ import annotations

import argparse
import logging
from datetime import datetime, timezone
from pathlib import Path

import psycopg2

from graphcast_contract.errors import DatabaseError, ExitCode, exit_code_help
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import InputSource
from modules.job.logs import command_settings, setup_console_logging
from modules.storage.db import open_database
from modules.verification import report
from modules.verification.scores import verify

log = logging.getLogger("verification")

DEFAULT_PLOT_DIR = PROJECT_ROOT / "reports"


def _parse_since(text: str) -> datetime:
    """An ISO 8601 date or time; UTC when it carries no offset."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modules.verification",
        description="Verify stored forecasts against the analyses of their own source (ERA5,"
                    " IFS open data) in the store, update forecast_scores, print a score"
                    " table and write plots.",
        epilog=exit_code_help(ExitCode.USAGE, ExitCode.DATABASE, ExitCode.OUTPUT_FAILED),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--since", type=_parse_since, metavar="DATE",
                        help="only pair forecasts initialised at or after DATE (ISO 8601,"
                             " UTC unless an offset is given); scores always cover every"
                             " stored pair")
    parser.add_argument("--model", metavar="NAME",
                        help="only pair, score and report this model (default: all)")
    parser.add_argument("--source", choices=[source.value for source in InputSource],
                        help="only pair, score and report forecasts of this source"
                             " (default: all)")
    parser.add_argument("--plot-dir", type=Path, default=DEFAULT_PLOT_DIR, metavar="DIR",
                        help=f"where the PNG plots go (default: {DEFAULT_PLOT_DIR})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    setup_console_logging()
    settings = command_settings()
    if settings is None:
        return ExitCode.USAGE
    try:
        conn = open_database(settings)
        try:
            summary = verify(conn, since=args.since, model=args.model, source=args.source)
        finally:
            conn.close()
    except (DatabaseError, psycopg2.Error) as exc:
        log.error("database error: %s", str(exc).strip())
        return ExitCode.DATABASE
    print(report.format_table(summary.scores))
    try:
        paths = report.write_plots(summary.scores, args.plot_dir)
    except OSError as exc:
        log.error("cannot write plots to %s: %s", args.plot_dir, exc)
        return ExitCode.OUTPUT_FAILED
    log.info("verification: %s; plots: %s", summary,
             ", ".join(str(p) for p in paths) or "none (no scores)")
    return ExitCode.OK

