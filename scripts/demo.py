"""The quick-start demo: one forecast cycle end to end on the embedded defaults.

    python scripts/demo.py [--offline] [--port 8001] [--base-url URL]
    python scripts/demo.py --live [--port 8002] [--base-url URL] [--opendata-url URL]

(`scripts/demo.sh` and `scripts\\demo.ps1` create .venv, install the requirements and run this.)

1. Mode: online when DeepMind's bucket answers (or its files are already in weights/),
   offline otherwise or with --offline.
2. Data and weights, made or fetched once:
   - online: the official GraphCast_small checkpoint and statistics and the official ERA5
     example (1.0 degree, 13 levels, 2022-01-01, 6 frames) into weights/;
   - offline: a synthetic ERA5-like dataset (`python -m graphcast_api.synthetic_era5`), a
     random-weights GraphCast_small checkpoint in the official format and statistics of
     realistic magnitude into data/demo/.
3. Loads the dataset into the ERA5 store (`python -m modules.era5_loader`), starts the API
   (`python -m graphcast_api serve`) on 127.0.0.1:PORT, waits for /health, runs
   `trigger_and_ingest_forecast.py --init-time 2022-01-01T06:00`, prints the seed's check
   query and the 20 sites' forecasts, stops the service it started, and online prints the
   RMSE against ERA5 next to persistence (`python -m modules.verification`).

`--live` forecasts the next 24 h instead: it fetches the official GraphCast_operational
checkpoint (0.25 degree) and the newest cycle of ECMWF's open data, starts the service on
127.0.0.1:8002 and runs `trigger_and_ingest_forecast.py --source ifs-opendata --fetch`, then
prints the 20 sites' forecasts. Without internet it says so in one line and exits 10.

The demo always uses the embedded PostgreSQL in .pgdata/ (DATABASE_URL is ignored), so it
never writes demo data into your own database. Re-runs fetch nothing again and duplicate
nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from config.settings import load_settings
from graphcast_api.tools import weights
from graphcast_contract.errors import ExitCode, exit_code_help
from graphcast_contract.files import write_atomically
from graphcast_contract.local_service import stop, wait_until_healthy
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import ECMWF_OPENDATA_URL, InputSource
from graphcast_contract.variables import STATS_FILES
from modules.storage import db

INIT_TIME = "2022-01-01T06:00"  # second frame of the official example (and synthetic) dataset
DATA_START = "2022-01-01T00:00"
DEMO_DIR = PROJECT_ROOT / "data" / "demo"
WEIGHTS_DIR = PROJECT_ROOT / "weights"
REFERENCE_STATS = PROJECT_ROOT / "tests" / "data" / "graphcast_reference"
LOG_DIR = PROJECT_ROOT / "logs"
HEALTH_TIMEOUT_S = 900
CHECK_QUERY = ("SELECT forecast_time, COUNT(*), AVG(value) FROM predictions "
               "GROUP BY forecast_time ORDER BY forecast_time;")


class DemoError(Exception):
    """A step failed; the message says which and where to look, `exit_code` is the failed
    command's own code, or the table's for what the demo checks itself."""

    def __init__(self, message: str, exit_code: int = ExitCode.INTERNAL) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class DemoFiles:
    """What the service and the loader need for one mode."""

    checkpoint: Path
    stats_dir: Path
    era5: Path


def child_env(api_url: str) -> dict[str, str]:
    """Environment of every step: the embedded database and this demo's API."""
    return dict(os.environ, DATABASE_URL="", GRAPHCAST_API_URL=api_url, PYTHONUNBUFFERED="1")


def step(title: str, command: list[str], env: dict[str, str]) -> None:
    """Run one command of the demo in the project folder; DemoError if it fails."""
    print(f"\n==> {title}\n    $ {' '.join(_shown(part) for part in command)}", flush=True)
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env)
    if result.returncode != 0:
        raise DemoError(f"'{title}' failed with exit code {result.returncode} (see above)",
                        result.returncode)


def _shown(part: str) -> str:
    """A command part as the user would type it (project-relative, quoted if spaced)."""
    text = part.replace(str(PROJECT_ROOT) + os.sep, "")
    return f'"{text}"' if " " in text else text


