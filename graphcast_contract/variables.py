"""The GraphCast variable catalogue: names, kinds, units, plausible ranges, pressure levels.

Names are GraphCast's long ERA5 names. Units are the contract's spellings (`/v1/model`,
`predictions.unit`). The plausible ranges are generous: they catch wrong units, wrong
variables and corrupted data, not weather extremes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SURFACE = "surface"          # single level, one field per time
ATMOSPHERIC = "atmospheric"  # one field per pressure level and time
STATIC = "static"            # time-invariant
FORCING = "forcing"          # computed from the date (and TISR), never sent by the job

PRESSURE_LEVELS_13 = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
PRESSURE_LEVELS_37 = (1, 2, 3, 5, 7, 10, 20, 30, 50, 70, 100, 125, 150, 175, 200, 225, 250,
                      300, 350, 400, 450, 500, 550, 600, 650, 700, 750, 775, 800, 825, 850,
                      875, 900, 925, 950, 975, 1000)
# The normalisation statistics files of the published models (in `stats/`).
STATS_FILES = ("mean_by_level.nc", "stddev_by_level.nc", "diffs_stddev_by_level.nc")
PRECIPITATION_6HR = "total_precipitation_6hr"
STANDARD_GRAVITY = 9.80665  # m s-2 (WMO): geopotential = geopotential height x g


@dataclass(frozen=True)
class Variable:
    """One GraphCast variable; `plausible` is (low, high) in `unit`, None when unchecked.

    `non_negative` marks physical quantities that cannot be below 0 (amounts, humidity):
    the model's raw output can still dip slightly below 0, which the job stores as 0.
    """

    name: str
    kind: str
    unit: str
    plausible: tuple[float, float] | None = None
    non_negative: bool = False


# In the published models' channel order within each kind.
CATALOGUE: tuple[Variable, ...] = (
    Variable("2m_temperature", SURFACE, "K", (170.0, 350.0)),
    Variable("mean_sea_level_pressure", SURFACE, "Pa", (85_000.0, 110_000.0)),
    Variable("10m_v_component_of_wind", SURFACE, "m s-1", (-150.0, 150.0)),
    Variable("10m_u_component_of_wind", SURFACE, "m s-1", (-150.0, 150.0)),
    Variable(PRECIPITATION_6HR, SURFACE, "m", (-1e-3, 0.5), non_negative=True),
    Variable("temperature", ATMOSPHERIC, "K", (150.0, 350.0)),
    # 1000 hPa lies below ground in deep lows, so its geopotential can be negative.
    Variable("geopotential", ATMOSPHERIC, "m2 s-2", (-20_000.0, 600_000.0)),
    Variable("u_component_of_wind", ATMOSPHERIC, "m s-1", (-250.0, 250.0)),
    Variable("v_component_of_wind", ATMOSPHERIC, "m s-1", (-250.0, 250.0)),
    Variable("vertical_velocity", ATMOSPHERIC, "Pa s-1", (-100.0, 100.0)),
    Variable("specific_humidity", ATMOSPHERIC, "kg kg-1", (-1e-3, 0.1), non_negative=True),
    Variable("toa_incident_solar_radiation", FORCING, "J m-2"),
    Variable("year_progress_sin", FORCING, "1"),
    Variable("year_progress_cos", FORCING, "1"),
    Variable("day_progress_sin", FORCING, "1"),
    Variable("day_progress_cos", FORCING, "1"),
    Variable("geopotential_at_surface", STATIC, "m2 s-2", (-5_000.0, 100_000.0)),
    Variable("land_sea_mask", STATIC, "1", (0.0, 1.0)),
)
BY_NAME = {variable.name: variable for variable in CATALOGUE}


def names(kind: str) -> tuple[str, ...]:
    """The catalogue's names of one kind, in channel order."""
    return tuple(v.name for v in CATALOGUE if v.kind == kind)


SURFACE_VARIABLES = names(SURFACE)
ATMOSPHERIC_VARIABLES = names(ATMOSPHERIC)
STATIC_VARIABLES = names(STATIC)
FORCING_VARIABLES = names(FORCING)
UNITS = {v.name: v.unit for v in CATALOGUE}
PLAUSIBLE_RANGES = {v.name: v.plausible for v in CATALOGUE if v.plausible}
NON_NEGATIVE = frozenset(v.name for v in CATALOGUE if v.non_negative)


def plausibility_problem(variable: str, values: np.ndarray) -> str | None:
    """What is wrong with `values` of `variable` (any shape), or None when plausible.

    Variables without a known range are only checked for being finite.
    """
    values = np.asarray(values)
    finite = np.isfinite(values)
    if not np.all(finite):
        return f"{int(values.size - np.count_nonzero(finite))} NaN or infinite values"
    low, high = PLAUSIBLE_RANGES.get(variable, (-np.inf, np.inf))
    v_min, v_max = float(np.min(values)), float(np.max(values))
    if v_min < low or v_max > high:
        return f"values {v_min:g}..{v_max:g} outside the plausible range {low:g}..{high:g}"
    return None
