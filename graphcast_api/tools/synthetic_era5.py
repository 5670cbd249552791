"""A synthetic but physically plausible ERA5-like dataset for offline demos and benchmarks.

The dataset has the layout of DeepMind's GraphCast example datasets (`dataset/source-*.nc`):
dimensions `batch, time, level, lat, lon`, a `datetime` coordinate (batch, time), `time` as
time deltas from the first frame, latitudes ascending from -90 to 90, longitudes from 0 to
360 - resolution, float32 values, and every input variable of GraphCast_small except the
forcings (the engine computes those). Values are simple climatologies plus smooth random
patterns of low wavenumber that drift eastwards, so consecutive frames differ (persistence
is not exact) while staying within the ranges of real ERA5.

It is made up: no number in it is an observation. numpy and xarray only (no torch).

Command line (`python -m graphcast_api.synthetic_era5` is the same command):
    python -m graphcast_api synthetic-era5 --out FILE.nc [--resolution 1.0]
        [--start 2022-01-01T00:00] [--times 6] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pandas.errors import OutOfBoundsDatetime

from graphcast_contract.cycles import STEP_HOURS
from graphcast_contract.errors import ExitCode, exit_code_help
from graphcast_contract.files import write_atomically
from graphcast_contract.model_spec import global_grid
from graphcast_contract.variables import PRESSURE_LEVELS_13, STANDARD_GRAVITY

DEFAULT_START = "2022-01-01T00:00"
EXIT_CODES = (ExitCode.INTERNAL, ExitCode.USAGE, ExitCode.OUTPUT_FAILED)

R_DRY = 287.05  # J kg-1 K-1, gas constant of dry air
LAPSE_RATE = 0.0065  # K m-1


class SmoothPattern:
    """A random field on the sphere of low wavenumber and roughly unit RMS that drifts
    eastwards and slowly changes amplitude.

    It is a sum of cos(lat)^m * T_n(sin(lat)) * cos(m * lon + phase) terms (T_n the
    Chebyshev polynomials; the cos(lat)^m factor keeps it single-valued at the poles),
    so it can be evaluated on any grid and the same seed gives the same weather.
    """

    def __init__(self, rng: np.random.Generator, max_zonal: int = 5, max_meridional: int = 6):
        m = np.arange(max_zonal + 1)[:, None]
        n = np.arange(max_meridional + 1)[None, :]
        shape = (max_zonal + 1, max_meridional + 1)
        self._m = m
        self._n = n
        self._amplitude = rng.standard_normal(shape) / (1.0 + m + n)
        self._amplitude[0] *= 0.5  # weaker zonal means ...
        self._amplitude[0, 0] = 0.0  # ... and no global offset
        self._phase = rng.uniform(0, 2 * np.pi, shape)
        self._drift = np.deg2rad(rng.uniform(4.0, 14.0, shape)) / 24.0  # rad per hour
        self._period = rng.uniform(48.0, 144.0, shape)  # hours, of the amplitude change
        self._period_phase = rng.uniform(0, 2 * np.pi, shape)
        self._scale = 1.0
        lat = np.arange(-90.0, 90.1, 2.0)
        lon = np.arange(0.0, 360.0, 2.0)
        self._scale = 1.0 / float(np.sqrt(np.mean(self(lat, lon, np.zeros(1)) ** 2)))

    def __call__(self, lat: np.ndarray, lon: np.ndarray, hours: np.ndarray) -> np.ndarray:
        """The pattern at latitudes `lat` and longitudes `lon` (degrees) and `hours` after
        the start: array (time, lat, lon), float64."""
        phi = np.deg2rad(lat)
        lat_basis = (np.cos(phi)[None, None, :] ** self._m[..., None]
                     * np.cos(self._n[..., None] * np.arccos(np.sin(phi))[None, None, :]))
        zonal = np.exp(1j * self._m[:, 0, None] * np.deg2rad(lon)[None, :])  # (m, lon)
        out = np.empty((len(hours), len(lat), len(lon)))
        for i, hour in enumerate(hours):
            growth = 1.0 + 0.3 * np.sin(2 * np.pi * hour / self._period + self._period_phase)
            coef = (self._amplitude * growth
                    * np.exp(1j * (self._phase - self._m * self._drift * hour)))  # (m, n)
            by_lat = np.einsum("mn,mnl->ml", coef, lat_basis)  # (m, lat)
            out[i] = np.real(by_lat.T @ zonal)
        return out * self._scale


def synthetic_dataset(
    resolution: float = 1.0,
    levels: Sequence[int] = PRESSURE_LEVELS_13,
    start: str | datetime | np.datetime64 = DEFAULT_START,
    n_times: int = 6,
    seed: int = 0,
) -> xr.Dataset:
    """A synthetic ERA5-like dataset of `n_times` frames 6 h apart from `start` (UTC) on a
    global `resolution`-degree grid with pressure `levels` (hPa), in the official GraphCast
    example-dataset layout. Deterministic for a given seed."""
    if n_times < 1:
        raise ValueError(f"n_times must be at least 1, got {n_times}")
    grid = global_grid(resolution)
    lat, lon = grid.latitudes(), grid.longitudes()
    hours = np.arange(n_times) * float(STEP_HOURS)
    times = _frame_times(start, hours)
    pressure = np.asarray(levels, dtype=np.float64)
    if pressure.ndim != 1 or pressure.size == 0 or np.any(pressure <= 0):
        raise ValueError(f"levels must be positive pressures in hPa, got {list(levels)}")

    weather = _Weather(np.random.default_rng(seed), lat, lon, hours, times)
    static = weather.static_fields()
    surface, atmosphere = weather.fields(pressure, static)

    coords = {
        "lat": ("lat", lat.astype(np.float32)),
        "lon": ("lon", lon.astype(np.float32)),
        "level": ("level", np.asarray(levels, dtype=np.int32)),
        "time": ("time", pd.to_timedelta(hours, unit="h").to_numpy().astype("timedelta64[ns]")),
        "datetime": (("batch", "time"), times.to_numpy()[None, :]),
    }
    data = {name: (("lat", "lon"), value.astype(np.float32)) for name, value in static.items()}
    data.update({name: (("batch", "time", "lat", "lon"), value[None].astype(np.float32))
                 for name, value in surface.items()})
    data.update({name: (("batch", "time", "level", "lat", "lon"), value[None].astype(np.float32))
                 for name, value in atmosphere.items()})
    return xr.Dataset(data, coords=coords)


def _frame_times(start: str | datetime | np.datetime64, hours: np.ndarray) -> pd.DatetimeIndex:
    """The frames' times, `hours` after `start`, timezone-naive UTC (naive input is taken as
    UTC) in the layout's datetime64[ns]; ValueError for NaT, and for a frame outside that
    unit's range (1677-09-21 .. 2262-04-11), which numpy would wrap round silently."""
    first = pd.Timestamp(start)
    if pd.isna(first):
        raise ValueError(f"start {start!r} is not a time")
    if first.tzinfo is not None:
        first = first.tz_convert("UTC").tz_localize(None)
    times = first + pd.to_timedelta(hours, unit="h")
    try:
        return times.as_unit("ns")
    except OutOfBoundsDatetime:
        raise ValueError(f"the frames from start {times[0]} to {times[-1]} leave "
                         f"datetime64[ns]'s range {pd.Timestamp.min:%Y-%m-%d %H:%M} .. "
                         f"{pd.Timestamp.max:%Y-%m-%d %H:%M}") from None


