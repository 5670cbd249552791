"""Load ERA5 files into the PostgreSQL ERA5 store; download them from the CDS; report status.

    python -m modules.era5_loader FILE [FILE ...] [--grid-step DEG]
    python -m modules.era5_loader download --date YYYY-MM-DD [--date ...] [--dir DIR]
    python -m modules.era5_loader status [--days N] [--until YYYY-MM-DD]

Each file is loaded in one transaction: all of its fields or none. Re-loading replaces
fields (no duplicates). Fields are read, checked, regridded and written one at a time.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from modules import db, era5_store
from modules.era5_download import FORMATS, download_day
from modules.era5_sources import (GRAPHCAST_LAYOUT, FieldRef, InvalidDataError, Source,
                                  UnreadableFileError, open_source, sniff_format)
from modules.era5_status import cycle_status, cycles_of_days
from modules.era5_store import Grid
from modules.era5_variables import (ATMOSPHERIC_KIND, DEFAULT_GRID_STEP,
                                    HOURLY_PRECIPITATION, PRECIPITATION_6HR,
                                    PRECIPITATION_HOURS, STATIC_KIND, VARIABLES, Era5Variable,
                                    normalise_unit, resolve)
from modules.regrid import Regridder, global_grid

log = logging.getLogger("era5_loader")

EXIT_OK = 0
EXIT_USAGE = 2          # bad command line (argparse)
EXIT_UNREADABLE = 3     # file missing, unreadable, or not NetCDF/GRIB
EXIT_INVALID_DATA = 4   # unknown variable, units, coordinates, grid, NaN/inf, missing hours
EXIT_DATABASE = 5       # database unreachable or failing
EXIT_DOWNLOAD = 6       # CDS request or download failed (download command)

DEFAULT_DOWNLOAD_DIR = Path(__file__).resolve().parent.parent / "data" / "era5"


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
    if ref.units is None:
        return 1.0
    factor = variable.units.get(normalise_unit(ref.units))
    if factor is None:
        raise InvalidDataError(f"{path}: field {ref.name!r} has units {ref.units!r}, which "
                               f"cannot be converted to those of {variable.name}")
    return factor


def _describe(ref: FieldRef) -> str:
    level = f" at {ref.level} hPa" if ref.level else ""
    when = f" valid {ref.valid_time:%Y-%m-%dT%H:%M}Z" if ref.valid_time else ""
    return f"field {ref.name!r}{level}{when}"


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
        if variable.kind == STATIC_KIND:
            statics.setdefault(variable.name, PlannedField(variable.name, 0, None, ref, factor))
            continue
        if ref.valid_time is None:
            raise InvalidDataError(f"{path}: {_describe(ref)} has no valid time coordinate")
        if (variable.kind == ATMOSPHERIC_KIND) != (ref.level > 0):
            raise InvalidDataError(f"{path}: {_describe(ref)}: {variable.name} needs "
                                   f"{'a pressure level' if ref.level == 0 else 'a single level'}")
        key = (variable.name, ref.level, ref.valid_time)
        if key in seen:
            raise InvalidDataError(f"{path}: {_describe(ref)} appears twice")
        seen.add(key)
        planned.append(PlannedField(variable.name, ref.level, ref.valid_time, ref, factor))
    check_hourly_sequence(path, hourly_times(planned))
    return planned + list(statics.values())


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


def derive_precipitation_6hr(cur: Cursor, grid: Grid, hours: Sequence[datetime]
                             ) -> list[datetime]:
    """Store `total_precipitation_6hr` at each 6-hourly time T whose window touches `hours`
    and whose six hourly accumulations (valid T-5h ... T) are all in the store now, as their
    sum. Returns the times derived; a window with hours still absent is left alone."""
    ends = sorted({h + timedelta(hours=-h.hour % PRECIPITATION_HOURS) for h in hours})
    derived = []
    for end in ends:
        window = [end - timedelta(hours=k) for k in range(PRECIPITATION_HOURS)]
        parts = [era5_store.read_fields(cur, grid, w, [(HOURLY_PRECIPITATION, 0)]) for w in window]
        absent = [w for w, part in zip(window, parts) if not part]
        if absent:
            log.info("%s at %s not derived yet: hourly accumulations absent for %s",
                     PRECIPITATION_6HR, f"{end:%Y-%m-%dT%H:%M}Z",
                     ", ".join(f"{a:%Y-%m-%dT%H:%M}Z" for a in sorted(absent)))
            continue
        total = sum(part[(HOURLY_PRECIPITATION, 0)].astype(np.float64) for part in parts)
        era5_store.write_fields(cur, grid, end, {(PRECIPITATION_6HR, 0): total.astype(np.float32)})
        derived.append(end)
    return derived


def build_field(source: Source, orientation: Orientation, regridder: Regridder | None,
                item: PlannedField) -> np.ndarray:
    """The stored (lat, lon) float32 array of `item`: read, checked, converted, regridded.
    InvalidDataError naming the field if it holds NaN or infinite values."""
    raw = source.read(item.ref)
    bad = int(np.count_nonzero(~np.isfinite(raw)))
    if bad:
        raise InvalidDataError(f"{source.path}: {_describe(item.ref)} has {bad} NaN or "
                               f"infinite values out of {raw.size}")
    field = orientation.apply(raw)
    if item.factor != 1.0:
        field = field * item.factor
    if regridder is not None:
        field = regridder(field)
    return field.astype(np.float32, copy=False)


def target_grid(source: Source, native: Grid, grid_step: float | None) -> Grid:
    """The grid to store on: `grid_step` if given; otherwise the file's own grid for
    GraphCast-layout files and DEFAULT_GRID_STEP for CDS files."""
    if grid_step is None:
        if source.layout == GRAPHCAST_LAYOUT:
            return native
        grid_step = DEFAULT_GRID_STEP
    return global_grid(grid_step)


def load_file(conn: Connection, path: Path | str, grid_step: float | None = None) -> LoadResult:
    """Load every field of one file in one transaction; see `target_grid` for `grid_step`.

    Raises UnreadableFileError, InvalidDataError (nothing written) or psycopg2.Error.
    """
    path = Path(path)
    source = open_source(path)
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
        with conn, conn.cursor() as cur:
            for item in plan:
                field = build_field(source, orientation, regridder, item)
                if item.valid_time is None:
                    era5_store.write_static(cur, target, {item.variable: field})
                else:
                    era5_store.write_fields(cur, target, item.valid_time,
                                            {(item.variable, item.level): field})
            derived = derive_precipitation_6hr(cur, target, hourly_times(plan))
    finally:
        source.close()
    times = sorted({p.valid_time for p in plan if p.valid_time is not None})
    statics = sum(p.valid_time is None for p in plan)
    return LoadResult(path, target, len(plan) - statics, statics, tuple(times), tuple(derived))


def open_database() -> Connection:
    """Connect to the configured database (DATABASE_URL or the embedded server), migrated."""
    from config.settings import load_settings

    settings = load_settings()
    conn = db.connect(db.resolve_url(settings.database_url, settings.embedded_pg_dir))
    db.apply_migrations(conn)
    return conn


def load_files(paths: Sequence[Path], grid_step: float | None) -> int:
    """Load `paths` in order, one transaction each; the exit code of the first failure."""
    try:
        for path in paths:
            sniff_format(path)
    except UnreadableFileError as exc:
        log.error("%s", exc)
        return EXIT_UNREADABLE
    try:
        conn = open_database()
    except (psycopg2.Error, OSError, RuntimeError) as exc:
        log.error("database unavailable: %s", exc)
        return EXIT_DATABASE
    try:
        for path in paths:
            result = load_file(conn, path, grid_step)
            log.info("%s: loaded %d fields at %d valid times and %d static fields on the "
                     "%d x %d grid%s", path, result.fields, len(result.valid_times),
                     result.static_fields, *result.grid.shape,
                     f"; {PRECIPITATION_6HR} derived at {len(result.precipitation_6hr)} times"
                     if result.precipitation_6hr else "")
    except UnreadableFileError as exc:
        log.error("%s (nothing loaded from this file)", exc)
        return EXIT_UNREADABLE
    except InvalidDataError as exc:
        log.error("%s (nothing loaded from this file)", exc)
        return EXIT_INVALID_DATA
    except psycopg2.Error as exc:
        log.error("database error: %s", str(exc).strip())
        return EXIT_DATABASE
    finally:
        conn.close()
    return EXIT_OK


EXIT_CODES_HELP = (
    "exit codes: 0 ok, 2 bad command line, 3 file missing/unreadable/not NetCDF or GRIB, "
    "4 invalid data (unknown variable or units, coordinates, grid, NaN/inf, missing hours), "
    "5 database error, 6 CDS download failed"
)


def _grid_step(text: str) -> float:
    try:
        step = float(text)
        global_grid(step)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return step


def load_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modules.era5_loader",
        description="Load ERA5 NetCDF/GRIB files into the ERA5 store. Other commands: "
                    "'download' (from the CDS, then load) and 'status' (which cycles are "
                    "complete); see 'python -m modules.era5_loader download --help'.",
        epilog=EXIT_CODES_HELP)
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE",
                        help="GraphCast example-layout NetCDF, or CDS ERA5 NetCDF/GRIB")
    parser.add_argument("--grid-step", type=_grid_step, default=None, metavar="DEG",
                        help="regrid (conservatively) to this global grid step; default: the "
                             f"file's own grid for GraphCast-layout files, {DEFAULT_GRID_STEP} "
                             "for CDS files")
    return parser


def download_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modules.era5_loader download",
        description="Download from the Copernicus Climate Data Store the ERA5 that the four "
                    "cycles of each date need (cdsapi; key in ~/.cdsapirc or CDSAPI_URL and "
                    "CDSAPI_KEY), then load it.", epilog=EXIT_CODES_HELP)
    parser.add_argument("--date", dest="dates", action="append", required=True,
                        type=date.fromisoformat, metavar="YYYY-MM-DD", help="repeatable")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DOWNLOAD_DIR,
                        help=f"where the files go (default: {DEFAULT_DOWNLOAD_DIR})")
    parser.add_argument("--format", choices=sorted(FORMATS), default="netcdf")
    parser.add_argument("--grid-step", type=_grid_step, default=DEFAULT_GRID_STEP, metavar="DEG",
                        help=f"grid to store on (default {DEFAULT_GRID_STEP})")
    return parser


def download_and_load(dates: Sequence[date], directory: Path, data_format: str,
                      grid_step: float) -> int:
    """Download and load each date in turn; the exit code of the first failure."""
    try:
        import cdsapi

        client = cdsapi.Client(quiet=True, progress=False)
    except Exception as exc:  # cdsapi raises a bare Exception for missing configuration
        log.error("cannot set up the CDS client: %s (put your key in ~/.cdsapirc or set "
                  "CDSAPI_URL and CDSAPI_KEY)", exc)
        return EXIT_DOWNLOAD
    for day in sorted(set(dates)):
        try:
            paths = download_day(client, day, directory, data_format)
        except Exception as exc:  # requests, cdsapi and ecmwf-datastores errors alike
            log.error("CDS download for %s failed: %s", day, exc)
            return EXIT_DOWNLOAD
        code = load_files(paths, grid_step)
        if code != EXIT_OK:
            return code
    return EXIT_OK


def status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m modules.era5_loader status",
        description="List the 6-hourly cycles of the last N days as complete, incomplete "
                    "(with the missing fields) or absent in the ERA5 store.",
        epilog=EXIT_CODES_HELP)
    parser.add_argument("--days", type=int, default=10, help="how many days (default 10)")
    parser.add_argument("--until", type=date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                        help="last day (default: today, UTC)")
    parser.add_argument("--grid-step", type=_grid_step, default=DEFAULT_GRID_STEP, metavar="DEG",
                        help=f"the model grid (default {DEFAULT_GRID_STEP})")
    return parser


def print_status(days: int, until: date | None, grid_step: float) -> int:
    until = until or datetime.now(timezone.utc).date()
    try:
        conn = open_database()
        with conn, conn.cursor() as cur:
            statuses = cycle_status(cur, global_grid(grid_step), cycles_of_days(until, days))
        conn.close()
    except (psycopg2.Error, OSError, RuntimeError) as exc:
        log.error("database error: %s", str(exc).strip())
        return EXIT_DATABASE
    for item in statuses:
        line = f"{item.init_time:%Y-%m-%dT%H:%M}Z  {item.state}"
        if item.missing:
            line += "  missing: " + "; ".join(item.missing)
        print(line)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if argv[:1] == ["download"]:
        args = download_parser().parse_args(argv[1:])
        return download_and_load(args.dates, args.dir, args.format, args.grid_step)
    if argv[:1] == ["status"]:
        args = status_parser().parse_args(argv[1:])
        return print_status(args.days, args.until, args.grid_step)
    args = load_parser().parse_args(argv)
    return load_files(args.files, args.grid_step)


if __name__ == "__main__":
    sys.exit(main())
