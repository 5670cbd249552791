"""Backfill throughput: cycles per hour of sequential --catch-up, --backfill --workers 1 and
--backfill --workers 2 (one thread each), and Ray's overhead per cycle.

GraphCast_small with random weights on a synthetic 1-degree store of CYCLES + 1 frames, in a
fresh database (DATABASE_URL's server, else an embedded one). Each mode runs the same cycles
from an empty ledger; its rate is cycles / (last cycle finished - first cycle started), from
the ledger, so process, service and Ray start-up are printed apart. Ray's overhead per cycle
(scheduling, object transfer, the worker's connection and lock) is the time between a
worker's consecutive cycles that no stage accounts for, as a share of the cycle.

    python benchmarks/bench_backfill.py [--cycles 4] [--precision fp32|bf16]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import torch

from graphcast_api.engine.checkpoint import random_checkpoint, save_checkpoint
from graphcast_api.tools.bench import matmul_gflops
from graphcast_contract.local_service import stop
from graphcast_contract.project import PROJECT_ROOT
from modules.storage import db

from served import reference_stats, start_service

START = "2022-01-01T00:00"
FIRST_CYCLE_HOUR = 6


def run(command: list[str], env: dict[str, str]) -> float:
    """Run `command` from the project root; its wall time in seconds (fails loudly)."""
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=True)
    return time.perf_counter() - started


def cycle_text(k: int) -> str:
    """The k-th cycle's init time (k = 0: 06Z on the first day)."""
    hours = FIRST_CYCLE_HOUR + 6 * k
    return f"2022-01-{1 + hours // 24:02d}T{hours % 24:02d}:00"


def ledger_figures(database_url: str) -> dict[str, float]:
    """Span of the succeeded cycles, their mean stage seconds, and the unaccounted time
    between consecutive cycles of one worker (Ray's share)."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT worker, extract(epoch FROM started_at),"
                    " extract(epoch FROM finished_at), prepare_s + infer_s + ingest_s"
                    " FROM forecast_runs WHERE status = 'succeeded' ORDER BY started_at")
        rows = [(worker, float(a), float(b), float(s)) for worker, a, b, s in cur.fetchall()]
        cur.execute("TRUNCATE predictions, forecast_runs CASCADE")
    span = max(row[2] for row in rows) - min(row[1] for row in rows)
    gaps = []
    for worker in {row[0] for row in rows}:
        own = [row for row in rows if row[0] == worker]
        gaps += [nxt[1] - prev[2] + (prev[2] - prev[1] - prev[3])
                 for prev, nxt in zip(own, own[1:], strict=False)]
    return {"cycles": len(rows), "span_s": span, "cycles_per_hour": 3600 * len(rows) / span,
            "stages_s": sum(row[3] for row in rows) / len(rows),
            "between_cycles_s": sum(gaps) / len(gaps) if gaps else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="fp32")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bb-") as tmp:
        folder = Path(tmp)
        server = os.environ.get("DATABASE_URL") or db.embedded_url(folder / "pg")
        with db.scratch_database(server, "bench_backfill") as database_url:
            return measure(args.cycles, args.precision, folder, database_url)


def measure(cycles: int, precision: str, folder: Path, database_url: str) -> int:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_DIR": str(folder / "logs"),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(folder)}
    era5 = folder / "era5.nc"
    run([sys.executable, "-m", "graphcast_api.synthetic_era5", "--out", str(era5),
         "--resolution", "1.0", "--start", START, "--times", str(cycles + 1)], env)
    run([sys.executable, "-m", "modules.era5_loader", str(era5)], env)
    checkpoint = folder / "GraphCast_small - random weights.npz"
    save_checkpoint(random_checkpoint("GraphCast_small", seed=0), checkpoint)
    model = ["--checkpoint", str(checkpoint), "--stats-dir", str(reference_stats(folder)),
             "--precision", precision, "--device", "cpu"]
    job = [sys.executable, "trigger_and_ingest_forecast.py"]
    last = cycle_text(cycles - 1)
    results = {}
    service, url, startup = start_service(model, folder / "service.log", env)
    try:
        wall = run([*job, "--init-time", last, "--catch-up", str(cycles - 1)],
                   {**env, "GRAPHCAST_API_URL": url})
    finally:
        stop(service)
    results["sequential --catch-up"] = {"wall_s": wall, "startup_s": startup,
                                        **ledger_figures(database_url)}
    for workers in (1, 2):
        wall = run([*job, "--backfill", cycle_text(0), last, "--workers", str(workers),
                    *model], env)
        results[f"--backfill --workers {workers}"] = {"wall_s": wall,
                                                      **ledger_figures(database_url)}
    rates = {name: round(matmul_gflops(dtype), 1)
             for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    print_table(results)
    print(f"this machine's 4096^2 product rates: bf16 {rates['bf16']}, fp32 {rates['fp32']}"
          " GFLOP/s")
    print(json.dumps({"cycles": cycles, "cpus": os.cpu_count(), "precision": precision,
                      "load_avg_1min": os.getloadavg()[0], "gemm_gflops": rates,
                      "modes": results}))
    return 0


def print_table(results: dict[str, dict[str, float]]) -> None:
    print(f"\n{'mode':<26}{'cycles/h':>10}{'stages s':>10}{'between s':>11}{'Ray share':>11}"
          f"{'wall s':>9}")
    for mode, figures in results.items():
        share = figures["between_cycles_s"] / (figures["stages_s"] + figures["between_cycles_s"])
        print(f"{mode:<26}{figures['cycles_per_hour']:>10.1f}{figures['stages_s']:>10.2f}"
              f"{figures['between_cycles_s']:>11.3f}{100 * share:>10.1f}%"
              f"{figures['wall_s']:>9.1f}")


if __name__ == "__main__":
    sys.exit(main())