def bucket_answers(base_url: str, model: str = "small") -> bool:
    """Whether the official checkpoint's URL answers within a few seconds."""
    return answers(weights.object_url(base_url, weights.checkpoint_path(model)))


def answers(url: str) -> bool:
    """Whether `url` answers 200 to a HEAD request within a few seconds."""
    try:
        return requests.head(url, timeout=5, allow_redirects=True).status_code == 200
    except requests.RequestException:
        return False


def online_files() -> DemoFiles:
    return DemoFiles(WEIGHTS_DIR / weights.checkpoint_path("small"), WEIGHTS_DIR / "stats",
                     WEIGHTS_DIR / weights.example_dataset_path(4))


def offline_files() -> DemoFiles:
    return DemoFiles(DEMO_DIR / "params" / "GraphCast_small-random-weights.npz",
                     DEMO_DIR / "stats", DEMO_DIR / "era5-synthetic-1.0deg-2022-01-01.nc")


def choose_mode(force_offline: bool, base_url: str) -> str:
    """'online' or 'offline', with a line saying why."""
    if force_offline:
        print("offline mode (--offline)")
        return "offline"
    files = online_files()
    if all(path.exists() for path in (files.checkpoint, files.era5)):
        print("online mode: official weights and example data already in weights/")
        return "online"
    if bucket_answers(base_url):
        print(f"online mode: {base_url} answers")
        return "online"
    print(f"offline mode: {base_url} does not answer")
    return "offline"


def prepare_online(env: dict[str, str], base_url: str) -> DemoFiles:
    """Fetch the official weights, statistics and example dataset (skipped when present)."""
    python = sys.executable
    step("official GraphCast_small weights and statistics",
         [python, "-m", "graphcast_api", "fetch-weights", "small", "--dest", str(WEIGHTS_DIR),
          "--base-url", base_url], env)
    step("official ERA5 example, 1.0 degree, 13 levels, 2022-01-01",
         [python, "-m", "graphcast_api", "fetch-example", "--dest", str(WEIGHTS_DIR),
          "--steps", "4", "--base-url", base_url], env)
    return online_files()


def prepare_offline(env: dict[str, str]) -> DemoFiles:
    """Make the synthetic dataset, random checkpoint and statistics (skipped when present)."""
    files = offline_files()
    if files.era5.exists():
        print(f"\n==> synthetic ERA5: {files.era5.relative_to(PROJECT_ROOT)} already made")
    else:
        step("synthetic ERA5-like state (made up, physically plausible)",
             [sys.executable, "-m", "graphcast_api.synthetic_era5", "--out", str(files.era5),
              "--resolution", "1.0", "--start", DATA_START, "--times", "6"], env)
    if files.checkpoint.exists():
        print(f"==> random checkpoint: {files.checkpoint.relative_to(PROJECT_ROOT)} already made")
    else:
        write_random_checkpoint(files.checkpoint)
    files.stats_dir.mkdir(parents=True, exist_ok=True)
    for name in STATS_FILES:
        if not (files.stats_dir / name).exists():
            shutil.copyfile(REFERENCE_STATS / f"stats_{name}", files.stats_dir / name)
    return files


def write_random_checkpoint(path: Path) -> None:
    """GraphCast_small's parameter names and shapes with random values, official format."""
    from graphcast_api.engine.checkpoint import random_checkpoint, save_checkpoint

    print(f"==> random-weights GraphCast_small checkpoint -> {path.relative_to(PROJECT_ROOT)}",
          flush=True)
    with write_atomically(path) as temporary:
        save_checkpoint(random_checkpoint("GraphCast_small", seed=0), temporary)


