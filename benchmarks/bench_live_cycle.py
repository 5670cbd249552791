"""One live cycle at 0.25 degree: ECMWF-layout open data from a loopback server -> the input
store -> GraphCast_operational (random weights, published shapes) -> 80 rows.

Steps, each timed, with the peak RSS of each process:
- fetch + load: `python -m modules.ifs_opendata fetch --cycle latest` against a loopback
  server with the published layout, serving synthetic 721 x 1440 GRIB2 runs (T0 - 6 h, T0;
  `tests/modules/ifs_opendata/opendata_server.py`);
- the service: `python -m graphcast_api serve` with the checkpoint (start-up, then the
  forecast's decode / inference / interpolation from its log);
- the job: `trigger_and_ingest_forecast.py --source ifs-opendata` (prepare, infer, ingest
  from the ledger).

    python benchmarks/bench_live_cycle.py [--precision bf16|fp32]

Needs ~8 GiB free and several minutes on 2 cores. Prints this machine's 4096^2 product
rates beside the times. Uses DATABASE_URL's server when set, else an embedded one.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch
from bench_full_cycle import job_timings, service_timings

from graphcast_api.engine.checkpoint import random_checkpoint, save_checkpoint
from graphcast_api.tools.bench import matmul_gflops
from graphcast_contract.cycles import floor_to_cycle
from graphcast_contract.local_service import stop
from graphcast_contract.project import PROJECT_ROOT
from modules.storage import db

from served import peak_rss_mib, reference_stats, start_service

GIB = 1024**3


def timed_child(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run `command` from the project root: (wall seconds, its peak RSS in GiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[1:3]} failed with {os.waitstatus_to_exitcode(status)}")
    return time.perf_counter() - started, usage.ru_maxrss * 1024 / GIB


def open_data_server(cycle: datetime) -> tuple[subprocess.Popen, str]:
    """The loopback stand-in for ECMWF's portal serving `cycle` at 0.25 degree."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.modules.ifs_opendata.opendata_server",
         cycle.isoformat(), "721", "1440"], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
    return server, server.stdout.readline().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="live-") as tmp:
        folder = Path(tmp)
        server = os.environ.get("DATABASE_URL") or db.embedded_url(folder / "pg")
        with db.scratch_database(server, "bench_live") as database_url:
            return measure(args.precision, folder, database_url)


def measure(precision: str, folder: Path, database_url: str) -> int:
    cycle = floor_to_cycle(datetime.now(timezone.utc)) - timedelta(hours=12)
    started = time.perf_counter()
    opendata, url = open_data_server(cycle)
    print(f"loopback open data for {cycle:%Y-%m-%dT%H}Z ready in "
          f"{time.perf_counter() - started:.1f} s (GRIB2 encoding, not part of the cycle)")
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_DIR": str(folder / "logs"),
           "IFS_OPENDATA_URL": url, "IFS_OPENDATA_CACHE_DIR": str(folder / "cache"),
           "GRAPHCAST_API_TIMEOUT_S": "7200"}
    try:
        fetch_s, fetch_rss = timed_child([sys.executable, "-m", "modules.ifs_opendata", "fetch",
                                          "--cycle", "latest"], env)
    finally:
        opendata.terminate()
        opendata.wait()
    checkpoint = folder / "GraphCast_operational - random weights.npz"
    save_checkpoint(random_checkpoint("GraphCast_operational", seed=0), checkpoint)
    log_path = folder / "service.log"
    service, api, startup = start_service(
        ["--checkpoint", str(checkpoint), "--stats-dir", str(reference_stats(folder)),
         "--precision", precision], log_path, env, timeout_s=3600)
    try:
        job_s, job_rss = timed_child(
            [sys.executable, "trigger_and_ingest_forecast.py", "--source", "ifs-opendata"],
            {**env, "GRAPHCAST_API_URL_IFS_OPENDATA": api})
        service_rss = peak_rss_mib(service.pid) / 1024
    finally:
        stop(service)
    prepare, infer, ingest = job_timings(database_url)
    served = service_timings(log_path)
    rates = {name: round(matmul_gflops(dtype), 1)
             for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    figures = {"fetch_and_load_s": fetch_s, "fetch_peak_rss_gib": fetch_rss,
               "service_startup_s": startup, "service_peak_rss_gib": service_rss,
               "prepare_s": prepare, "infer_s": infer, "inference_s": served["inference_s"],
               "ingest_s": ingest, "job_wall_s": job_s, "job_peak_rss_gib": job_rss,
               "cycle_s": fetch_s + prepare + infer + ingest, "gemm_gflops": rates,
               "precision": precision, "load_avg_1min": os.getloadavg()[0]}
    for name, value in figures.items():
        print(f"{name:<24}{value:.2f}" if isinstance(value, float) else f"{name:<24}{value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
