"""Helpers of the batch-job tests: the example frames as store fields, the job run as a real
subprocess (its exit code, output and log file), and queries of what it stored."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from graphcast_contract.model_spec import Grid
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.variables import STATIC_VARIABLES
from modules.inputs import store as era5_store
from modules.storage import db
from tests.paths import REFERENCE_DIR
from tests.subprocess_env import clean_environment

EXAMPLE = REFERENCE_DIR / "example_batch.nc"
EXAMPLE_START = datetime(2022, 1, 1, 0, tzinfo=timezone.utc)  # 6 frames, 6 h apart
FAST_API_ENV = {"GRAPHCAST_API_RETRIES": "2", "GRAPHCAST_API_BACKOFF_S": "0.05",
                "GRAPHCAST_API_CONNECT_TIMEOUT_S": "2", "GRAPHCAST_API_TIMEOUT_S": "20"}


@dataclass(frozen=True)
class ExampleFrames:
    """The 10-degree example batch as store fields: frames[i] is frame i's fields."""

    grid: Grid
    frames: list[dict[era5_store.FieldKey, np.ndarray]]
    static: dict[str, np.ndarray]


def read_example_frames() -> ExampleFrames:
    """The example batch's frames and statics, as the store holds them."""
    ds = xr.load_dataset(EXAMPLE).isel(batch=0)
    grid = Grid.from_coordinates(ds.lat.values, ds.lon.values)
    frames = []
    for t in range(ds.sizes["time"]):
        fields: dict[era5_store.FieldKey, np.ndarray] = {}
        for name, var in ds.data_vars.items():
            if "time" not in var.dims or name == "toa_incident_solar_radiation":
                continue
            frame = var.isel(time=t)
            if "level" in frame.dims:
                for level in ds.level.values:
                    fields[(name, int(level))] = frame.sel(level=level).values.astype(np.float32)
            else:
                fields[(name, 0)] = frame.values.astype(np.float32)
        frames.append(fields)
    static = {name: ds[name].values.astype(np.float32) for name in STATIC_VARIABLES}
    return ExampleFrames(grid, frames, static)


def load_frames(url: str, example: ExampleFrames, start: datetime, count: int = 6) -> None:
    """Store the first `count` example frames at start, start + 6 h, ... and the statics."""
    conn = db.connect(url)
    with conn, conn.cursor() as cur:
        for k in range(count):
            era5_store.write_fields(cur, example.grid, start + timedelta(hours=6 * k),
                                    example.frames[k])
        era5_store.write_static(cur, example.grid, example.static)
    conn.close()


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = db.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@dataclass
class JobResult:
    returncode: int
    output: str       # stdout + stderr
    log_file: Path


class JobRunner:
    """Runs trigger_and_ingest_forecast.py as a subprocess against the test database/API."""

    def __init__(self, database_url: str, api_url: str, log_dir: Path) -> None:
        self.env = {**clean_environment(), "DATABASE_URL": database_url,
                    "GRAPHCAST_API_URL": api_url, "LOG_DIR": str(log_dir), **FAST_API_ENV}
        self.log_dir = log_dir

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(PROJECT_ROOT / "trigger_and_ingest_forecast.py"), *args]

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), cwd=PROJECT_ROOT, env={**self.env, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def __call__(self, *args: str, **env: str) -> JobResult:
        done = subprocess.run(self.command(*args), cwd=PROJECT_ROOT, env={**self.env, **env},
                              capture_output=True, text=True, timeout=120)
        return JobResult(done.returncode, done.stdout + done.stderr,
                         self.log_dir / "pipeline.log")


def predictions(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT site, lead_hours, variable, value, init_time, run_id"
                      " FROM predictions ORDER BY lead_hours, site")


def ledger(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT init_time, status, reason, exit_code, rows_written, model"
                      " FROM forecast_runs ORDER BY run_id")