def ensure_port_free(port: int) -> None:
    """DemoError unless nothing listens on 127.0.0.1:`port`."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise DemoError(f"port {port} on 127.0.0.1 is taken (another GraphCast API or "
                            f"another program): stop it, or run the demo with --port N",
                            ExitCode.CANNOT_LISTEN)


@contextmanager
def api_service(checkpoint: Path, stats_dir: Path, port: int, env: dict[str, str]
                ) -> Iterator[str]:
    """Start `python -m graphcast_api serve` in the background, wait until /health says ok,
    yield the name of the model it serves; stop it on the way out."""
    ensure_port_free(port)
    url = f"http://127.0.0.1:{port}"
    LOG_DIR.mkdir(exist_ok=True)
    log_path = LOG_DIR / "demo-api.log"
    command = [sys.executable, "-m", "graphcast_api", "serve", "--checkpoint",
               str(checkpoint), "--stats-dir", str(stats_dir),
               "--host", "127.0.0.1", "--port", str(port)]
    print(f"\n==> GraphCast API on {url} (log: {log_path.relative_to(PROJECT_ROOT)})\n"
          f"    $ {' '.join(_shown(part) for part in command)} &", flush=True)
    with open(log_path, "ab") as log:
        service = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        yield wait_for_model(url, service, log_path)
    finally:
        stop(service)
        print("\n==> GraphCast API stopped", flush=True)


def wait_for_model(url: str, service: subprocess.Popen, log_path: Path) -> str:
    """The model the started service names once /health answers 200; DemoError if the
    service dies or takes too long."""
    started = time.monotonic()
    try:
        health = wait_until_healthy(url, HEALTH_TIMEOUT_S, service)
    except RuntimeError:
        raise DemoError(f"the API exited with code {service.returncode} while starting; "
                        f"see {log_path}", ExitCode.API_FAILED) from None
    except TimeoutError:
        raise DemoError(f"the API was not ready after {HEALTH_TIMEOUT_S} s; see {log_path}",
                        ExitCode.API_FAILED) from None
    print(f"    ready after {time.monotonic() - started:.0f} s", flush=True)
    return health["model"]


def fetch_rows(sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a query on the embedded database the demo used."""
    settings = load_settings()
    conn = db.connect(db.resolve_url(None, settings.embedded_pg_dir))
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


@dataclass(frozen=True)
class CycleForecasts:
    """The demo cycle's stored forecasts: rows of (site, latitude, longitude, lead_hours,
    value), all of one variable, unit and model."""

    rows: list[tuple[str, float, float, int, float]]
    variable: str
    unit: str
    model: str

    @property
    def leads(self) -> list[int]:
        return sorted({row[3] for row in self.rows})


def cycle_forecasts(model: str, source: InputSource, init_time: str | None = None
                    ) -> tuple[str, CycleForecasts]:
    """The stored forecasts of `model` from `source` for `init_time` (None: the newest
    cycle), with that cycle's time."""
    rows = fetch_rows(
        "SELECT site, latitude, longitude, lead_hours, value, variable, unit, model,"
        " to_char(init_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI') FROM predictions"
        " WHERE model = %s AND source = %s AND init_time = coalesce(%s::timestamptz,"
        "  (SELECT max(init_time) FROM predictions WHERE model = %s AND source = %s))"
        " ORDER BY site, lead_hours",
        (model, source, f"{init_time}+00:00" if init_time else None, model, source))
    if not rows:
        raise DemoError(f"no predictions of {model} from {source} stored"
                        + (f" for {init_time}" if init_time else ""))
    return rows[0][8], CycleForecasts([row[:5] for row in rows], *rows[0][5:8])


def print_site_table(init_time: str, forecasts: CycleForecasts) -> None:
    leads = forecasts.leads
    print(f"\n==> {forecasts.variable} ({forecasts.unit}) from {forecasts.model} at the "
          f"{len(forecasts.rows) // len(leads)} sites, initialised {init_time} UTC")
    print(f"    {'site':<16}{'lat':>7}{'lon':>8}" + "".join(f"{f'+{h} h':>9}" for h in leads))
    table: dict[tuple[str, float, float], dict[int, float]] = {}
    for site, lat, lon, lead, value in forecasts.rows:
        table.setdefault((site, lat, lon), {})[lead] = value
    for (site, lat, lon), values in table.items():
        print(f"    {site:<16}{lat:>7.2f}{lon:>8.2f}"
              + "".join(f"{values[h]:>9.2f}" for h in leads))


OFFLINE_BANNER = """
==============================================================================
 OFFLINE DEMO: the ERA5 state is synthetic and the GraphCast weights are random.
 These numbers check the plumbing (store -> API -> engine -> predictions), not
 the weather. For real forecasts, run ./scripts/demo.sh on a machine that can
 reach https://storage.googleapis.com/dm_graphcast: it fetches the official
 GraphCast_small weights and the ERA5 example once and prints RMSE against ERA5.
=============================================================================="""


