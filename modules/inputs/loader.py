"""Load one analysis file (ERA5; or an IFS open-data GRIB field) into the store: map its
fields, check, convert units, regrid, write.

Each file is loaded in one transaction: all of its fields or none. Re-loading replaces
fields (no duplicates). Fields are read, checked, regridded and written one at a time.
The command line is `modules.inputs.cli`.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from graphcast_contract.model_spec import Grid, global_grid
from graphcast_contract.sources import InputSource
from graphcast_contract.variables import ATMOSPHERIC, PRECIPITATION_6HR, STATIC
from modules.inputs import store
from modules.inputs.era5_variables import (
    ACCUMULATION_PERIOD,
    DEFAULT_GRID_STEP,
    HOURLY_ACCUMULATION,
    HOURLY_PRECIPITATION,
    NAME_UNITS,
    PRECIPITATION_HOURS,
    VARIABLES,
    Era5Variable,
    normalise_unit,
    resolve,
)
from modules.inputs.regrid import Regridder
from modules.inputs.sources import (
    DEFAULT_MIN_GRID_STEP,
    GRAPHCAST_LAYOUT,
    FieldRef,
    InvalidDataError,
    Source,
    open_source,
)

log = logging.getLogger("era5_loader")


@dataclass(frozen=True)
class PlannedField:
    """A field of the file and where it goes in the store. `valid_time` is None for static
    fields; `factor` converts the file's unit to the store's."""

    variable: str
    level: int
    valid_time: datetime | None
    ref: FieldRef
    factor: float


@dataclass(frozen=True)
class LoadResult:
    """What one file put in the store (`fields` counts the file's own time-dependent
    fields, hourly precipitation included)."""

    path: Path
    grid: Grid
    fields: int
    static_fields: int
    valid_times: tuple[datetime, ...]
    precipitation_6hr: tuple[datetime, ...] = ()  # times of total_precipitation_6hr derived


@dataclass(frozen=True)
class Orientation:
    """How to turn a file's (lat, lon) arrays into the store's: latitudes ascending,
    longitudes in [0, 360) ascending."""

    grid: Grid
    lat_order: np.ndarray
    lon_order: np.ndarray

    @classmethod
    def of(cls, source: Source) -> "Orientation":
        lat = np.asarray(source.latitudes, dtype=np.float64)
        lon = np.asarray(source.longitudes, dtype=np.float64) % 360.0
        lat_order = np.argsort(lat, kind="stable")
        lon_order = np.argsort(lon, kind="stable")
        try:
            grid = Grid.from_coordinates(lat[lat_order], lon[lon_order])
        except ValueError as exc:
            raise InvalidDataError(f"{source.path}: the grid cannot be loaded: {exc}") from exc
        return cls(grid, lat_order, lon_order)

    def apply(self, field: np.ndarray) -> np.ndarray:
        return field[np.ix_(self.lat_order, self.lon_order)]


def _unit_factor(path: Path, variable: Era5Variable, ref: FieldRef) -> float:
    """A field without units is in the unit its name means (NAME_UNITS: `gh`, geopotential
    height, is in geopotential metres), else in the store's."""
    units = ref.units if ref.units is not None else NAME_UNITS.get(ref.name)
    if units is None:
        return 1.0
    factor = variable.units.get(normalise_unit(units))
    if factor is None:
        raise InvalidDataError(f"{path}: field {ref.name!r} has units {ref.units!r}, which "
                               f"cannot be converted to those of {variable.name}")
    return factor


