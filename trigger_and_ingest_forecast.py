#!/usr/bin/env python3
"""Forecast batch job: ERA5 snapshots from PostgreSQL -> GraphCast API -> `predictions`.

Run by cron / Task Scheduler every 6 hours; see the README ("Running the batch job").
"""
from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime

from graphcast_contract.cycles import parse_cycle
from graphcast_contract.errors import EXIT_CODE_HELP, ConfigError, ExitCode
from graphcast_contract.sources import DEFAULT_SOURCE, InputSource
from modules import forecast_job
from modules.job import schedule
from modules.job.logs import command_settings, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The command line; extend it here (e.g. scheduling options)."""
    parser = argparse.ArgumentParser(
        prog="trigger_and_ingest_forecast.py",
        description="Forecast one 6-hourly cycle (default: now floored to 00/06/12/18 UTC "
                    "minus FORECAST_LAG_DAYS, 6 = 'J-6') and store 20 sites x 4 lead times.",
        epilog=EXIT_CODE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--init-time", metavar="ISO8601",
                        help="cycle to forecast, e.g. 2022-01-01T06:00 (UTC unless an offset "
                             "is given); must be on a 6-hourly slot")
    parser.add_argument("--source", choices=[source.value for source in InputSource],
                        help="initial conditions: era5 (J-6 ERA5, the default) or ifs-opendata "
                             "(ECMWF open data, latest cycle in the store); overrides "
                             "FORECAST_SOURCE")
    parser.add_argument("--fetch", action="store_true",
                        help="with --source ifs-opendata: first fetch the newest published "
                             "open-data cycle into the store (python -m modules.ifs_opendata "
                             "fetch --cycle latest), then forecast it")
    parser.add_argument("--catch-up", type=int, default=0, metavar="N",
                        help="also run up to N earlier cycles that have no successful run, "
                             "oldest first (default 0)")
    parser.add_argument("--dry-run", action="store_true",
                        help="ask the API what the model needs, extract and validate the "
                             "inputs; send no forecast request and write nothing")
    parser.add_argument("--verify", action="store_true",
                        help="afterwards, score every stored forecast whose ERA5 truth is in "
                             "the store (python -m modules.verification without plots)")
    scheduling = parser.add_mutually_exclusive_group()
    scheduling.add_argument("--install-schedule", action="store_true",
                            help="run this job every 6 h with this interpreter (cron entry; "
                                 "Windows: task GraphCast_Pipeline), then exit; with --source "
                                 "ifs-opendata, the live run 8 h after each cycle (fetch, "
                                 "then forecast; task GraphCast_Pipeline_Live)")
    scheduling.add_argument("--uninstall-schedule", action="store_true",
                            help="remove what --install-schedule installed, then exit")
    return parser


def _init_time(text: str) -> datetime:
    try:
        return parse_cycle(text)
    except ValueError as exc:
        raise ConfigError(f"--init-time {exc}") from None


def main(argv: list[str] | None = None, now: datetime | None = None) -> int:
    """Run the command; `now` (default: the clock) picks the J-6 cycle, for tests."""
    args = build_parser().parse_args(argv)
    if args.install_schedule or args.uninstall_schedule:
        return schedule.command(install=args.install_schedule,
                                source=InputSource(args.source or DEFAULT_SOURCE))
    settings = command_settings()
    if settings is None:
        return ExitCode.USAGE
    setup_logging(settings.log_dir, settings.log_level)
    log = logging.getLogger("forecast_job")
    try:
        if args.catch_up < 0:
            raise ConfigError("--catch-up must be 0 or more")
        options = forecast_job.JobOptions(
            init_time=_init_time(args.init_time) if args.init_time else None,
            catch_up=args.catch_up, dry_run=args.dry_run, verify=args.verify,
            source=InputSource(args.source) if args.source else None, fetch=args.fetch)
    except ConfigError as exc:
        log.error("%s", exc)
        return exc.exit_code
    try:
        return forecast_job.run(settings, options, now)
    except Exception:
        log.exception("unexpected error")
        return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
