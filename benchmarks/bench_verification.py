"""Time verification of a month (or, with --cycles 1460, a year) of 6-hourly cycles at 20
sites against 1-degree ERA5.

Fills a fresh database (DATABASE_URL's server, else an embedded one in a temporary
directory) with N cycles x 20 sites x 4 lead times predictions (124: 9,920) and the N + 4
2m_temperature fields (181 x 360) they need, then times `verify` on all of them, a re-run
with nothing new, one new cycle, and the report. Targets: the month under 1 s; a year (a
backfill's output, 116,800 predictions) under 15 s.

    python benchmarks/bench_verification.py [--cycles 1460]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg2
from psycopg2.extras import execute_values

from graphcast_contract.model_spec import Grid
from modules.inputs.store import write_fields
from modules.storage import db
from modules.verification import report
from modules.verification.scores import verify

GRID = Grid(n_lat=181, n_lon=360, lat_first=-90.0, lat_step=1.0, lon_first=0.0, lon_step=1.0)
START = datetime(2022, 1, 1, tzinfo=timezone.utc)
MONTH = 124
LEADS = (6, 12, 18, 24)
N_SITES = 20
MODEL = "GraphCast_small"


def fill(conn: psycopg2.extensions.connection, first_cycle: int, n_cycles: int) -> None:
    """ERA5 fields and predictions (truth + noise) for `n_cycles` cycles from `first_cycle`."""
    rng = np.random.default_rng(first_cycle)
    site_lat = np.random.default_rng(0).uniform(36, 60, N_SITES)
    site_lon = np.random.default_rng(1).uniform(-9, 25, N_SITES)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT valid_time FROM input_fields")
        stored = {row[0] for row in cur.fetchall()}
        for step in range(first_cycle, first_cycle + n_cycles + 4):
            valid_time = START + timedelta(hours=6 * step)
            if valid_time not in stored:
                field = 250 + 40 * rng.random(GRID.shape, dtype=np.float32)
                write_fields(cur, GRID, valid_time, {("2m_temperature", 0): field})
        rows = []
        for cycle in range(first_cycle, first_cycle + n_cycles):
            init = START + timedelta(hours=6 * cycle)
            cur.execute("INSERT INTO forecast_runs (init_time, model, status) VALUES"
                        " (%s, %s, 'succeeded') RETURNING run_id", (init, MODEL))
            run_id = cur.fetchone()[0]
            for lead in LEADS:
                values = 270 + 5 * rng.standard_normal(N_SITES)
                rows += [(run_id, MODEL, init, init + timedelta(hours=lead), lead, f"site{i:02d}",
                          float(site_lat[i]), float(site_lon[i]), "2m_temperature",
                          float(values[i]), "K") for i in range(N_SITES)]
        execute_values(cur, "INSERT INTO predictions (run_id, model, init_time, forecast_time,"
                       " lead_hours, site, latitude, longitude, variable, value, unit)"
                       " VALUES %s", rows, page_size=10_000)


def timed(label: str, func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    print(f"{label:<44}{time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=MONTH,
                        help=f"6-hourly cycles to verify (default {MONTH}: a month)")
    cycles = parser.parse_args().cycles
    with tempfile.TemporaryDirectory() as tmp:
        server = os.environ.get("DATABASE_URL") or db.embedded_url(Path(tmp) / "pg")
        with db.scratch_database(server, "bench_verification") as url:
            conn = db.connect_and_migrate(url)
            timed(f"fill {cycles} cycles x {N_SITES} sites x {len(LEADS)} leads",
                  fill, conn, 0, cycles)
            summary = timed(f"verify {cycles} cycles (first run)", verify, conn)
            print(f"  -> {summary}")
            summary = timed("verify again (nothing new)", verify, conn)
            print(f"  -> {summary}")
            fill(conn, cycles, 1)
            summary = timed("verify one new cycle", verify, conn)
            print(f"  -> {summary}")
            timed("format the table", report.format_table, summary.scores)
            paths = timed("write the plots", report.write_plots, summary.scores,
                          Path(tmp) / "plots")
            print(f"  -> {paths[0].stat().st_size} bytes PNG")
            conn.close()


if __name__ == "__main__":
    main()