def run_demo(offline: bool, port: int, base_url: str) -> None:
    ensure_port_free(port)
    api_url = f"http://127.0.0.1:{port}"
    env = child_env(api_url)
    mode = choose_mode(offline, base_url)
    files = prepare_online(env, base_url) if mode == "online" else prepare_offline(env)
    step("load the ERA5 dataset into PostgreSQL (embedded, .pgdata/)",
         [sys.executable, "-m", "modules.era5_loader", str(files.era5)], env)
    with api_service(files.checkpoint, files.stats_dir, port, env) as model:
        step(f"the batch job for the {INIT_TIME} UTC cycle",
             [sys.executable, str(PROJECT_ROOT / "trigger_and_ingest_forecast.py"),
              "--init-time", INIT_TIME], env)
    step("the seed's check query (python -m modules.query)",
         [sys.executable, "-m", "modules.query", CHECK_QUERY], env)
    _, forecasts = cycle_forecasts(model, InputSource.ERA5, INIT_TIME)
    print_site_table(INIT_TIME, forecasts)
    if mode == "online":
        step("RMSE against ERA5 next to persistence",
             [sys.executable, "-m", "modules.verification", "--model", forecasts.model], env)
    else:
        print(OFFLINE_BANNER)


def run_live_demo(port: int, base_url: str, opendata_url: str) -> None:
    """GraphCast_operational's forecast of the next 24 h from the newest open-data cycle."""
    ensure_port_free(port)
    for url in (weights.object_url(base_url, weights.checkpoint_path("operational")),
                opendata_url):
        if not answers(url):
            raise DemoError(f"the live demo needs the internet: {url} does not answer",
                            ExitCode.DOWNLOAD_FAILED)
    api_url = f"http://127.0.0.1:{port}"
    env = dict(child_env(api_url), GRAPHCAST_API_URL_IFS_OPENDATA=api_url,
               IFS_OPENDATA_URL=opendata_url)
    step("official GraphCast_operational weights (0.25 degree) and statistics",
         [sys.executable, "-m", "graphcast_api", "fetch-weights", "operational", "--dest",
          str(WEIGHTS_DIR), "--base-url", base_url], env)
    checkpoint = WEIGHTS_DIR / weights.checkpoint_path("operational")
    with api_service(checkpoint, WEIGHTS_DIR / "stats", port, env) as model:
        step("the live job: fetch the newest open-data cycle, then forecast it",
             [sys.executable, str(PROJECT_ROOT / "trigger_and_ingest_forecast.py"),
              "--source", InputSource.IFS_OPENDATA, "--fetch"], env)
    print_site_table(*cycle_forecasts(model, InputSource.IFS_OPENDATA))
    print("\nInitial conditions: ECMWF open data, (c) ECMWF, CC BY 4.0 (www.ecmwf.int); "
          "weights: DeepMind's GraphCast_operational, CC BY-NC-SA 4.0 (non-commercial).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo.sh", description="Run one forecast cycle end to end.",
        epilog=exit_code_help(ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.API_FAILED,
                              ExitCode.CANNOT_LISTEN, ExitCode.DOWNLOAD_FAILED)
        + "\n  a failed step's own exit code otherwise (see the README's table)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offline", action="store_true",
                        help="synthetic data and random weights, even if the bucket answers")
    parser.add_argument("--live", action="store_true",
                        help="tomorrow's forecast: GraphCast_operational from the newest "
                             "ECMWF open-data cycle (needs the internet)")
    parser.add_argument("--port", type=int, default=None,
                        help="API port (default 8001; 8002 with --live)")
    parser.add_argument("--base-url", default=weights.BUCKET_URL,
                        help="where the official files are (default: %(default)s)")
    parser.add_argument("--opendata-url", default=ECMWF_OPENDATA_URL,
                        help="with --live: the open-data root (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.live and args.offline:
        parser.error("--live needs the internet; it cannot be --offline")
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be 1 to 65535, not {args.port}")
    os.environ["DATABASE_URL"] = ""  # the embedded server, for the demo's reads as its steps'
    started = time.monotonic()
    try:
        if args.live:
            run_live_demo(args.port or 8002, args.base_url, args.opendata_url)
        else:
            run_demo(args.offline, args.port or 8001, args.base_url)
    except DemoError as error:
        print(f"\ndemo failed: {error}", file=sys.stderr)
        return error.exit_code
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