def plan_fields(source: Source) -> list[PlannedField]:
    """Map every field of `source` to what the store gets; InvalidDataError on anything
    that cannot be loaded (unknown name or unit, wrong level type, duplicates, hours)."""
    path = source.path
    planned: list[PlannedField] = []
    statics: dict[str, PlannedField] = {}
    seen: set[tuple[str, int, datetime]] = set()
    for ref in source.fields():
        variable = resolve(ref.name, ref.level > 0)
        if variable is None:
            known = sorted({n for v in VARIABLES for n in (v.name, *v.file_names)})
            raise InvalidDataError(f"{path}: unknown variable {ref.name!r} (known: "
                                   f"{', '.join(known)})")
        factor = _unit_factor(path, variable, ref)
        if variable.kind == STATIC:
            statics.setdefault(variable.name, PlannedField(variable.name, 0, None, ref, factor))
            continue
        if ref.valid_time is None:
            raise InvalidDataError(f"{path}: {ref.describe()} has no valid time coordinate")
        if variable.kind == HOURLY_ACCUMULATION:
            check_accumulation(path, ref)
        if (variable.kind == ATMOSPHERIC) != (ref.level > 0):
            raise InvalidDataError(f"{path}: {ref.describe()}: {variable.name} needs "
                                   f"{'a pressure level' if ref.level == 0 else 'a single level'}")
        key = (variable.name, ref.level, ref.valid_time)
        if key in seen:
            raise InvalidDataError(f"{path}: {ref.describe()} appears twice")
        seen.add(key)
        planned.append(PlannedField(variable.name, ref.level, ref.valid_time, ref, factor))
    check_hourly_sequence(path, hourly_times(planned))
    return planned + list(statics.values())


def check_accumulation(path: Path, ref: FieldRef) -> None:
    """A GRIB `tp` message may accumulate over any period (0-6 h in a forecast); only
    ERA5's hourly accumulations can be summed into 6-hour totals."""
    hour = timedelta(hours=1)
    if ref.accumulation is not None and ref.accumulation != ACCUMULATION_PERIOD:
        raise InvalidDataError(f"{path}: {ref.describe()} is accumulated over "
                               f"{ref.accumulation / hour:g} h; {HOURLY_PRECIPITATION} must be "
                               f"accumulated over {ACCUMULATION_PERIOD / hour:g} h")


def hourly_times(plan: Sequence[PlannedField]) -> list[datetime]:
    """The valid times of the hourly precipitation accumulations in `plan`, sorted."""
    return sorted(p.valid_time for p in plan if p.variable == HOURLY_PRECIPITATION)


def check_hourly_sequence(path: Path, hours: Sequence[datetime]) -> None:
    """Hourly accumulations must come without gaps: a missing hour is never filled in."""
    if not hours:
        return
    expected = int((hours[-1] - hours[0]) / timedelta(hours=1)) + 1
    present = set(hours)
    missing = [hours[0] + timedelta(hours=k) for k in range(expected)
               if hours[0] + timedelta(hours=k) not in present]
    if missing or any(h.minute or h.second for h in hours):
        listed = ", ".join(f"{m:%Y-%m-%dT%H:%M}Z" for m in missing[:12])
        raise InvalidDataError(
            f"{path}: field 'total_precipitation': hourly accumulations missing for {listed}"
            f"{' ...' if len(missing) > 12 else ''}; {PRECIPITATION_6HR} is never derived "
            "from incomplete hours")


def derive_precipitation_6hr(cur: Cursor, grid: Grid, hours: Sequence[datetime], path: Path
                             ) -> list[datetime]:
    """Store `total_precipitation_6hr` at each 6-hourly time T whose window touches `hours`
    (loaded from `path`) and whose six hourly accumulations (valid T-5h ... T) are all in the
    store now, as their sum. Returns the times derived; a window with hours still absent is
    left alone. InvalidDataError if a sum overflows float32 (hourly values near its limit)."""
    ends = sorted({h + timedelta(hours=-h.hour % PRECIPITATION_HOURS) for h in hours})
    derived = []
    for end in ends:
        window = [end - timedelta(hours=k) for k in range(PRECIPITATION_HOURS)]
        parts = [store.read_fields(cur, grid, w, [(HOURLY_PRECIPITATION, 0)]) for w in window]
        absent = [w for w, part in zip(window, parts, strict=True) if not part]
        if absent:
            log.info("%s at %s not derived yet: hourly accumulations absent for %s",
                     PRECIPITATION_6HR, f"{end:%Y-%m-%dT%H:%M}Z",
                     ", ".join(f"{a:%Y-%m-%dT%H:%M}Z" for a in sorted(absent)))
            continue
        total = sum(part[(HOURLY_PRECIPITATION, 0)].astype(np.float64) for part in parts)
        with np.errstate(over="ignore"):
            total = total.astype(np.float32)
        if not np.all(np.isfinite(total)):
            raise InvalidDataError(f"{path}: {PRECIPITATION_6HR} at {end:%Y-%m-%dT%H:%M}Z: the "
                                   "sum of the hourly accumulations is beyond float32's range")
        store.write_fields(cur, grid, end, {(PRECIPITATION_6HR, 0): total})
        derived.append(end)
    return derived


