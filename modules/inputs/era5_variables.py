"""ERA5 variables: GraphCast names, the names ERA5 files use for them, and their units.

The store uses GraphCast's long names. Files from the Copernicus Climate Data Store (CDS)
use short names (`t2m` in NetCDF, `2t` in GRIB, `t`, `z`, ...); GraphCast's example
datasets use the long names themselves. `total_precipitation_6hr` is not an ERA5 product:
the loader stores the hourly `total_precipitation` accumulations and derives the 6-hour
total from them once all six hours are in the store.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from graphcast_contract.sources import InputSource
from graphcast_contract.variables import (
    ATMOSPHERIC,
    ATMOSPHERIC_VARIABLES,
    BY_NAME,
    PRECIPITATION_6HR,
    PRESSURE_LEVELS_13,
    STANDARD_GRAVITY,
    STATIC_VARIABLES,
    SURFACE_VARIABLES,
)

HOURLY_ACCUMULATION = "hourly_accumulation"  # stored hourly, summed into 6-hour totals

PRESSURE_LEVELS = PRESSURE_LEVELS_13  # GraphCast_small's, the ones a default cycle needs
DEFAULT_GRID_STEP = 1.0  # degrees: GraphCast_small's grid
HOURLY_PRECIPITATION = "total_precipitation"  # ERA5's hourly accumulation (m)
ACCUMULATION_PERIOD = timedelta(hours=1)  # of each HOURLY_PRECIPITATION field, ending at its time
PRECIPITATION_HOURS = 6


@dataclass(frozen=True)
class Era5Variable:
    """One variable: its store name, CDS request name, file names and units.

    `units` maps a normalised unit spelling (see `normalise_unit`) to the factor that
    converts values in that unit to the store's unit.
    """

    name: str
    cds_name: str | None
    file_names: tuple[str, ...]
    units: dict[str, float]

    @property
    def kind(self) -> str:
        """The catalogue's kind (surface, atmospheric, static), or hourly accumulation."""
        if self.name == HOURLY_PRECIPITATION:
            return HOURLY_ACCUMULATION
        return BY_NAME[self.name].kind


def _units(*spellings: str, **scaled: float) -> dict[str, float]:
    table = {normalise_unit(s): 1.0 for s in spellings}
    table.update({normalise_unit(k): v for k, v in scaled.items()})
    return table


def normalise_unit(unit: str) -> str:
    """A unit string without spaces, `**` or `^`, lower-case: 'm s**-1' -> 'ms-1'."""
    return unit.replace("**", "").replace("^", "").replace(" ", "").lower()


_K = _units("K", "kelvin")
_PA = _units("Pa", hPa=100.0)
_WIND = _units("m s**-1", "m/s", "m s-1")
_GEOPOTENTIAL = _units("m**2 s**-2", "m2 s-2", "m^2/s^2")
# The IFS open data publish geopotential height (`gh`, geopotential metres) instead.
GEOPOTENTIAL_METRES = "gpm"
_GEOPOTENTIAL_OR_HEIGHT = {**_GEOPOTENTIAL, **_units(**{GEOPOTENTIAL_METRES: STANDARD_GRAVITY})}
# The unit a file name is in by definition, for a field that states none; other names are
# taken to be in their store variable's unit.
NAME_UNITS = {"gh": GEOPOTENTIAL_METRES}
_FRACTION = _units("(0 - 1)", "1", "~", "dimensionless", "0-1")

VARIABLES: tuple[Era5Variable, ...] = (
    Era5Variable("2m_temperature", "2m_temperature", ("t2m", "2t"), _K),
    Era5Variable("mean_sea_level_pressure", "mean_sea_level_pressure",
                 ("msl",), _PA),
    Era5Variable("10m_u_component_of_wind", "10m_u_component_of_wind",
                 ("u10", "10u"), _WIND),
    Era5Variable("10m_v_component_of_wind", "10m_v_component_of_wind",
                 ("v10", "10v"), _WIND),
    Era5Variable(PRECIPITATION_6HR, None, (), _units("m", mm=0.001)),
    Era5Variable(HOURLY_PRECIPITATION, "total_precipitation",
                 ("tp",), _units("m", mm=0.001)),
    Era5Variable("toa_incident_solar_radiation", "toa_incident_solar_radiation",
                 ("tisr",), _units("J m**-2", "J m-2", "J/m^2")),
    Era5Variable("temperature", "temperature", ("t",), _K),
    Era5Variable("geopotential", "geopotential", ("z", "gh"), _GEOPOTENTIAL_OR_HEIGHT),
    Era5Variable("u_component_of_wind", "u_component_of_wind", ("u",), _WIND),
    Era5Variable("v_component_of_wind", "v_component_of_wind", ("v",), _WIND),
    Era5Variable("vertical_velocity", "vertical_velocity", ("w",),
                 _units("Pa s**-1", "Pa s-1", "Pa/s")),
    Era5Variable("specific_humidity", "specific_humidity", ("q",),
                 _units("kg kg**-1", "kg kg-1", "kg/kg", "1")),
    Era5Variable("geopotential_at_surface", "geopotential", ("z", "geopotential"),
                 _GEOPOTENTIAL),
    Era5Variable("land_sea_mask", "land_sea_mask", ("lsm",), _FRACTION),
)

# What one forecast cycle of GraphCast_small needs at each of its two input times.
CYCLE_SURFACE = SURFACE_VARIABLES
CYCLE_ATMOSPHERIC = ATMOSPHERIC_VARIABLES
CYCLE_STATIC = STATIC_VARIABLES


def cycle_fields(source: str = InputSource.ERA5) -> list[tuple[str, int]]:
    """The (variable, level) pairs a cycle of `source` needs at each input time: 83 from
    ERA5 for GraphCast_small; 82 from the IFS open data for GraphCast_operational, which
    takes no precipitation input."""
    surface = [v for v in CYCLE_SURFACE if source == InputSource.ERA5 or v != PRECIPITATION_6HR]
    return [(v, 0) for v in surface] + [
        (v, level) for v in CYCLE_ATMOSPHERIC for level in PRESSURE_LEVELS
    ]


def by_name(name: str) -> Era5Variable:
    """The variable with store name `name` (KeyError if unknown)."""
    for variable in VARIABLES:
        if variable.name == name:
            return variable
    raise KeyError(name)


def resolve(file_name: str, on_pressure_level: bool) -> Era5Variable | None:
    """The variable a file calls `file_name` (a store or short name), or None if unknown.

    `z` and `geopotential` mean the atmospheric geopotential on pressure levels and the
    surface geopotential (a static field) on single-level files.
    """
    candidates = [v for v in VARIABLES if file_name == v.name or file_name in v.file_names]
    if len(candidates) > 1:
        candidates = [v for v in candidates if (v.kind == ATMOSPHERIC) == on_pressure_level]
    return candidates[0] if candidates else None
