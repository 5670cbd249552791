"""The input store's command line: load files, download from the CDS, report cycle status.

    python -m modules.inputs load FILE [FILE ...] [--grid-step DEG]
    python -m modules.inputs download --date YYYY-MM-DD [--date ...] [--dir DIR]
    python -m modules.inputs status [--days N] [--until YYYY-MM-DD]

`python -m modules.era5_loader` is the same command; there `load` may be left out.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg2

from config.settings import Settings
from graphcast_contract.cycles import cycles_of_days
from graphcast_contract.errors import DatabaseError, ExitCode, exit_code_help
from graphcast_contract.model_spec import global_grid
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import InputSource
from graphcast_contract.variables import PRECIPITATION_6HR
from modules.inputs.era5_download import FORMATS, download_day
from modules.inputs.era5_variables import DEFAULT_GRID_STEP
from modules.inputs.loader import load_file
from modules.inputs.sources import InvalidDataError, UnreadableFileError, sniff_format
from modules.inputs.status import cycle_status
from modules.job.logs import command_settings, setup_console_logging
from modules.storage.db import open_database

log = logging.getLogger("era5_loader")

COMMANDS = ("load", "download", "status")
DEFAULT_DOWNLOAD_DIR = PROJECT_ROOT / "data" / "era5"
# cdsapi's defaults (500 tries, 120 s apart) would keep a daily cron job retrying a CDS
# outage for about 16.7 hours; these give up after about two minutes a request, and the
# next day's run (or a re-run) catches up.
CDS_RETRY_MAX = 5
CDS_SLEEP_MAX_S = 30
MAX_STATUS_DAYS = 36_525  # a century of cycles: ERA5 begins in 1940


def load_files(settings: Settings, paths: Sequence[Path], grid_step: float | None) -> int:
    """Load `paths` in order, one transaction each; the exit code of the first failure."""
    try:
        for path in paths:
            sniff_format(path)
    except UnreadableFileError as exc:
        log.error("%s", exc)
        return ExitCode.UNREADABLE_FILE
    try:
        conn = open_database(settings)
    except (DatabaseError, psycopg2.Error) as exc:
        log.error("database unavailable: %s", exc)
        return ExitCode.DATABASE
    try:
        for path in paths:
            result = load_file(conn, path, grid_step, min_grid_step=settings.era5_min_grid_step)
            log.info("%s: loaded %d fields at %d valid times and %d static fields on the "
                     "%d x %d grid%s", path, result.fields, len(result.valid_times),
                     result.static_fields, *result.grid.shape,
                     f"; {PRECIPITATION_6HR} derived at {len(result.precipitation_6hr)} times"
                     if result.precipitation_6hr else "")
    except UnreadableFileError as exc:
        log.error("%s (nothing loaded from this file)", exc)
        return ExitCode.UNREADABLE_FILE
    except InvalidDataError as exc:
        log.error("%s (nothing loaded from this file)", exc)
        return ExitCode.NO_DATA
    except psycopg2.Error as exc:
        log.error("database error: %s", str(exc).strip())
        return ExitCode.DATABASE
    finally:
        conn.close()
    return ExitCode.OK


def grid_step_arg(text: str) -> float:
    """argparse type: a grid step in degrees that divides 180 and 360."""
    try:
        step = float(text)
        global_grid(step)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return step


def days_arg(text: str) -> int:
    """argparse type: `status --days`, from 1 to MAX_STATUS_DAYS (0 listed nothing, and a
    million days overflowed the date arithmetic)."""
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= days <= MAX_STATUS_DAYS:
        raise argparse.ArgumentTypeError(f"{days} is not from 1 to {MAX_STATUS_DAYS}")
    return days


def build_parser(prog: str = "python -m modules.inputs") -> argparse.ArgumentParser:
    """The command line: one sub-command per action."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Fill the input store with ERA5 and say which cycles it can "
                               "serve.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    load = commands.add_parser(
        "load", help="load ERA5 NetCDF/GRIB files into the store",
        description="Load ERA5 NetCDF/GRIB files into the store, one transaction per file.",
        epilog=exit_code_help(ExitCode.USAGE, ExitCode.UNREADABLE_FILE, ExitCode.NO_DATA,
                              ExitCode.DATABASE),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    load.add_argument("files", nargs="+", type=Path, metavar="FILE",
                      help="GraphCast example-layout NetCDF, or CDS ERA5 NetCDF/GRIB")
    load.add_argument("--grid-step", type=grid_step_arg, default=None, metavar="DEG",
                      help="regrid (conservatively) to this global grid step; default: the "
                           f"file's own grid for GraphCast-layout files, {DEFAULT_GRID_STEP} "
                           "for CDS files")
    load.set_defaults(run=lambda args, settings: load_files(settings, args.files,
                                                            args.grid_step))
    download = commands.add_parser(
        "download", help="download a day's ERA5 from the CDS, then load it",
        description="Download from the Copernicus Climate Data Store the ERA5 that the four "
                    "cycles of each date need (cdsapi; key in ~/.cdsapirc or CDSAPI_URL and "
                    "CDSAPI_KEY), then load it.",
        epilog=exit_code_help(ExitCode.USAGE, ExitCode.DOWNLOAD_FAILED, ExitCode.UNREADABLE_FILE,
                              ExitCode.NO_DATA, ExitCode.DATABASE),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    download.add_argument("--date", dest="dates", action="append", required=True,
                          type=date.fromisoformat, metavar="YYYY-MM-DD", help="repeatable")
    download.add_argument("--dir", type=Path, default=DEFAULT_DOWNLOAD_DIR,
                          help=f"where the files go (default: {DEFAULT_DOWNLOAD_DIR})")
    download.add_argument("--format", choices=sorted(FORMATS), default="netcdf")
    download.add_argument("--grid-step", type=grid_step_arg, default=DEFAULT_GRID_STEP,
                          metavar="DEG", help=f"grid to store on (default {DEFAULT_GRID_STEP})")
    download.set_defaults(run=lambda args, settings: download_and_load(
        settings, args.dates, args.dir, args.format, args.grid_step))
    status = commands.add_parser(
        "status", help="which cycles are complete, incomplete or absent",
        description="List the 6-hourly cycles of the last N days as complete, incomplete "
                    "(with the missing fields) or absent in the store.",
        epilog=exit_code_help(ExitCode.USAGE, ExitCode.DATABASE),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--days", type=days_arg, default=10,
                        help=f"how many days, at most {MAX_STATUS_DAYS} (default 10)")
    status.add_argument("--until", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="last day (default: today, UTC)")
    status.add_argument("--grid-step", type=grid_step_arg, default=DEFAULT_GRID_STEP, metavar="DEG",
                        help=f"the model grid (default {DEFAULT_GRID_STEP})")
    status.set_defaults(run=lambda args, settings: print_status(settings, args.days, args.until,
                                                                args.grid_step))
    return parser


def download_and_load(settings: Settings, dates: Sequence[date], directory: Path, data_format: str,
                      grid_step: float) -> int:
    """Download and load each date in turn; the exit code of the first failure."""
    try:
        import cdsapi

        client = cdsapi.Client(quiet=True, progress=False, retry_max=CDS_RETRY_MAX,
                               sleep_max=CDS_SLEEP_MAX_S)
    except Exception as exc:  # cdsapi raises a bare Exception for missing configuration
        log.error("cannot set up the CDS client: %s (put your key in ~/.cdsapirc or set "
                  "CDSAPI_URL and CDSAPI_KEY)", exc)
        return ExitCode.DOWNLOAD_FAILED
    for day in sorted(set(dates)):
        try:
            paths = download_day(client, day, directory, data_format)
        except Exception as exc:  # requests, cdsapi and ecmwf-datastores errors alike
            log.error("CDS download for %s failed: %s", day, exc)
            return ExitCode.DOWNLOAD_FAILED
        code = load_files(settings, paths, grid_step)
        if code != ExitCode.OK:
            return code
    return ExitCode.OK


def print_status(settings: Settings, days: int, until: date | None, grid_step: float,
                 source: str = InputSource.ERA5) -> int:
    """Print each cycle of the `days` days up to `until` as complete, incomplete or absent
    from `source`'s fields on the `grid_step` grid; a usage error, the database untouched,
    when those days reach before year 1."""
    until = until or datetime.now(timezone.utc).date()
    try:
        init_times = cycles_of_days(until, days)
    except ValueError as exc:
        log.error("%s", exc)
        return ExitCode.USAGE
    try:
        conn = open_database(settings)
        with conn, conn.cursor() as cur:
            statuses = cycle_status(cur, global_grid(grid_step), init_times, source)
        conn.close()
    except (DatabaseError, psycopg2.Error) as exc:
        log.error("database error: %s", str(exc).strip())
        return ExitCode.DATABASE
    for item in statuses:
        line = f"{item.init_time:%Y-%m-%dT%H:%M}Z  {item.state}"
        if item.missing:
            line += "  missing: " + "; ".join(item.missing)
        print(line)
    return ExitCode.OK


def main(argv: Sequence[str] | None = None, prog: str = "python -m modules.inputs") -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command, return its exit code."""
    args = build_parser(prog).parse_args(argv)
    setup_console_logging()
    settings = command_settings(os.environ.get("CDSAPI_KEY"))
    if settings is None:
        return ExitCode.USAGE
    return args.run(args, settings)