def build_field(source: Source, orientation: Orientation, regridder: Regridder | None,
                item: PlannedField) -> np.ndarray:
    """The stored (lat, lon) float32 array of `item`: read, converted, regridded, checked.

    InvalidDataError naming the field if the result holds NaN or infinite values: checked
    once, on what is stored, so a value that only overflows in the unit factor or the
    float32 cast (a float64 1e300) is caught too, and a NaN in the file reaches the result."""
    field = orientation.apply(source.read(item.ref))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf is reported below
        if item.factor != 1.0:
            field = field * item.factor
        if regridder is not None:
            field = regridder(field)
        field = field.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(field)))
    if bad:
        raise InvalidDataError(f"{source.path}: {item.ref.describe()} has {bad} NaN or "
                               f"infinite values out of {field.size} (as stored: float32, "
                               "in the store's units and grid)")
    return field


def target_grid(source: Source, native: Grid, grid_step: float | None) -> Grid:
    """The grid to store on: `grid_step` if given; otherwise the file's own grid for
    GraphCast-layout files and DEFAULT_GRID_STEP for CDS files."""
    if grid_step is None:
        if source.layout == GRAPHCAST_LAYOUT:
            return native
        grid_step = DEFAULT_GRID_STEP
    return global_grid(grid_step)


def load_file(conn: Connection, path: Path | str, grid_step: float | None = None,
              min_grid_step: float = DEFAULT_MIN_GRID_STEP) -> LoadResult:
    """Load every field of one ERA5 file in one transaction; see `load_into`."""
    with conn, conn.cursor() as cur:
        return load_into(cur, path, grid_step, min_grid_step)


def load_into(cur: Cursor, path: Path | str, grid_step: float | None = None,
              min_grid_step: float = DEFAULT_MIN_GRID_STEP,
              data_source: str = InputSource.ERA5) -> LoadResult:
    """Write every field of one file through `cur` (the caller owns the transaction),
    tagged `data_source`; see `target_grid` for `grid_step`. Files on grids finer than
    `min_grid_step` degrees are refused unread.

    Raises UnreadableFileError, InvalidDataError or psycopg2.Error.
    """
    path = Path(path)
    source = open_source(path, min_grid_step)
    try:
        plan = plan_fields(source)
        orientation = Orientation.of(source)
        target = target_grid(source, orientation.grid, grid_step)
        regridder = None
        if target != orientation.grid:
            try:
                regridder = Regridder(orientation.grid, target)
            except ValueError as exc:
                raise InvalidDataError(f"{path}: {exc}") from exc
        for item in plan:
            field = build_field(source, orientation, regridder, item)
            if item.valid_time is None:
                store.write_static(cur, target, {item.variable: field}, data_source)
            else:
                store.write_fields(cur, target, item.valid_time,
                                   {(item.variable, item.level): field}, data_source)
        derived = derive_precipitation_6hr(cur, target, hourly_times(plan), path)
    finally:
        source.close()
    times = sorted({p.valid_time for p in plan if p.valid_time is not None})
    statics = sum(p.valid_time is None for p in plan)
    return LoadResult(path, target, len(plan) - statics, statics, tuple(times), tuple(derived))