class _Weather:
    """Builds the fields on one grid; arrays are (time, lat, lon) or (time, level, lat, lon)."""

    def __init__(self, rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray,
                 hours: np.ndarray, times: pd.DatetimeIndex):
        self.rng = rng
        self.lat = lat
        self.lon = lon
        self.hours = hours
        self.times = times
        self.abs_lat = np.abs(lat)[None, :, None]
        self.sin_lat = np.sin(np.deg2rad(lat))[None, :, None]

    def pattern(self, static: bool = False) -> np.ndarray:
        """A new unit-RMS smooth random pattern: (time, lat, lon), or (lat, lon) if static."""
        field = SmoothPattern(self.rng)(self.lat, self.lon, np.zeros(1) if static else self.hours)
        return field[0] if static else field

    def static_fields(self) -> dict[str, np.ndarray]:
        """Land-sea mask in [0, 1] with fractional coasts, surface geopotential (m2 s-2)
        up to about 3 km x g over land."""
        land = 1.0 / (1.0 + np.exp(-4.0 * (self.pattern(static=True) - 0.4)))
        land = np.where(land < 0.02, 0.0, np.where(land > 0.98, 1.0, land))
        relief = np.clip(self.pattern(static=True), 0.0, None)
        height = land * (150.0 + 1100.0 * relief ** 1.5)
        height = np.minimum(height, 3000.0)
        return {"geopotential_at_surface": STANDARD_GRAVITY * height, "land_sea_mask": land}

    def fields(self, pressure: np.ndarray, static: dict[str, np.ndarray]
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Surface and pressure-level variables, consistent with each other."""
        land = static["land_sea_mask"][None]
        height = static["geopotential_at_surface"][None] / STANDARD_GRAVITY

        t_sea_level = self._sea_level_temperature(land)  # (time, lat, lon), K
        mslp = self._mean_sea_level_pressure()
        t2m = t_sea_level - LAPSE_RATE * height
        temperature = self._temperature(t_sea_level, pressure)
        geopotential = self._geopotential(temperature, t_sea_level, mslp, pressure)
        u, v, u10, v10 = self._winds(pressure)
        surface = {
            "2m_temperature": t2m,
            "mean_sea_level_pressure": mslp,
            "10m_u_component_of_wind": u10,
            "10m_v_component_of_wind": v10,
            "total_precipitation_6hr": self._precipitation(),
        }
        atmosphere = {
            "temperature": temperature,
            "geopotential": geopotential,
            "u_component_of_wind": u,
            "v_component_of_wind": v,
            "vertical_velocity": self._vertical_velocity(pressure),
            "specific_humidity": self._specific_humidity(temperature, pressure),
        }
        return surface, atmosphere

    def _sea_level_temperature(self, land: np.ndarray) -> np.ndarray:
        """~300 K in the tropics, ~245 K at the winter pole, seasonal and diurnal cycles
        (the daily swing larger over land), plus 4 K of moving anomalies."""
        day_of_year = self.times.day_of_year.to_numpy()[:, None, None]
        winter_north = np.cos(2 * np.pi * (day_of_year - 15) / 365.25)
        climate = (300.0 - 42.0 * self.sin_lat ** 2 - 12.0 * self.sin_lat * winter_north)
        utc_hours = (self.times.hour + self.times.minute / 60).to_numpy()[:, None, None]
        local_hour = (utc_hours + self.lon[None, None, :] / 15.0) % 24.0
        diurnal = (1.0 + 4.0 * land) * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
        return climate + diurnal + 3.5 * self.pattern()

    def _mean_sea_level_pressure(self) -> np.ndarray:
        """Subtropical highs, subpolar lows and 9 hPa of moving anomalies (Pa)."""
        zonal = (400.0 * np.exp(-((self.abs_lat - 32.0) / 10.0) ** 2)
                 - 900.0 * np.exp(-((self.abs_lat - 62.0) / 10.0) ** 2))
        return 101_325.0 + zonal + 900.0 * self.pattern()

    def _temperature(self, t_sea_level: np.ndarray, pressure: np.ndarray) -> np.ndarray:
        """Dry-adiabatic-like lapse from the sea-level temperature up to a tropopause at
        ~212-220 K, isothermal above; anomalies decaying with height (K)."""
        exponent = R_DRY * LAPSE_RATE / STANDARD_GRAVITY
        p = pressure[None, :, None, None]
        troposphere = t_sea_level[:, None] * (p / 1013.25) ** exponent
        stratosphere = 216.0 + 4.0 * self.sin_lat[:, None] ** 2 + 0.02 * (p - 50.0)
        upper_anomaly = 2.0 * self.pattern()[:, None] * (1.0 - p / 1000.0)
        return np.maximum(troposphere, stratosphere) + upper_anomaly

    def _geopotential(self, temperature: np.ndarray, t_sea_level: np.ndarray,
                      mslp: np.ndarray, pressure: np.ndarray) -> np.ndarray:
        """Hypsometric integration upwards from z = 0 at the mean-sea-level pressure:
        dPhi = R T dln(p) with the layer-mean temperature (m2 s-2)."""
        order = np.argsort(-pressure)  # from the bottom up
        out = np.empty_like(temperature)
        below_p = mslp / 100.0
        below_phi = np.zeros_like(mslp)
        below_t = t_sea_level
        for k in order:
            layer_t = 0.5 * (below_t + temperature[:, k])
            phi = below_phi + R_DRY * layer_t * np.log(below_p / pressure[k])
            out[:, k] = phi
            below_p, below_phi, below_t = pressure[k], phi, temperature[:, k]
        return out

    def _winds(self, pressure: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Jets of ~35 m s-1 near 250 hPa and 35 degrees, trade easterlies and surface
        westerlies below, plus moving anomalies (m s-1): u, v on levels, then 10 m u, v."""
        p = pressure[None, :, None, None]
        jet = (35.0 * np.exp(-((self.abs_lat - 35.0) / 10.0) ** 2)[:, None]
               * np.exp(-(np.log(p / 250.0) / 0.8) ** 2))
        surface_u = (-6.0 * np.exp(-(self.lat[None, :, None] / 15.0) ** 2)
                     + 7.0 * np.exp(-((self.abs_lat - 50.0) / 12.0) ** 2))
        low = np.clip((p - 500.0) / 500.0, 0.0, 1.0)
        strength = 3.0 + 5.0 * np.exp(-(np.log(p / 250.0) / 1.0) ** 2)
        u = jet + low * surface_u[:, None] + strength * self.pattern()[:, None]
        v = strength * self.pattern()[:, None]
        u10 = 0.7 * surface_u + 2.5 * self.pattern()
        v10 = 2.5 * self.pattern()
        return u, v, u10, v10

    def _vertical_velocity(self, pressure: np.ndarray) -> np.ndarray:
        """Pressure velocity (Pa s-1), strongest in the mid troposphere, ~0.1 Pa s-1 RMS."""
        p = pressure[None, :, None, None]
        shape = np.sin(np.pi * np.clip((p - 100.0) / 900.0, 0.0, 1.0)) + 0.05
        return 0.12 * shape * self.pattern()[:, None]

    def _specific_humidity(self, temperature: np.ndarray, pressure: np.ndarray) -> np.ndarray:
        """Relative humidity (moister near the ground, drier where hot) times saturation
        specific humidity over water (Bolton 1980), floored at a stratospheric 3e-6 kg kg-1."""
        p = pressure[None, :, None, None]
        e_sat = 611.2 * np.exp(17.67 * (temperature - 273.15) / (temperature - 29.65))  # Pa
        q_sat = 0.622 * e_sat / (p * 100.0)
        relative = np.clip(0.65 + 0.2 * self.pattern()[:, None], 0.05, 0.95)
        relative = relative * np.minimum(1.0, (p / 300.0) ** 2)
        relative = relative * np.clip(1.0 - (temperature - 298.0) / 20.0, 0.3, 1.0)  # hot = dry
        return np.maximum(relative * q_sat, 3e-6)

    def _precipitation(self) -> np.ndarray:
        """6-hour accumulation (m of water), zero where the pattern is below a threshold,
        up to ~5 mm, more along the ITCZ and the storm tracks."""
        bands = (np.exp(-(self.lat[None, :, None] / 12.0) ** 2)
                 + 0.7 * np.exp(-((self.abs_lat - 50.0) / 12.0) ** 2))
        wetness = np.clip(self.pattern() + bands - 0.6, 0.0, None)
        return 0.0012 * wetness ** 2


def write_netcdf(dataset: xr.Dataset, path: Path) -> None:
    """Write atomically: a partial file never carries the final name."""
    with write_atomically(path, ".nc.tmp") as temporary:
        dataset.to_netcdf(temporary)


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    """Register the `synthetic-era5` subcommand."""
    parser = subcommands.add_parser(
        "synthetic-era5", help="write a synthetic ERA5-like dataset (example-batch layout)",
        description="Write a synthetic (made-up, physically plausible) ERA5-like dataset in\n"
                    "the GraphCast example-dataset layout.",
        epilog=exit_code_help(*EXIT_CODES), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="NetCDF file to write")
    parser.add_argument("--resolution", type=float, default=1.0, help="degrees (default 1.0)")
    parser.add_argument("--start", default=DEFAULT_START,
                        help=f"first frame, ISO 8601, UTC (default {DEFAULT_START})")
    parser.add_argument("--times", type=int, default=6,
                        help="number of frames, 6 h apart (default 6: 2 inputs + 4 targets)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The `synthetic-era5` command: its exit code, errors as one line on stderr."""
    try:
        start = pd.Timestamp(args.start)
    except ValueError:
        print(f"error: --start {args.start!r} is not an ISO 8601 time", file=sys.stderr)
        return ExitCode.USAGE
    if args.seed < 0:  # numpy's refusal would not name the option
        print(f"error: --seed must be a non-negative integer, got {args.seed}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        dataset = synthetic_dataset(args.resolution, start=start, n_times=args.times,
                                    seed=args.seed)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        write_netcdf(dataset, args.out)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error}", file=sys.stderr)
        return ExitCode.OUTPUT_FAILED
    first, last = dataset.datetime.values[0, [0, -1]]
    print(f"wrote {args.out}: {dataset.sizes['lat']}x{dataset.sizes['lon']} grid, "
          f"{dataset.sizes['level']} levels, {args.times} frames "
          f"{np.datetime_as_string(first, 'm')} .. {np.datetime_as_string(last, 'm')}")
    return ExitCode.OK
