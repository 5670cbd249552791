"""Benchmark of the batch job's data path at GraphCast_small size (1.0 deg, 13 levels).

Stores two 181x360 snapshots (the 83 input fields each, plus the 2 static fields) in a
fresh database, then times the job's own functions: extract (SQL + validation), encode
(base64 + JSON), post to a loopback server that only decodes the arrays and answers 80
values, and ingest. Also compares read speed of the ERA5 fields stored EXTERNAL (the
schema's choice: no TOAST compression) against PostgreSQL's default EXTENDED (compressed).

    python benchmarks/bench_pipeline.py [--repeats 5]

Uses DATABASE_URL when set (a scratch database is created and dropped), otherwise an
embedded server in a temporary directory. Target: extract + encode + post < 2 s.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2

from graphcast_contract.cycles import INPUT_TIMES_HOURS, MAX_LEAD_HOURS, STEP_HOURS, iso_utc
from graphcast_contract.model_spec import Grid, ModelSpec
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.reply import parse_forecast_reply
from graphcast_contract.request import ForecastContext, build_payload
from graphcast_contract.sources import InputSource
from graphcast_contract.variables import (
    ATMOSPHERIC_VARIABLES,
    PLAUSIBLE_RANGES,
    PRESSURE_LEVELS_13,
    STATIC_VARIABLES,
    SURFACE_VARIABLES,
)
from modules import data_preparator, prediction_db_ingestion
from modules.inputs import store as era5_store
from modules.job import ledger
from modules.job.sites import load_sites
from modules.model_api_client import ModelApiClient
from modules.storage import db

LEVELS = list(PRESSURE_LEVELS_13)
SURFACE = list(SURFACE_VARIABLES)
ATMOSPHERIC = list(ATMOSPHERIC_VARIABLES)
GRID = Grid(181, 360, -90.0, 1.0, 0.0, 1.0)
INIT = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)
VARIABLES = (("2m_temperature", 0),)
LEAD_HOURS = (6, 12, 18, 24)


def model_info() -> dict[str, Any]:
    return {"model": "GraphCast_bench", "grid": GRID.as_dict(),
            "pressure_levels": LEVELS, "input_times_hours": list(INPUT_TIMES_HOURS),
            "surface_inputs": SURFACE, "atmospheric_inputs": ATMOSPHERIC,
            "static_inputs": list(STATIC_VARIABLES),
            "targets": [{"name": "2m_temperature", "unit": "K", "atmospheric": False}],
            "step_hours": STEP_HOURS, "max_lead_hours": MAX_LEAD_HOURS}


def synthetic_field(variable: str, rng: np.random.Generator) -> np.ndarray:
    """A smooth plausible field with small-scale noise, quantised to 16 bits over its range
    the way ERA5 GRIB files pack it (so float32 bytes are as compressible as real data)."""
    low, high = PLAUSIBLE_RANGES[variable]
    lat = np.radians(GRID.latitudes())[:, None]
    lon = np.radians(GRID.longitudes())[None, :]
    pattern = 0.5 + 0.3 * np.cos(lat) * np.cos(2 * lon + rng.uniform(0, 6)) + 0.1 * np.sin(3 * lat)
    field = low + (high - low) * np.clip(pattern + rng.normal(0, 0.01, GRID.shape), 0, 1)
    f_min, step = field.min(), (field.max() - field.min()) / 65535
    return (f_min + np.round((field - f_min) / step) * step).astype(np.float32)


def populate(url: str) -> None:
    rng = np.random.default_rng(0)
    conn = db.connect(url)
    with conn, conn.cursor() as cur:
        for when in (INIT - timedelta(hours=6), INIT):
            fields = {(name, 0): synthetic_field(name, rng) for name in SURFACE}
            fields |= {(name, lev): synthetic_field(name, rng)
                       for name in ATMOSPHERIC for lev in LEVELS}
            era5_store.write_fields(cur, GRID, when, fields)
        era5_store.write_static(cur, GRID, {name: synthetic_field(name, rng)
                                            for name in STATIC_VARIABLES})
    conn.close()


class DecodeOnlyHandler(BaseHTTPRequestHandler):
    """Decodes every array of the request and answers a constant forecast."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._send(model_info())

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for group in ("inputs", "static"):
            for item in request[group].values():
                np.frombuffer(base64.b64decode(item["data"]), "<f4").reshape(item["shape"])
        init = datetime.fromisoformat(request["init_time"].replace("Z", "+00:00"))
        self._send({"model": "GraphCast_bench", "init_time": request["init_time"],
                    "forecasts": [
                        {"site": s["name"], "latitude": s["latitude"],
                         "longitude": s["longitude"], "variable": "2m_temperature",
                         "level": 0, "unit": "K", "lead_hours": h, "value": 280.0,
                         "valid_time": iso_utc(init + timedelta(hours=h))}
                        for h in request["lead_hours"] for s in request["sites"]]})

    def _send(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def time_pipeline(url: str, api_url: str, repeats: int) -> dict[str, list[float]]:
    """Seconds per stage for each repeat, with the job's own functions."""
    sites = load_sites(PROJECT_ROOT / "config" / "sites.csv")
    context = ForecastContext(INIT, sites, VARIABLES, LEAD_HOURS)
    client = ModelApiClient(api_url, token=None, connect_timeout_s=5, read_timeout_s=60,
                            retries=0, backoff_s=0)
    spec = ModelSpec.from_reply(client.model_info())
    conn = db.connect(url)
    figures: dict[str, list[float]] = {"extract": [], "encode": [], "post": [], "ingest": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        with conn, conn.cursor() as cur:
            snapshot = data_preparator.extract_snapshot(cur, spec, INIT)
        t1 = time.perf_counter()
        body = json.dumps(build_payload(spec, context, snapshot)).encode("ascii")
        t2 = time.perf_counter()
        forecast = parse_forecast_reply(client.forecast(body), spec, context)
        t3 = time.perf_counter()
        run_id = ledger.start_run(conn, INIT, InputSource.ERA5, spec.model)
        with conn, conn.cursor() as cur:
            prediction_db_ingestion.ingest(cur, run_id, InputSource.ERA5, forecast)
        t4 = time.perf_counter()
        for name, seconds in zip(figures, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            figures[name].append(seconds)
    print(f"request body: {len(body) / 1e6:.1f} MB for {len(spec.input_keys())} input fields "
          f"x 2 times + {len(spec.static_inputs)} static on {GRID.n_lat}x{GRID.n_lon}")
    conn.close()
    return figures


# table -> (storage, compression); each is a copy of input_fields' rows.
STORAGE_VARIANTS = {"bench_external": ("EXTERNAL", "pglz"),
                    "bench_extended_pglz": ("EXTENDED", "pglz"),
                    "bench_extended_lz4": ("EXTENDED", "lz4")}


def compare_storage(url: str, repeats: int) -> None:
    """Read one snapshot from the EXTERNAL table and from EXTENDED (compressed) copies."""
    conn = db.connect(url)
    tables = []
    for table, (storage, method) in STORAGE_VARIANTS.items():
        with conn, conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (LIKE input_fields INCLUDING ALL)")
            try:
                cur.execute(f"ALTER TABLE {table} ALTER COLUMN data SET STORAGE {storage},"
                            f" ALTER COLUMN data SET COMPRESSION {method}")
            except psycopg2.errors.FeatureNotSupported:
                print(f"{table:20s} {method:8s} not supported by this server")
                conn.rollback()
                continue
            started = time.perf_counter()
            cur.execute(f"INSERT INTO {table} SELECT * FROM input_fields")
            write_s = time.perf_counter() - started
            cur.execute(f"SELECT pg_total_relation_size('{table}'), sum(pg_column_size(data)),"
                        f" count(*) FILTER (WHERE pg_column_compression(data) IS NOT NULL),"
                        f" count(*) FROM {table}")
            size, stored, compressed, count = cur.fetchone()
            print(f"{table:20s} {storage} {method:4s} {size / 1e6:6.1f} MB on disk, "
                  f"data {stored / 1e6:.1f} MB, {compressed}/{count} values compressed, "
                  f"copy-in (write) {write_s:.2f} s")
            tables.append(table)
    timings: dict[str, list[float]] = {table: [] for table in tables}
    for _ in range(repeats):
        for table in timings:
            with conn, conn.cursor() as cur:
                started = time.perf_counter()
                cur.execute(f"SELECT variable, level, data FROM {table}"
                            " WHERE valid_time = %s", (INIT,))
                rows = cur.fetchall()
                timings[table].append(time.perf_counter() - started)
    assert len(rows) == 83
    for table, seconds in timings.items():
        print(f"read 83 fields from {table:20s} median {statistics.median(seconds):.3f} s")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    server_url = os.environ.get("DATABASE_URL") or db.embedded_url(Path(tempfile.mkdtemp()) / "pg")
    server = ThreadingHTTPServer(("127.0.0.1", 0), DecodeOnlyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with db.scratch_database(server_url, "bench_pipeline") as url:
            run_benchmark(url, f"http://127.0.0.1:{server.server_address[1]}", args.repeats)
    finally:
        server.shutdown()


def run_benchmark(url: str, api_url: str, repeats: int) -> None:
    """Fill the scratch database, time the data path, compare storage settings."""
    db.connect_and_migrate(url).close()
    started = time.perf_counter()
    populate(url)
    print(f"stored 2 snapshots + statics in {time.perf_counter() - started:.1f} s")
    figures = time_pipeline(url, api_url, repeats)
    medians = {stage: statistics.median(values) for stage, values in figures.items()}
    for stage, seconds in medians.items():
        print(f"{stage:8s} median {seconds:.3f} s  (min {min(figures[stage]):.3f} s)")
    prepare_transport = medians["extract"] + medians["encode"] + medians["post"]
    print(f"prepare + transport {prepare_transport:.3f} s (target < 2 s: "
          f"{'met' if prepare_transport < 2 else 'NOT met'}); "
          f"total with ingest {prepare_transport + medians['ingest']:.3f} s")
    compare_storage(url, repeats)

if __name__ == "__main__":
    main()
