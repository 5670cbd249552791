"""Benchmark of prepare + transport of one 0.25 deg GraphCast_operational request (binary body).

Stores two synthetic 721x1440 snapshots (4 surface + 6x13 atmospheric fields each, no
precipitation: GraphCast_operational's inputs) and the 2 static fields in a scratch database,
then runs, one process each:
- the service: the real application (`create_app`) serving a stand-in model with
  GraphCast_operational's task on the 0.25 deg grid whose "forecast" is persistence (views of
  the inputs, no inference), so that its memory figure is what receiving and decoding one
  request costs;
- the job side: the job's own functions, extract from PostgreSQL (SQL + validation), encode
  (`build_binary_body`) and send (`ModelApiClient.forecast`) until the reply is parsed.

    python benchmarks/bench_binary_transport.py

Prints seconds per stage, the job's peak RSS, and the service's peak RSS above its idle RSS
while it handles the request. Targets: prepare + transport <= 10 s, job peak RSS <= 2 GiB,
service overhead <= 1.5x the arrays' size. Uses DATABASE_URL when set (a scratch database is
created and dropped), otherwise an embedded server in a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import requests
import xarray as xr

from graphcast_contract.local_service import free_port, stop, wait_until_healthy
from graphcast_contract.model_spec import Grid, ModelSpec
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.reply import parse_forecast_reply
from graphcast_contract.request import ForecastContext, build_binary_body
from graphcast_contract.variables import (
    ATMOSPHERIC_VARIABLES,
    PLAUSIBLE_RANGES,
    PRECIPITATION_6HR,
    PRESSURE_LEVELS_13,
    STATIC_VARIABLES,
    SURFACE_VARIABLES,
)

GRID = Grid(721, 1440, -90.0, 0.25, 0.0, 0.25)
INIT = datetime(2024, 1, 1, 6, tzinfo=timezone.utc)
SURFACE = [v for v in SURFACE_VARIABLES if v != PRECIPITATION_6HR]
VARIABLES = (("2m_temperature", 0), ("temperature", 850))
LEAD_HOURS = (6,)
GIB = 1024**3


class PersistenceAtQuarterDegree:
    """GraphCast_operational's interface and grid; the forecast is the T0 frame (views)."""

    name = "GraphCast_operational-standin"
    description = "persistence stand-in for the transport benchmark"
    license = "none"
    precision = "fp32"
    device = "cpu"

    def __init__(self) -> None:
        self.latitudes = GRID.latitudes()
        self.longitudes = GRID.longitudes()
        self.task_config = SimpleNamespace(
            input_variables=[*SURFACE, *ATMOSPHERIC_VARIABLES, *STATIC_VARIABLES],
            target_variables=[*SURFACE, *ATMOSPHERIC_VARIABLES], forcing_variables=[],
            pressure_levels=list(PRESSURE_LEVELS_13))

    def forecast(self, inputs: xr.Dataset, steps: int, forcings=None) -> xr.Dataset:
        last = inputs[self.task_config.target_variables].isel(time=slice(1, 2))
        return last.assign_coords(time=[np.timedelta64(6, "h")])


def memory_kib(field: str) -> int:
    """`VmRSS` or `VmHWM` (peak) of this process, KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def serve(port: int) -> None:
    """The service role: the real app and two routes to read and reset its peak RSS."""
    import uvicorn

    from graphcast_api.service.app import ServiceLimits, create_app
    app = create_app(ServiceLimits(), PersistenceAtQuarterDegree())

    @app.post("/bench/reset-peak")
    def reset_peak() -> dict:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        return {"rss_kib": memory_kib("VmRSS")}

    @app.get("/bench/peak")
    def peak() -> dict:
        return {"hwm_kib": memory_kib("VmHWM"), "rss_kib": memory_kib("VmRSS")}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def synthetic_field(variable: str, phase: float) -> np.ndarray:
    """A smooth field within the variable's plausible range."""
    low, high = PLAUSIBLE_RANGES[variable]
    lat = np.radians(GRID.latitudes(), dtype=np.float32)[:, None]
    lon = np.radians(GRID.longitudes(), dtype=np.float32)[None, :]
    pattern = 0.5 + 0.3 * np.cos(lat) * np.cos(2 * lon + phase) + 0.1 * np.sin(3 * lat)
    return (low + (high - low) * pattern).astype(np.float32)


def populate(url: str) -> None:
    """Two snapshots and the statics, written one variable at a time (modest memory)."""
    from modules.inputs import store
    from modules.storage import db
    conn = db.connect(url)
    for k, when in enumerate((INIT - timedelta(hours=6), INIT)):
        for i, name in enumerate(SURFACE + list(ATMOSPHERIC_VARIABLES)):
            levels = PRESSURE_LEVELS_13 if name in ATMOSPHERIC_VARIABLES else (0,)
            with conn, conn.cursor() as cur:
                store.write_fields(cur, GRID, when, {
                    (name, level): synthetic_field(name, 0.1 * (i + j + k))
                    for j, level in enumerate(levels)})
    with conn, conn.cursor() as cur:
        store.write_static(cur, GRID, {name: synthetic_field(name, 0.5)
                                       for name in STATIC_VARIABLES})
    conn.close()


