"""Forcings GraphCast needs at every step, computed from the valid time and the grid.

- `year_progress_sin/cos` (batch, time) and `day_progress_sin/cos` (batch, time, lon): phase of
  the mean tropical year since the Unix epoch, and of the UTC day shifted by the local longitude.
- `toa_incident_solar_radiation` (batch, time, lat, lon): top-of-atmosphere incident solar
  radiation integrated over the hour ending at the valid time, in J m^-2, as in ERA5.

The equations, constants and float32 roundings follow DeepMind's official `data_utils` and
`solar_radiation` modules (the latter after the orbital formulas of ECCC's GEM model), so that
the values match those the published checkpoints were trained with.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

SECONDS_PER_DAY = 86_400
MEAN_DAYS_PER_YEAR = 365.24219  # tropical year used for year_progress

PROGRESS_FORCINGS = ("year_progress_sin", "year_progress_cos", "day_progress_sin",
                     "day_progress_cos")
TISR = "toa_incident_solar_radiation"
# What this module can compute, each name by its own formula below; the catalogue's
# FORCING_VARIABLES (what the published models take) must be among them (a test checks).
KNOWN_FORCINGS = PROGRESS_FORCINGS + (TISR,)

# ERA5 total solar irradiance (W m^-2): yearly values of IFS cycle 41r2, centred on mid-year
# (1951.5 ... 2034.5), scaled by 0.9965; 1996-2008 is a 13-year cycle repeated up to 2034.
_TSI_SCALE = 0.9965
_TSI_1951_1995 = (
    1365.7765, 1365.7676, 1365.6284, 1365.6564, 1365.7773,
    1366.3109, 1366.6681, 1366.6328, 1366.3828, 1366.2767,
    1365.9199, 1365.7484, 1365.6963, 1365.6976, 1365.7341,
    1365.9178, 1366.1143, 1366.1644, 1366.2476, 1366.2426,
    1365.9580, 1366.0525, 1365.7991, 1365.7271, 1365.5345,
    1365.6453, 1365.8331, 1366.2747, 1366.6348, 1366.6482,
    1366.6951, 1366.2859, 1366.1992, 1365.8103, 1365.6416,
    1365.6379, 1365.7899, 1366.0826, 1366.6479, 1366.5533,
    1366.4457, 1366.3021, 1366.0286, 1365.7971, 1365.6996,
)
_TSI_CYCLE = (
    1365.6121, 1365.7399, 1366.1021, 1366.3851, 1366.6836, 1366.6022, 1366.6807,
    1366.2300, 1366.0480, 1365.8545, 1365.8107, 1365.7240, 1365.6918,
)
ERA5_TSI_YEARS = np.arange(1951.5, 2035.5, 1.0)
ERA5_TSI = _TSI_SCALE * np.array(_TSI_1951_1995 + 3 * _TSI_CYCLE)

INTEGRATION_SECONDS = 3600  # ERA5 accumulates TISR over the hour ending at the valid time
INTEGRATION_BINS = 360  # trapezoidal rule on 361 instants, 10 s apart
_J2000_UNIX_DAYS = 10_957.5  # 2000-01-01T12:00 (Julian date 2451545.0) in days since 1970
_OBLIQUITY = 0.409093  # Earth's axial tilt, radians (23.4393 degrees)
_MAX_CHUNK_ELEMENTS = 4_000_000  # bounds the memory of one (lat, bin, lon) block


def _seconds_since_epoch(datetimes: np.ndarray) -> np.ndarray:
    """Whole seconds since 1970-01-01 (int64), same shape as `datetimes`."""
    return np.asarray(datetimes).astype("datetime64[s]").astype(np.int64)


def year_progress(seconds: np.ndarray) -> np.ndarray:
    """Fraction of the mean tropical year elapsed since the epoch, in [0, 1), float32."""
    years = seconds / SECONDS_PER_DAY / np.float64(MEAN_DAYS_PER_YEAR)
    return np.mod(years, 1.0).astype(np.float32)


def day_progress(seconds: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Local fraction of the day, in [0, 1), float32; shape `seconds.shape + lon.shape`."""
    greenwich = np.mod(seconds, SECONDS_PER_DAY) / SECONDS_PER_DAY
    offsets = np.deg2rad(lon) / (2 * np.pi)
    return np.mod(greenwich[..., np.newaxis] + offsets, 1.0).astype(np.float32)


