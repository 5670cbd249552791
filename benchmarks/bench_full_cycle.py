"""One full forecast cycle at GraphCast_small size (1.0 degree, 13 levels, random weights).

Loads a synthetic 1.0-degree ERA5 pair into a fresh database (DATABASE_URL's server, else
an embedded one in a temporary directory), starts `python -m graphcast_api serve` with a
random-weights GraphCast_small checkpoint, runs `trigger_and_ingest_forecast.py` for one
cycle, and prints each stage's time and share of the cycle:

- prepare: the job extracts the two snapshots from PostgreSQL and encodes the request;
- HTTP: the job's request and reply minus the engine (transfer, the service's decoding and
  site interpolation, JSON both ways, the job's reply checks);
- engine: the service's model rollout (forcings and 4 steps);
- ingest: the job writes the 80 rows and its ledger entry.

Target: everything except the engine under 5 % of the cycle. Service start-up (checkpoint,
graphs) and the job's process start are printed apart: they are not part of a cycle.

    python benchmarks/bench_full_cycle.py [--precision bf16|fp32]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from graphcast_api.engine.checkpoint import random_checkpoint, save_checkpoint
from graphcast_contract.local_service import stop
from graphcast_contract.project import PROJECT_ROOT
from modules.storage import db

from served import reference_stats, start_service

INIT_TIME = "2022-01-01T06:00"
SERVICE_LOG = re.compile(r"forecast \S+: \d+ values, decode_s ([\d.]+), inference_s ([\d.]+), "
                         r"interpolate_s ([\d.]+), total_s ([\d.]+)")


def run(command: list[str], env: dict[str, str]) -> float:
    """Run `command` from the project root; its wall time in seconds (fails loudly)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=True)
    return time.perf_counter() - start


def make_inputs(folder: Path, env: dict[str, str]) -> tuple[Path, Path]:
    """Synthetic 1-degree ERA5 (loaded into the database), checkpoint and statistics."""
    era5 = folder / "era5.nc"
    run([sys.executable, "-m", "graphcast_api.synthetic_era5", "--out", str(era5),
         "--resolution", "1.0", "--start", "2022-01-01T00:00", "--times", "2"], env)
    run([sys.executable, "-m", "modules.era5_loader", str(era5)], env)
    checkpoint = folder / "GraphCast_small - random weights.npz"
    save_checkpoint(random_checkpoint("GraphCast_small", seed=0), checkpoint)
    return checkpoint, reference_stats(folder)


def job_timings(database_url: str) -> tuple[float, float, float]:
    """(prepare_s, infer_s, ingest_s) of the job's last successful run."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT prepare_s, infer_s, ingest_s FROM forecast_runs"
                    " WHERE status = 'succeeded' ORDER BY run_id DESC LIMIT 1")
        row = cur.fetchone()
    if row is None:
        raise RuntimeError("the job recorded no successful run")
    return row


def service_timings(log_path: Path) -> dict[str, float]:
    """The last forecast's timings from the service log."""
    matches = SERVICE_LOG.findall(log_path.read_text())
    if not matches:
        raise RuntimeError(f"no forecast line in {log_path}")
    return dict(zip(("decode_s", "inference_s", "interpolate_s", "total_s"),
                    map(float, matches[-1]), strict=True))


def report(prepare: float, infer: float, ingest: float, server: dict[str, float]) -> dict:
    """Print each stage's time and share; return the figures."""
    stages = {"prepare": prepare, "HTTP": infer - server["inference_s"],
              "engine": server["inference_s"], "ingest": ingest}
    cycle = sum(stages.values())
    print(f"\n{'stage':<10}{'seconds':>10}{'share':>9}")
    for name, seconds in stages.items():
        print(f"{name:<10}{seconds:>10.3f}{100 * seconds / cycle:>8.1f} %")
    print(f"{'cycle':<10}{cycle:>10.3f}")
    print(f"  of HTTP: service decode {server['decode_s']:.3f} s, "
          f"interpolate {server['interpolate_s']:.3f} s")
    outside = 100 * (cycle - stages["engine"]) / cycle
    verdict = "met" if outside < 5 else "NOT met"
    print(f"everything but the engine: {outside:.1f} % of the cycle (target < 5 %: {verdict})")
    return {"cycle_s": cycle, "non_engine_share_pct": outside,
            **{f"{name.lower()}_s": seconds for name, seconds in stages.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server = os.environ.get("DATABASE_URL") or db.embedded_url(folder / "pg")
        with db.scratch_database(server, "bench_cycle") as database_url:
            return run_cycle(args.precision, folder, database_url)


def run_cycle(precision: str, folder: Path, database_url: str) -> int:
    """Start the service, run the job once, print each stage's share."""
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_DIR": str(folder / "logs")}
    service = None
    try:
        checkpoint, stats_dir = make_inputs(folder, env)
        log_path = folder / "service.log"
        service, url, startup = start_service(
            ["--checkpoint", str(checkpoint), "--stats-dir", str(stats_dir),
             "--precision", precision], log_path, env)
        print(f"service start-up (checkpoint, graphs): {startup:.1f} s")
        wall = run([sys.executable, "trigger_and_ingest_forecast.py", "--init-time",
                    INIT_TIME], {**env, "GRAPHCAST_API_URL": url})
        prepare, infer, ingest = job_timings(database_url)
        figures = report(prepare, infer, ingest, service_timings(log_path))
        print(f"job process wall time {wall:.2f} s (start-up, database, /v1/model: "
              f"{wall - prepare - infer - ingest:.2f} s)")
        print(json.dumps({"precision": precision, "service_startup_s": startup,
                          "job_wall_s": wall, **figures}))
    finally:
        if service is not None:
            stop(service)
    return 0

if __name__ == "__main__":
    sys.exit(main())
