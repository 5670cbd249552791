"""The batch job end to end against the real service serving the reference checkpoint.

The reference `example_batch.nc` goes into PostgreSQL with the ERA5 loader, then
`trigger_and_ingest_forecast.py --init-time 2022-01-01T06:00` runs as a subprocess; its 80
stored values must be the official fp32 predictions interpolated at the 20 sites.
"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg2
import xarray as xr
from api_helpers import PROJECT_ROOT, REFERENCE_DIR

from graphcast_contract.interpolation import bilinear

INIT = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)
GRID = dict(lat_first=-90.0, lat_step=10.0, lon_first=0.0, lon_step=10.0)


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROJECT_ROOT, env={**os.environ, **env}, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_batch_job_stores_the_interpolated_official_predictions(
    reference_server: str, clean_db: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": clean_db, "GRAPHCAST_API_URL": reference_server,
           "LOG_DIR": str(tmp_path), "FORECAST_VARIABLES": "2m_temperature",
           "FORECAST_LEAD_HOURS": "6,12,18,24"}
    loaded = run([sys.executable, "-m", "modules.era5_loader",
                  str(REFERENCE_DIR / "example_batch.nc")], env)
    assert loaded.returncode == 0, loaded.stdout
    job = run([sys.executable, "trigger_and_ingest_forecast.py", "--init-time",
               "2022-01-01T06:00"], env)
    assert job.returncode == 0, job.stdout
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT site, latitude, longitude, lead_hours, forecast_time, variable,"
                    " value FROM predictions WHERE init_time = %s", (INIT,))
        rows = cur.fetchall()
    assert len(rows) == 80
    assert len({row[0] for row in rows}) == 20
    predictions = xr.load_dataset(REFERENCE_DIR / "predictions_fp32.nc", decode_timedelta=True)
    field = predictions["2m_temperature"].isel(batch=0).transpose("time", "lat", "lon").values
    scale = float(xr.load_dataset(REFERENCE_DIR / "stats_diffs_stddev_by_level.nc")
                  ["2m_temperature"])
    for site, latitude, longitude, lead, forecast_time, variable, value in rows:
        assert variable == "2m_temperature"
        assert forecast_time == INIT + timedelta(hours=lead)
        step = lead // 6 - 1
        expected = bilinear(field[step], np.array([latitude]), np.array([longitude]), **GRID)[0]
        tolerance = 1e-3 * scale + 1e-6 * abs(expected)
        assert abs(value - expected) <= tolerance, (site, lead, value, expected)
