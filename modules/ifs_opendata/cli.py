"""The open-data command line: fetch a cycle into the input store, report its cycles.

    python -m modules.ifs_opendata fetch --cycle {latest|ISO8601} [--base-url URL]
                                         [--grid-step DEG] [--cache-dir DIR]
    python -m modules.ifs_opendata status [--days N] [--until YYYY-MM-DD] [--grid-step DEG]

The base URL defaults to the IFS_OPENDATA_URL setting, else ECMWF's portal; any mirror
with the same layout works (e.g. https://ecmwf-forecasts.s3.eu-central-1.amazonaws.com),
over https (plain http only on a loopback host).
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path

import psycopg2
import requests

from config.settings import Settings
from graphcast_contract.cycles import iso_utc, parse_cycle
from graphcast_contract.errors import DatabaseError, ExitCode, MissingDataError, exit_code_help
from graphcast_contract.sources import ECMWF_OPENDATA_URL, InputSource
from graphcast_contract.urls import ALLOWED_URLS, is_allowed_url
from modules.ifs_opendata.download import (
    CacheError,
    DownloadError,
    MissingFieldError,
    RunDownloader,
)
from modules.ifs_opendata.fetch import DEFAULT_GRID_STEP, fetch_cycle
from modules.inputs.cli import MAX_STATUS_DAYS, days_arg, grid_step_arg, print_status
from modules.inputs.sources import InvalidDataError, UnreadableFileError
from modules.job.logs import command_settings, setup_console_logging
from modules.storage.db import open_database

log = logging.getLogger("ifs_opendata")

LATEST = "latest"


def _cycle(text: str) -> datetime | str:
    if text == LATEST:
        return LATEST
    try:
        return parse_cycle(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line: `fetch` and `status`."""
    parser = argparse.ArgumentParser(
        prog="python -m modules.ifs_opendata",
        description="Fill the input store from ECMWF's real-time open data (IFS HRES step 0, "
                    "CC-BY-4.0) for GraphCast_operational, tagged ifs-opendata.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch = commands.add_parser(
        "fetch", help="download a cycle's T-6h and T0 analyses and store them",
        description="Download (byte ranges of the published .index, resumable, cached) and "
                    "store the step-0 fields of the runs at T0-6h and T0.",
        epilog=exit_code_help(ExitCode.USAGE, ExitCode.NO_DATA, ExitCode.DATABASE,
                              ExitCode.UNREADABLE_FILE, ExitCode.DOWNLOAD_FAILED,
                              ExitCode.OUTPUT_FAILED),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fetch.add_argument("--cycle", type=_cycle, required=True, metavar="{latest|ISO8601}",
                       help="T0 on a 6-hourly slot, or 'latest': the newest run published")
    fetch.add_argument("--base-url", default=None, metavar="URL",
                       help=f"open-data root, {ALLOWED_URLS} (default: the "
                            f"IFS_OPENDATA_URL setting, else {ECMWF_OPENDATA_URL})")
    fetch.add_argument("--grid-step", type=grid_step_arg, default=DEFAULT_GRID_STEP,
                       metavar="DEG", help="store on this grid, conservatively regridded "
                                           f"(default {DEFAULT_GRID_STEP}: as published)")
    fetch.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                       help="downloaded fields (default: the IFS_OPENDATA_CACHE_DIR setting, "
                            "data/ifs-opendata)")
    fetch.set_defaults(run=run_fetch)
    status = commands.add_parser(
        "status", help="which cycles are complete, incomplete or absent",
        description="List the 6-hourly cycles of the last N days as complete, incomplete "
                    "(with the missing fields) or absent in the store's open-data fields.",
        epilog=exit_code_help(ExitCode.USAGE, ExitCode.DATABASE),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    status.add_argument("--days", type=days_arg, default=3,
                        help=f"how many days, at most {MAX_STATUS_DAYS} (default 3)")
    status.add_argument("--until", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="last day (default: today, UTC)")
    status.add_argument("--grid-step", type=grid_step_arg, default=DEFAULT_GRID_STEP,
                        metavar="DEG", help=f"the model grid (default {DEFAULT_GRID_STEP})")
    status.set_defaults(run=lambda args, settings: print_status(
        settings, args.days, args.until, args.grid_step, InputSource.IFS_OPENDATA))
    return parser


def latest_run(downloader: RunDownloader) -> datetime:
    """The newest run whose step-0 file is published (the client probes the last 2 days)."""
    try:
        naive = downloader.client.latest(step=0, type="fc", stream="oper")
        return naive.replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise DownloadError(f"no run published in the last 2 days at {downloader.client.url} "
                            f"({exc})") from exc
    except requests.RequestException as exc:
        raise DownloadError(f"{downloader.client.url}: unreachable ({exc})") from exc


def run_fetch(args: argparse.Namespace, settings: Settings) -> int:
    """`fetch`: see `fetch_into_store`."""
    return fetch_into_store(settings, args.cycle, args.grid_step, args.base_url, args.cache_dir)


def fetch_into_store(settings: Settings, cycle: datetime | str, grid_step: float,
          base_url: str | None = None, cache_dir: Path | None = None) -> int:
    """Fetch one cycle (or LATEST) onto the `grid_step` grid; one log line on success, one
    error line and a distinct exit code else (also the live job's `--fetch`)."""
    base_url = base_url or settings.ifs_opendata_url
    if not is_allowed_url(base_url):
        log.error("the open-data URL (--base-url, IFS_OPENDATA_URL) must be %s: %s",
                  ALLOWED_URLS, base_url)
        return ExitCode.USAGE
    downloader = RunDownloader(base_url.rstrip("/"), cache_dir or settings.ifs_opendata_cache_dir)
    try:
        init_time = latest_run(downloader) if cycle == LATEST else cycle
        conn = open_database(settings)
    except DownloadError as exc:
        log.error("%s", exc)
        return ExitCode.DOWNLOAD_FAILED
    except (DatabaseError, psycopg2.Error) as exc:
        log.error("database unavailable: %s", exc)
        return ExitCode.DATABASE
    try:
        result = fetch_cycle(conn, downloader, init_time, grid_step,
                             settings.era5_min_grid_step)
    except DownloadError as exc:
        log.error("%s (nothing stored)", exc)
        return ExitCode.DOWNLOAD_FAILED
    except CacheError as exc:
        log.error("%s (nothing stored)", exc)
        return ExitCode.OUTPUT_FAILED
    except (MissingFieldError, MissingDataError, InvalidDataError) as exc:
        log.error("%s (nothing stored)", exc)
        return ExitCode.NO_DATA
    except UnreadableFileError as exc:
        log.error("%s (nothing stored)", exc)
        return ExitCode.UNREADABLE_FILE
    except psycopg2.Error as exc:
        log.error("database error: %s", str(exc).strip())
        return ExitCode.DATABASE
    finally:
        conn.close()
    log.info("cycle %s: stored %d open-data fields on the %d x %d grid; static fields %s",
             iso_utc(result.init_time), result.fields, *result.grid.shape, result.statics)
    return ExitCode.OK


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command, return its exit code."""
    args = build_parser().parse_args(argv)
    setup_console_logging()
    settings = command_settings()
    if settings is None:
        return ExitCode.USAGE
    return args.run(args, settings)
