"""Helpers of the input-store tests: small ERA5 files written by the tests themselves, and
the loader run as a subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from graphcast_contract.project import PROJECT_ROOT
from modules.storage import db
from tests.subprocess_env import clean_environment


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


def run_loader(database_url: str, *args: str | Path, **env_vars: str
               ) -> subprocess.CompletedProcess:
    """Run `python -m modules.era5_loader ARGS` against `database_url` (more settings in
    `env_vars`)."""
    env = {**clean_environment(), "DATABASE_URL": database_url, **env_vars}
    return subprocess.run([sys.executable, "-m", "modules.era5_loader", *map(str, args)],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


def count_rows(database_url: str) -> tuple[int, int]:
    """(input_fields rows, input_static_fields rows)."""
    conn = db.connect(database_url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM input_fields),"
                    " (SELECT count(*) FROM input_static_fields)")
        counts = cur.fetchone()
    conn.close()
    return counts


def cds_axes(step: float) -> tuple[np.ndarray, np.ndarray]:
    """CDS-style axes: latitudes descending 90..-90, longitudes 0..360-step."""
    return np.arange(90, -90 - step / 2, -step), np.arange(0, 360, step)


def cds_netcdf(path: Path, fields: dict[str, np.ndarray], times: list[str],
               levels: list[int] | None = None, step: float = 10.0,
               units: dict[str, str] | None = None, old_style: bool = False) -> Path:
    """Write a CDS ERA5 NetCDF file. Each field is (time, [level,] lat, lon) with latitudes
    descending. New-style names (`valid_time`, `pressure_level`) unless `old_style`."""
    lat, lon = cds_axes(step)
    time_dim = "time" if old_style else "valid_time"
    level_dim = "level" if old_style else "pressure_level"
    dims = (time_dim, level_dim, "latitude", "longitude") if levels else (
        time_dim, "latitude", "longitude")
    coords = {time_dim: pd.to_datetime(times).values, "latitude": lat, "longitude": lon}
    if levels:
        coords[level_dim] = np.array(levels, dtype=np.float64)
    if not old_style:
        coords["number"] = 0
        coords["expver"] = (time_dim, np.array(["0001"] * len(times)))
    units = units or {}
    ds = xr.Dataset({name: (dims, data.astype(np.float32), {"units": units[name]} if name in
                            units else {}) for name, data in fields.items()}, coords=coords)
    ds.to_netcdf(path)
    return path


def grib_message(short_name: str, values: np.ndarray, when: str, level: int = 0,
                 edition: int = 1, accumulation_hours: int = 0) -> bytes:
    """One GRIB message from eccodes' sample templates on a global regular grid with
    latitudes descending; `values` is (lat, lon) in that order. Accumulations end at `when`."""
    import eccodes

    n_lat, n_lon = values.shape
    step = 360.0 / n_lon
    handle = eccodes.codes_grib_new_from_samples(f"regular_ll_sfc_grib{edition}")
    try:
        for key, value in (("Ni", n_lon), ("Nj", n_lat), ("iDirectionIncrementInDegrees", step),
                           ("jDirectionIncrementInDegrees", step), ("jScansPositively", 0),
                           ("latitudeOfFirstGridPointInDegrees", 90.0),
                           ("latitudeOfLastGridPointInDegrees", -90.0),
                           ("longitudeOfFirstGridPointInDegrees", 0.0),
                           ("longitudeOfLastGridPointInDegrees", 360.0 - step)):
            eccodes.codes_set(handle, key, value)
        eccodes.codes_set(handle, "typeOfLevel", "isobaricInhPa" if level else "surface")
        eccodes.codes_set(handle, "level", level)
        eccodes.codes_set(handle, "shortName", short_name)
        start = pd.Timestamp(when) - pd.Timedelta(hours=accumulation_hours)
        eccodes.codes_set(handle, "dataDate", int(start.strftime("%Y%m%d")))
        eccodes.codes_set(handle, "dataTime", int(start.strftime("%H%M")))
        if accumulation_hours:
            eccodes.codes_set(handle, "stepType", "accum")
            eccodes.codes_set(handle, "startStep", 0)
            eccodes.codes_set(handle, "endStep", accumulation_hours)
        eccodes.codes_set(handle, "bitsPerValue", 24)
        if np.isnan(values).any():
            eccodes.codes_set(handle, "bitmapPresent", 1)
            values = np.where(np.isnan(values), eccodes.codes_get(handle, "missingValue"), values)
        eccodes.codes_set_values(handle, np.ascontiguousarray(values, dtype=np.float64).ravel())
        return eccodes.codes_get_message(handle)
    finally:
        eccodes.codes_release(handle)