def _sin_cos(progress: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of the phase 2*pi*progress, float32 like `progress`."""
    phase = progress * (2 * np.pi)
    return np.sin(phase), np.cos(phase)


def era5_tsi(datetimes: np.ndarray) -> np.ndarray:
    """ERA5 total solar irradiance (W m^-2) at each time, linearly interpolated by fractional year.

    Times before mid-1951 or after mid-2034 take the first or last table value.
    """
    times = np.asarray(datetimes, dtype="datetime64[ns]")
    years = times.astype("datetime64[Y]")
    year_start = years.astype("datetime64[ns]")
    year_length = (years + 1).astype("datetime64[ns]") - year_start
    fraction = (times - year_start) / year_length
    fractional_year = years.astype(np.int64) + 1970 + fraction
    return np.interp(fractional_year, ERA5_TSI_YEARS, ERA5_TSI)


def _j2000_days(datetimes: np.ndarray) -> np.ndarray:
    """Days (float64) since the J2000 epoch, 2000-01-01T12:00."""
    ns = np.asarray(datetimes, dtype="datetime64[ns]").astype(np.int64)
    return ns / (SECONDS_PER_DAY * 1e9) - _J2000_UNIX_DAYS


def _integration_instants(end_j2000_days: float) -> np.ndarray:
    """The INTEGRATION_BINS + 1 instants (J2000 days) of the hour ending at `end_j2000_days`.

    Rounded to float32 exactly as the official module does (it runs in JAX's default float32):
    this quantises instants to ~42 s near the present, which ERA5-matching values depend on.
    """
    offsets = np.linspace(-INTEGRATION_SECONDS, 0, INTEGRATION_BINS + 1) / SECONDS_PER_DAY
    return (np.float32(end_j2000_days) + offsets.astype(np.float32)).astype(np.float64)


def _sun_position(j2000_days: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sun as seen from Earth at each instant (J2000 days).

    Returns (solar time as a fraction of a day at Greenwich, sin and cos of the solar
    declination, Earth-Sun distance in astronomical units), each shaped like the input.
    """
    theta = j2000_days / 365.25  # Julian years since J2000
    rotational_phase = j2000_days % 1.0
    rel = 1.7535 + 6.283076 * theta  # mean anomaly-like angles of the GEM formulas (radians)
    rem = 6.240041 + 6.283020 * theta
    rlls = 4.8951 + 6.283076 * theta
    ecliptic_lon = (4.8952 + 6.283320 * theta - 0.0075 * np.sin(rel) - 0.0326 * np.cos(rel)
                    - 0.0003 * np.sin(2 * rel) + 0.0002 * np.cos(2 * rel))
    sin_decl = np.sin(_OBLIQUITY) * np.sin(ecliptic_lon)
    cos_decl = np.sqrt(1.0 - sin_decl**2)
    eq_of_time_s = (591.8 * np.sin(2 * rlls) - 459.4 * np.sin(rem)
                    + 39.5 * np.sin(rem) * np.cos(2 * rlls) - 12.7 * np.sin(4 * rlls)
                    - 4.8 * np.sin(2 * rem))
    distance_au = 1.0001 - 0.0163 * np.sin(rel) + 0.0037 * np.cos(rel)
    solar_time = rotational_phase + eq_of_time_s / SECONDS_PER_DAY
    return solar_time, sin_decl, cos_decl, distance_au


def _hourly_tisr(end_j2000_days: float, tsi: float, lat_rad: np.ndarray,
                 lon_rad: np.ndarray) -> np.ndarray:
    """TISR (J m^-2) over the hour ending at one instant, on the (lat, lon) grid."""
    trapezoid = np.full(INTEGRATION_BINS + 1, INTEGRATION_SECONDS / INTEGRATION_BINS)  # seconds
    trapezoid[[0, -1]] /= 2
    # Float32 rounding makes several instants equal: evaluate each distinct one once.
    instants, which = np.unique(_integration_instants(end_j2000_days), return_inverse=True)
    seconds = np.bincount(which, weights=trapezoid)
    solar_time, sin_decl, cos_decl, distance_au = _sun_position(instants)
    weights = seconds * tsi / distance_au**2  # J m^-2 per unit sine of the solar altitude
    # (bin, lon)
    cos_hour = cos_decl[:, None] * np.cos(2 * np.pi * solar_time[:, None] + lon_rad[None, :])
    out = np.empty((lat_rad.size, lon_rad.size))
    rows = max(1, _MAX_CHUNK_ELEMENTS // cos_hour.size)
    for start in range(0, lat_rad.size, rows):
        lat = lat_rad[start:start + rows, None, None]
        sin_altitude = np.cos(lat) * cos_hour + np.sin(lat) * sin_decl[:, None]  # (lat, bin, lon)
        out[start:start + rows] = np.einsum("abc,b->ac", np.maximum(sin_altitude, 0.0), weights)
    return out


def toa_incident_solar_radiation(datetimes: Sequence | np.ndarray, lat: np.ndarray,
                                  lon: np.ndarray) -> np.ndarray:
    """ERA5-style TISR in J m^-2, float32, shaped (time, lat, lon).

    datetimes: valid times (anything numpy converts to datetime64), 1-D; each value is the
    integral over the hour ending at that time. lat, lon: grid coordinates in degrees, 1-D.
    """
    times = np.asarray(datetimes, dtype="datetime64[ns]").reshape(-1)
    lat_rad = np.deg2rad(np.asarray(lat, dtype=np.float64))
    lon_rad = np.deg2rad(np.asarray(lon, dtype=np.float64))
    tsi = era5_tsi(times)
    days = _j2000_days(times)
    fields = [_hourly_tisr(day, irradiance, lat_rad, lon_rad)
              for day, irradiance in zip(days, tsi, strict=True)]
    return np.stack(fields).reshape(times.shape + (lat_rad.size, lon_rad.size)).astype(np.float32)


def add_forcings(ds: xr.Dataset, variables: Sequence[str]) -> xr.Dataset:
    """Return `ds` plus every known forcing in `variables` that `ds` lacks, computed from its
    `datetime` coordinate (batch, time) and `lat`/`lon` coordinates (degrees).

    Variables that are not forcings, and forcings already present, are left as they are.
    """
    missing = [name for name in variables if name in KNOWN_FORCINGS and name not in ds.data_vars]
    if not missing:
        return ds
    if "datetime" not in ds.coords:
        raise ValueError(f"cannot compute forcings {missing}: the dataset has no 'datetime' "
                         "coordinate")
    datetime = ds.coords["datetime"]
    seconds = _seconds_since_epoch(datetime.values)
    new: dict[str, xr.Variable] = {}
    if {"year_progress_sin", "year_progress_cos"} & set(missing):
        sin, cos = _sin_cos(year_progress(seconds))
        new["year_progress_sin"] = xr.Variable(datetime.dims, sin)
        new["year_progress_cos"] = xr.Variable(datetime.dims, cos)
    if {"day_progress_sin", "day_progress_cos"} & set(missing):
        sin, cos = _sin_cos(day_progress(seconds, ds.coords["lon"].values))
        new["day_progress_sin"] = xr.Variable(datetime.dims + ("lon",), sin)
        new["day_progress_cos"] = xr.Variable(datetime.dims + ("lon",), cos)
    if TISR in missing:
        lat, lon = ds.coords["lat"].values, ds.coords["lon"].values
        tisr = toa_incident_solar_radiation(datetime.values.reshape(-1), lat, lon)
        new[TISR] = xr.Variable(datetime.dims + ("lat", "lon"),
                                tisr.reshape(datetime.shape + tisr.shape[1:]))
    return ds.assign({name: new[name] for name in missing})