def job_side(api_url: str) -> None:
    """The job role: extract (from the database of DATABASE_URL), encode, send; prints its
    figures as one JSON line."""
    from modules import data_preparator
    from modules.job.sites import load_sites
    from modules.model_api_client import ModelApiClient
    from modules.storage import db
    client = ModelApiClient(api_url, token=None, connect_timeout_s=5, read_timeout_s=300,
                            retries=0, backoff_s=0)
    spec = ModelSpec.from_reply(client.model_info())
    context = ForecastContext(INIT, load_sites(PROJECT_ROOT / "config" / "sites.csv"),
                              VARIABLES, LEAD_HOURS)
    conn = db.connect(os.environ["DATABASE_URL"])
    t0 = time.perf_counter()
    with conn, conn.cursor() as cur:
        snapshot = data_preparator.extract_snapshot(cur, spec, INIT)
    t1 = time.perf_counter()
    body = build_binary_body(spec, context, snapshot)
    t2 = time.perf_counter()
    reply = client.forecast(body)
    forecast = parse_forecast_reply(reply, spec, context)
    t3 = time.perf_counter()
    arrays = sum(a.nbytes for a in (*snapshot.inputs.values(), *snapshot.static.values()))
    print(json.dumps({"extract_s": t1 - t0, "encode_s": t2 - t1, "send_s": t3 - t2,
                      "body_bytes": len(body), "arrays_bytes": arrays,
                      "values": len(forecast.values),
                      "service_decode_s": reply["timings"]["decode_s"],
                      "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def run(database_url: str) -> dict:
    """Populate, start the service, run the job side; every figure in one dict."""
    from modules.storage import db
    db.connect_and_migrate(database_url).close()
    started = time.perf_counter()
    populate(database_url)
    print(f"stored 2 x 82 fields + 2 static on 721x1440 in {time.perf_counter() - started:.1f} s")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                               cwd=PROJECT_ROOT)
    try:
        wait_until_healthy(url, 120, service)
        idle = requests.post(f"{url}/bench/reset-peak", timeout=10).json()["rss_kib"]
        # the database URL (its password) in the environment, not on a command line `ps` shows
        job = subprocess.run([sys.executable, __file__, "--job", url], cwd=PROJECT_ROOT,
                             env={**os.environ, "DATABASE_URL": database_url},
                             capture_output=True, text=True, timeout=600)
        if job.returncode:
            raise RuntimeError(f"job side failed:\n{job.stdout}{job.stderr}")
        figures = json.loads(job.stdout.strip().splitlines()[-1])
        peak = requests.get(f"{url}/bench/peak", timeout=10).json()["hwm_kib"]
    finally:
        stop(service)
    return {**figures, "service_idle_kib": idle, "service_peak_kib": peak}


def report(f: dict) -> None:
    total = f["extract_s"] + f["encode_s"] + f["send_s"]
    job_peak = f["peak_rss_kib"] * 1024
    overhead = (f["service_peak_kib"] - f["service_idle_kib"]) * 1024
    ratio = overhead / f["arrays_bytes"]
    json_bytes = 4 * -(-f["arrays_bytes"] // 3)
    print(f"arrays {f['arrays_bytes'] / 1e6:.0f} MB; binary body {f['body_bytes'] / 1e6:.0f} MB"
          f" (the JSON body would be about {json_bytes / 1e6:.0f} MB); {f['values']} values")
    print(f"extract {f['extract_s']:.2f} s, encode {f['encode_s']:.3f} s, send + service "
          f"decode + reply {f['send_s']:.2f} s (service decode_s {f['service_decode_s']:.2f})")
    print(f"prepare + transport {total:.2f} s (target <= 10 s: {_met(total <= 10)})")
    print(f"job peak RSS {job_peak / GIB:.2f} GiB (target <= 2 GiB: {_met(job_peak <= 2 * GIB)})")
    print(f"service: idle {f['service_idle_kib'] / 1024**2:.2f} GiB, peak "
          f"{f['service_peak_kib'] / 1024**2:.2f} GiB, overhead {overhead / 1e6:.0f} MB = "
          f"{ratio:.2f} x the arrays (target <= 1.5x: {_met(ratio <= 1.5)})")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--job", metavar="API_URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    if args.job:
        job_side(args.job)
        return
    from modules.storage import db
    server_url = os.environ.get("DATABASE_URL") or db.embedded_url(Path(tempfile.mkdtemp()) / "pg")
    with db.scratch_database(server_url, "bench_binary_transport") as url:
        report(run(url))


if __name__ == "__main__":
    main()
