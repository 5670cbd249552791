"""Helpers for the ERA5 loader tests: small files written by the tests themselves."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from modules import db

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def graphcast_dataset(step: float = 10.0, times: tuple[str, ...] = ("2022-01-01T00:00",
                      "2022-01-01T06:00"), levels: tuple[int, ...] = (500, 850),
                      seed: int = 0) -> xr.Dataset:
    """A small dataset in the GraphCast example layout (batch, time, level, lat, lon)."""
    rng = np.random.default_rng(seed)
    lat = np.arange(-90, 90 + step / 2, step, dtype=np.float32)
    lon = np.arange(0, 360, step, dtype=np.float32)
    shape2 = (1, len(times), lat.size, lon.size)
    shape3 = (1, len(times), len(levels), lat.size, lon.size)
    datetimes = pd.to_datetime(list(times)).values

    def field(shape, mean, spread):
        return (mean + spread * rng.standard_normal(shape)).astype(np.float32)

    return xr.Dataset(
        {
            "2m_temperature": (("batch", "time", "lat", "lon"), field(shape2, 280, 10)),
            "total_precipitation_6hr": (("batch", "time", "lat", "lon"),
                                        np.abs(field(shape2, 0, 1e-3))),
            "temperature": (("batch", "time", "level", "lat", "lon"), field(shape3, 250, 10)),
            "geopotential": (("batch", "time", "level", "lat", "lon"), field(shape3, 5e4, 1e3)),
            "land_sea_mask": (("lat", "lon"), rng.uniform(0, 1, (lat.size, lon.size))
                              .astype(np.float32)),
            "geopotential_at_surface": (("lat", "lon"), field((lat.size, lon.size), 1e3, 1e3)),
        },
        coords={
            "lat": lat, "lon": lon, "level": np.array(levels, dtype=np.int32),
            "time": datetimes - datetimes[0],
            "datetime": (("batch", "time"), datetimes[None, :]),
        },
    )


def run_loader(database_url: str, *args: str | Path) -> subprocess.CompletedProcess:
    """Run `python -m modules.era5_loader ARGS` against `database_url`."""
    env = dict(os.environ, DATABASE_URL=database_url)
    return subprocess.run([sys.executable, "-m", "modules.era5_loader", *map(str, args)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


def count_rows(database_url: str) -> tuple[int, int]:
    """(era5_fields rows, era5_static_fields rows)."""
    conn = db.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM era5_fields),"
                    " (SELECT count(*) FROM era5_static_fields)")
        counts = cur.fetchone()
    conn.close()
    return counts


@pytest.fixture
def conn(clean_db: str) -> Iterator:
    """A connection to the emptied test database."""
    connection = db.connect(clean_db)
    yield connection
    connection.close()
