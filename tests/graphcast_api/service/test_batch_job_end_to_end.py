"""The batch job end to end against the real service serving the reference checkpoint.

The reference `example_batch.nc` goes into PostgreSQL with the ERA5 loader, then
`trigger_and_ingest_forecast.py --init-time 2022-01-01T06:00` runs as a subprocess asking
for a surface variable and a pressure-level one (`temperature@850`); its 160 stored values
must be the official fp32 predictions interpolated at the 20 sites. The subprocesses get a
clean environment (tests/subprocess_env.py): the developer's settings cannot change them.
"""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg2
import xarray as xr

from graphcast_contract.interpolation import bilinear
from tests.graphcast_api.service.helpers import PROJECT_ROOT, REFERENCE_DIR
from tests.subprocess_env import clean_environment

INIT = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)
GRID = dict(lat_first=-90.0, lat_step=10.0, lon_first=0.0, lon_step=10.0)
LEADS = (6, 12, 18, 24)


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def official_at_level(name: str, level: int) -> tuple[np.ndarray, float]:
    """The official fp32 prediction of `name` at `level` (0: single-level) as
    (time, lat, lon), and the variable's diffs-stddev at that level (the tolerance scale)."""
    field = xr.load_dataset(REFERENCE_DIR / "predictions_fp32.nc",
                            decode_timedelta=True)[name].isel(batch=0)
    scale = xr.load_dataset(REFERENCE_DIR / "stats_diffs_stddev_by_level.nc")[name]
    if level:
        field, scale = field.sel(level=level), scale.sel(level=level)
    return field.transpose("time", "lat", "lon").values, float(scale)


def test_batch_job_stores_the_interpolated_official_predictions(
    reference_server: str, clean_db: str, tmp_path: Path
) -> None:
    env = clean_environment(DATABASE_URL=clean_db, GRAPHCAST_API_URL=reference_server,
                            LOG_DIR=str(tmp_path),
                            FORECAST_VARIABLES="2m_temperature,temperature@850",
                            FORECAST_LEAD_HOURS=",".join(map(str, LEADS)))
    loaded = run([sys.executable, "-m", "modules.era5_loader",
                  str(REFERENCE_DIR / "example_batch.nc")], env)
    assert loaded.returncode == 0, loaded.stdout
    job = run([sys.executable, "trigger_and_ingest_forecast.py", "--init-time",
               "2022-01-01T06:00"], env)
    assert job.returncode == 0, job.stdout
    assert "rows=160" in job.stdout
    with psycopg2.connect(clean_db) as conn, conn.cursor() as cur:
        cur.execute("SELECT site, latitude, longitude, lead_hours, forecast_time, variable,"
                    " level, value FROM predictions WHERE init_time = %s", (INIT,))
        rows = cur.fetchall()
    assert len(rows) == 160
    assert len({row[0] for row in rows}) == 20
    by_variable = {(row[5], row[6]) for row in rows}
    assert by_variable == {("2m_temperature", 0), ("temperature", 850)}
    for variable, level in by_variable:
        assert sorted({row[3] for row in rows if (row[5], row[6]) == (variable, level)}) == \
            list(LEADS)
    official = {key: official_at_level(*key) for key in by_variable}
    for site, latitude, longitude, lead, forecast_time, variable, level, value in rows:
        assert forecast_time == INIT + timedelta(hours=lead)
        field, scale = official[(variable, level)]
        step = lead // 6 - 1
        expected = bilinear(field[step], np.array([latitude]), np.array([longitude]), **GRID)[0]
        tolerance = 1e-3 * scale + 1e-6 * abs(expected)
        assert abs(value - expected) <= tolerance, (site, variable, level, lead, value, expected)
