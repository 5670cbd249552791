#!/usr/bin/env python3
"""Forecast batch job: ERA5 snapshots from PostgreSQL -> GraphCast API -> `predictions`.

Run by cron / Task Scheduler every 6 hours; see the README ("Running the batch job").
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from functools import partial

from config.settings import Settings
from graphcast_contract.cycles import parse_cycle
from graphcast_contract.errors import EXIT_CODE_HELP, ConfigError, ExitCode
from graphcast_contract.sources import DEFAULT_SOURCE, InputSource
from modules import forecast_job
from modules.job import schedule
from modules.job.logs import command_settings, setup_logging

MAX_CATCH_UP = 4 * 365  # earlier cycles one run may add: a year's; longer ranges are backfills

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
                             f"oldest first (default 0, at most {MAX_CATCH_UP})")
    parser.add_argument("--dry-run", action="store_true",
                        help="ask the API what the model needs, extract and validate the "
                             "inputs; send no forecast request and write nothing")
    parser.add_argument("--verify", action="store_true",
                        help="afterwards, score every stored forecast whose ERA5 truth is in "
                             "the store (python -m modules.verification without plots)")
    add_backfill_options(parser)
    scheduling = parser.add_mutually_exclusive_group()
    scheduling.add_argument("--install-schedule", action="store_true",
                            help="run this job every 6 h with this interpreter and --catch-up "
                                 "1 (cron entry; Windows: task GraphCast_Pipeline), then exit; "
                                 "with --source "
                                 "ifs-opendata, the live run 8 h after each cycle (fetch, "
                                 "then forecast; task GraphCast_Pipeline_Live)")
    scheduling.add_argument("--uninstall-schedule", action="store_true",
                            help="remove what --install-schedule installed, then exit")
    return parser


def add_backfill_options(parser: argparse.ArgumentParser) -> None:
    """`--backfill` and what only it uses (README: "Backfill on a cluster")."""
    group = parser.add_argument_group(
        "backfill", "reforecast a range of cycles on Ray workers that each load the model "
                    "(needs requirements-backfill.txt and requirements-service.txt)")
    group.add_argument("--backfill", nargs=2, metavar=("START", "END"),
                       help="every cycle from START to END (inclusive, as --init-time takes "
                            "them) without a successful run of this model and source")
    group.add_argument("--workers", type=int, metavar="N",
                       help="workers, each holding the model (default: what the cores and "
                            "memory allow; on a cluster, its GPUs or CPUs / 4)")
    group.add_argument("--cluster", metavar="ADDRESS",
                       help="join this Ray cluster (ray://HOST:PORT or auto) instead of "
                            "starting one here; needs DATABASE_URL")
    group.add_argument("--checkpoint", metavar="FILE",
                       help="model checkpoint (default: GRAPHCAST_API_CHECKPOINT)")
    group.add_argument("--stats-dir", metavar="DIR",
                       help="normalisation statistics (default: GRAPHCAST_API_STATS_DIR)")
    group.add_argument("--precision", help="fp32 or bf16 (default: GRAPHCAST_API_PRECISION, "
                                           "else the engine's choice)")
    group.add_argument("--device", help="cpu, cuda... (default: GRAPHCAST_API_DEVICE, else "
                                        "the engine's choice)")


def _backfill(args: argparse.Namespace, settings: Settings) -> Callable[[], int]:
    """The `--backfill` run, checked and ready (imports Ray and the engine: only here)."""
    try:
        # Ray only looked up here: the driver imports it once it has turned Ray's multi-node
        # switch off for a local instance (backfill.driver._import_ray), read at that import.
        if importlib.util.find_spec("ray") is None:
            raise ModuleNotFoundError("No module named 'ray'", name="ray")
        from backfill.driver import BackfillOptions, run_backfill
    except ModuleNotFoundError as exc:  # requirements-backfill.txt is not installed
        raise ConfigError(f"--backfill needs the packages of requirements-backfill.txt "
                          f"({exc.name or exc} is not installed): pip install -r "
                          "requirements-backfill.txt") from None
    from graphcast_api.settings import SettingsError, load_service_settings

    if args.init_time or args.catch_up or args.dry_run or args.fetch:
        raise ConfigError("--backfill excludes --init-time, --catch-up, --dry-run and --fetch")
    if args.workers is not None and args.workers < 1:
        raise ConfigError("--workers must be 1 or more")
    try:
        model = load_service_settings(args)
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
    start, end = (_init_time(text, "--backfill") for text in args.backfill)
    return partial(run_backfill, settings, BackfillOptions(
        start=start, end=end, model=model, workers=args.workers, cluster=args.cluster,
        verify=args.verify, source=InputSource(args.source) if args.source else None))


def _scheduled(args: argparse.Namespace, settings: Settings,
               now: datetime | None) -> Callable[[], int]:
    """The scheduled job's run (one cycle, optional catch-up or dry run), checked and ready."""
    backfill_only = ("workers", "cluster", "checkpoint", "stats_dir", "precision", "device")
    given = [f"--{name.replace('_', '-')}" for name in backfill_only
             if getattr(args, name) is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: only with --backfill")
    if not 0 <= args.catch_up <= MAX_CATCH_UP:
        raise ConfigError(f"--catch-up must be 0 to {MAX_CATCH_UP} (a year of cycles; "
                          "--backfill takes longer ranges)")
    options = forecast_job.JobOptions(
        init_time=_init_time(args.init_time) if args.init_time else None,
        catch_up=args.catch_up, dry_run=args.dry_run, verify=args.verify,
        source=InputSource(args.source) if args.source else None, fetch=args.fetch)
    return partial(forecast_job.run, settings, options, now)


def _init_time(text: str, option: str = "--init-time") -> datetime:
    try:
        return parse_cycle(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {exc}") from None


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
        run = _backfill(args, settings) if args.backfill else _scheduled(args, settings, now)
    except ConfigError as exc:
        log.error("%s", exc)
        return exc.exit_code
    # --backfill handles Ctrl-C itself (it lets the running cycles finish)
    stoppable = nullcontext() if args.backfill else forecast_job.stop_signals_interrupt()
    try:
        with stoppable:
            return run()
    except KeyboardInterrupt as exc:  # outside a cycle (which records its own)
        log.error("%s", forecast_job.interrupted(exc))
        return ExitCode.INTERRUPTED
    except Exception:
        log.exception("unexpected error")
        return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
