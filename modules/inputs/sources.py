"""Readers for ERA5 files: an inventory of 2-D fields, and each field read on demand.

Three layouts are understood:
- GraphCast's example datasets (NetCDF, dims `batch, time, level, lat, lon`, a `datetime`
  coordinate, long variable names);
- CDS ERA5 NetCDF (dims `valid_time` or `time`, `pressure_level` or `level`, `latitude`,
  `longitude`; short names);
- CDS ERA5 GRIB (one message per field, read with eccodes).

A source only reports what the file holds, in the file's own orientation and names; the
loader maps names, checks values and regrids. Fields are read one at a time, so memory
stays bounded by one field whatever the file's size.

Sizes a file declares are checked before anything is read, since a read allocates what the
header says: grids finer than `min_grid_step` (ERA5_MIN_GRID_STEP, 0.1 deg by default) are
refused, a GRIB message's point count must match its grid, a NetCDF file must be large
enough to hold the data its variables declare, and no NetCDF chunk (what the library reads
and decompresses whole to read any part of it) may exceed MAX_CHUNK_BYTES. A read that the
file's damage makes fail (a corrupt compressed chunk, a GRIB message that no longer decodes)
is an UnreadableFileError naming the file and the field.
"""
from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np

from config.settings import Settings
from graphcast_contract.files import NETCDF_SIGNATURES

if TYPE_CHECKING:
    import xarray as xr

GRIB_MAGIC = b"GRIB"
GRAPHCAST_LAYOUT = "graphcast"
CDS_LAYOUT = "cds"

_LAT_NAMES = ("lat", "latitude")
_LON_NAMES = ("lon", "longitude")
_LEVEL_DIMS = ("level", "pressure_level", "isobaricInhPa")
_TIME_NAMES = ("valid_time", "time")
# netCDF-C gives each variable a 64 MiB chunk cache by default, which fills up as a large
# file is read field by field; 8 MiB holds one 0.25 deg field (4 MiB as float32).
NETCDF_CHUNK_CACHE_BYTES = 8 * 2**20
# ERA5_MIN_GRID_STEP's default: 0.1 deg is 1801 x 3600 points, 26 MB a float32 field
DEFAULT_MIN_GRID_STEP = Settings.era5_min_grid_step
# deflate cannot shrink data more than about 1032:1, so a compressed variable stored in
# fewer bytes than 1/1100 of its declared size is damaged or crafted
MAX_COMPRESSION_RATIO = 1100
# Reading any value of a chunked NetCDF variable reads (and decompresses) its whole chunk, so
# a crafted file whose one chunk spans every time step (t2m 40 x 721 x 1440 in one zlib
# chunk: under 1 MB on disk, 166 MB decompressed per field read) costs that much per field.
# 64 MiB holds a 0.1 deg field (26 MB as float32) with room; netCDF-C's default chunks are
# a few MiB (1 x 721 x 1440 floats: 4 MiB).
MAX_CHUNK_BYTES = 64 * 2**20
_COMPRESSION_FILTERS = ("zlib", "szip", "zstd", "bzip2", "blosc")


class UnreadableFileError(Exception):
    """The file is missing, unreadable, or neither NetCDF nor GRIB."""


class InvalidDataError(Exception):
    """The file's content cannot be loaded (names, coordinates, grid, values, hours)."""


@dataclass(frozen=True)
class FieldRef:
    """One 2-D field of a file: its name there, its level (hPa; 0 for single-level fields),
    its valid time (None when the file gives it none) and where the reader finds it.
    `accumulation` is the period a GRIB message's value covers (endStep - startStep; zero
    for instantaneous values); None where the file does not say (NetCDF)."""

    name: str
    level: int
    valid_time: datetime | None
    locator: Hashable
    units: str | None
    accumulation: timedelta | None = None

    def describe(self) -> str:
        """`field 'name' at L hPa valid T`, for messages."""
        level = f" at {self.level} hPa" if self.level else ""
        when = f" valid {self.valid_time:%Y-%m-%dT%H:%M}Z" if self.valid_time else ""
        return f"field {self.name!r}{level}{when}"


class Source(Protocol):
    """An open ERA5 file."""

    path: Path
    layout: str
    latitudes: np.ndarray   # degrees, in the file's order
    longitudes: np.ndarray  # degrees, in the file's order

    def fields(self) -> list[FieldRef]: ...
    def read(self, ref: FieldRef) -> np.ndarray: ...  # (lat, lon) in the file's order
    def close(self) -> None: ...


def sniff_format(path: Path) -> str:
    """'netcdf' or 'grib' from the file's first bytes; UnreadableFileError otherwise."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read the file ({exc.strerror})") from exc
    if head.startswith(GRIB_MAGIC):
        return "grib"
    if any(head.startswith(magic) for magic in NETCDF_SIGNATURES):
        return "netcdf"
    raise UnreadableFileError(f"{path}: not a NetCDF or GRIB file")


def open_source(path: Path, min_grid_step: float = DEFAULT_MIN_GRID_STEP) -> Source:
    """Open `path` with the reader its format needs; grids finer than `min_grid_step`
    degrees are refused before any field is read."""
    kind = sniff_format(path)
    if kind == "grib":
        return GribSource(path, min_grid_step)
    return NetcdfSource(path, min_grid_step)


@contextmanager
def reading(path: Path, what: str, *errors: type[Exception]) -> Iterator[None]:
    """Turn what a damaged file makes a read raise (netCDF4/HDF5: RuntimeError such as
    "NetCDF: HDF error", OSError; ecCodes: the `errors` given) into UnreadableFileError
    naming the file and `what` is read."""
    try:
        yield
    except (RuntimeError, OSError, *errors) as exc:
        raise UnreadableFileError(f"{path}: cannot read {what}, the file is damaged or "
                                  f"unreadable ({type(exc).__name__}: {exc})") from exc


def check_grid_size(path: Path, n_lat: int, n_lon: int, min_grid_step: float) -> None:
    """InvalidDataError unless a global grid of n_lat x n_lon points is at least 2 x 2 and
    no finer than `min_grid_step` degrees (a read allocates the declared size)."""
    max_lat, max_lon = round(180 / min_grid_step) + 1, round(360 / min_grid_step)
    if n_lat < 2 or n_lon < 2:
        raise InvalidDataError(f"{path}: the grid declares {n_lat} x {n_lon} points; a global "
                               "grid needs at least 2 in each direction")
    if n_lat > max_lat or n_lon > max_lon:
        raise InvalidDataError(f"{path}: the grid declares {n_lat} x {n_lon} points, finer "
                               f"than {min_grid_step:g} deg (at most {max_lat} x {max_lon}; "
                               "see ERA5_MIN_GRID_STEP)")


def to_utc(value: np.datetime64, path: Path, what: str) -> datetime:
    """A numpy datetime64 as a timezone-aware UTC datetime."""
    if np.isnat(value):
        raise InvalidDataError(f"{path}: {what} has a missing (NaT) time")
    seconds = int(value.astype("datetime64[s]").astype(np.int64))
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class NetcdfSource:
    """A NetCDF file in the GraphCast example layout or the CDS layout, opened lazily."""

    def __init__(self, path: Path, min_grid_step: float = DEFAULT_MIN_GRID_STEP) -> None:
        import netCDF4
        import xarray as xr

        self.path = path
        netCDF4.set_chunk_cache(NETCDF_CHUNK_CACHE_BYTES)  # for files opened from now on
        check_stored_size(path)
        try:
            self._ds = xr.open_dataset(path, decode_timedelta=True, cache=False)
        except Exception as exc:  # netCDF4/HDF5 raise many types for damaged files
            raise UnreadableFileError(f"{path}: cannot open as NetCDF ({exc})") from exc
        try:
            with reading(path, "its coordinates"):
                self._open(min_grid_step)
        except BaseException:
            self._ds.close()
            raise

    def _open(self, min_grid_step: float) -> None:
        self._lat = self._coordinate(_LAT_NAMES, "latitude")
        self._lon = self._coordinate(_LON_NAMES, "longitude")
        check_grid_size(self.path, self._ds[self._lat].size, self._ds[self._lon].size,
                        min_grid_step)
        self.latitudes = np.asarray(self._ds[self._lat].values, dtype=np.float64)
        self.longitudes = np.asarray(self._ds[self._lon].values, dtype=np.float64)
        self._times = self._time_coordinate()
        self._time_values = self._times.values if self._times is not None else None
        self.layout = GRAPHCAST_LAYOUT if "datetime" in self._ds.variables else CDS_LAYOUT

    def _coordinate(self, names: tuple[str, ...], what: str) -> str:
        for name in names:
            if name in self._ds.variables:
                return name
        raise InvalidDataError(f"{self.path}: no {what} coordinate ({' or '.join(names)})")

    def _time_coordinate(self) -> xr.DataArray | None:
        """The coordinate holding valid times (datetime64), or None if the file has none."""
        for name in ("datetime",) + _TIME_NAMES:
            if name in self._ds.variables and np.issubdtype(self._ds[name].dtype, np.datetime64):
                return self._ds[name]
        return None

    def fields(self) -> list[FieldRef]:
        refs = []
        for name, var in self._ds.data_vars.items():
            if self._lat in var.dims and self._lon in var.dims:
                with reading(self.path, f"the coordinates of {name!r}"):
                    refs.extend(self._var_fields(str(name), var))
        return refs

    def _var_fields(self, name: str, var: xr.DataArray) -> Iterator[FieldRef]:
        dims = [d for d in var.dims if d not in (self._lat, self._lon)]
        time_dims = list(self._times.dims) if self._times is not None else []
        level_dim = next((d for d in dims if d in _LEVEL_DIMS), None)
        has_time = bool(time_dims) and all(d in dims for d in time_dims)
        if not has_time and any(d in dims for d in time_dims + ["time", "valid_time"]):
            raise InvalidDataError(f"{self.path}: field {name!r} has a time dimension but the "
                                   "file has no matching time coordinate (datetime, valid_time "
                                   "or time)")
        for dim in dims:
            if dim not in time_dims and dim != level_dim and var.sizes[dim] != 1:
                raise InvalidDataError(f"{self.path}: field {name!r} has an unexpected dimension "
                                       f"{dim!r} of size {var.sizes[dim]}")
        levels = self._levels(name, level_dim)
        time_ranges = [range(var.sizes[d]) for d in time_dims] if has_time else []
        units = var.attrs.get("units")
        for time_index in itertools.product(*time_ranges):
            when = None
            if has_time:
                when = to_utc(self._time_values[time_index], self.path, f"field {name!r}")
            for level_index, level in enumerate(levels):
                locator = dict(zip(time_dims, time_index, strict=True)) if has_time else {}
                if level_dim is not None:
                    locator[level_dim] = level_index
                yield FieldRef(name, level, when, tuple(sorted(locator.items())), units)

    def _levels(self, name: str, level_dim: str | None) -> list[int]:
        if level_dim is None:
            return [0]
        if level_dim not in self._ds.variables:
            raise InvalidDataError(f"{self.path}: field {name!r} has a {level_dim!r} dimension "
                                   "but no pressure-level coordinate")
        values = np.asarray(self._ds[level_dim].values, dtype=np.float64)
        if np.any(values <= 0) or np.any(values != np.round(values)):
            raise InvalidDataError(f"{self.path}: pressure levels {values.tolist()} are not "
                                   "whole hPa values")
        return [int(v) for v in values]

    def read(self, ref: FieldRef) -> np.ndarray:
        var = self._ds[ref.name].isel(dict(ref.locator))
        var = var.squeeze([d for d in var.dims if d not in (self._lat, self._lon)])
        with reading(self.path, ref.describe()):
            return np.asarray(var.transpose(self._lat, self._lon).values)

    def close(self) -> None:
        self._ds.close()


def check_stored_size(path: Path) -> None:
    """InvalidDataError if the file is too small for the data its variables declare
    (uncompressed: exactly; compressed: at least 1/MAX_COMPRESSION_RATIO of it), or if a
    variable's chunk exceeds MAX_CHUNK_BYTES."""
    import netCDF4

    try:
        with netCDF4.Dataset(path) as ds:
            variables = list(_all_variables(ds))
            for var in variables:
                _check_chunk(path, var)
            needed = sum(_least_stored_bytes(var) for var in variables)
    except (OSError, RuntimeError) as exc:  # netCDF4 raises these for damaged files
        raise UnreadableFileError(f"{path}: cannot open as NetCDF ({exc})") from exc
    size = os.path.getsize(path)
    if size < needed:
        raise InvalidDataError(f"{path}: the variables declare at least {needed:,} bytes of "
                               f"data but the file has {size:,} bytes (truncated or damaged)")


def _all_variables(group) -> Iterator:
    """Every variable of a netCDF4 group and of its sub-groups."""
    yield from group.variables.values()
    for child in group.groups.values():
        yield from _all_variables(child)


def _check_chunk(path: Path, var) -> None:
    """InvalidDataError if one chunk of `var` (read and decompressed whole whenever any of
    it is read) holds more than MAX_CHUNK_BYTES."""
    chunks = var.chunking()
    if chunks == "contiguous" or chunks is None or not isinstance(var.dtype, np.dtype):
        return
    size = int(np.prod(chunks, dtype=np.int64)) * var.dtype.itemsize
    if size > MAX_CHUNK_BYTES:
        raise InvalidDataError(f"{path}: variable {var.name!r} is stored in chunks of "
                               f"{size:,} bytes ({' x '.join(map(str, chunks))}), more than "
                               f"the {MAX_CHUNK_BYTES:,} allowed: each field read would "
                               "decompress a whole chunk")


def _least_stored_bytes(var) -> int:
    """The fewest bytes a variable's declared data can be stored in."""
    if not isinstance(var.dtype, np.dtype):  # strings and other variable-length types
        return 0
    declared = int(np.prod(var.shape, dtype=np.int64)) * var.dtype.itemsize
    filters = var.filters() or {}
    if any(filters.get(name) for name in _COMPRESSION_FILTERS):
        return declared // MAX_COMPRESSION_RATIO
    return declared


class GribSource:
    """A GRIB file (editions 1 and 2) on a regular lat/lon grid, read message by message."""

    layout = CDS_LAYOUT

    def __init__(self, path: Path, min_grid_step: float = DEFAULT_MIN_GRID_STEP) -> None:
        self.path = path
        self._min_grid_step = min_grid_step
        self._file: BinaryIO = open(path, "rb")
        self._refs: list[FieldRef] = []
        self._shape: tuple[int, int] | None = None
        try:
            self._scan()
        except Exception:
            self._file.close()
            raise

    def _scan(self) -> None:
        import eccodes

        while True:
            try:
                handle = eccodes.codes_grib_new_from_file(self._file)
            except eccodes.CodesInternalError as exc:
                raise UnreadableFileError(f"{self.path}: damaged GRIB message ({exc})") from exc
            if handle is None:
                break
            try:
                self._add_message(handle)
            except eccodes.CodesInternalError as exc:  # a key missing or undecodable
                raise InvalidDataError(f"{self.path}: GRIB message at byte "
                                       f"{eccodes.codes_get(handle, 'offset')} cannot be "
                                       f"decoded ({exc})") from exc
            finally:
                eccodes.codes_release(handle)
        if not self._refs:
            raise UnreadableFileError(f"{self.path}: no GRIB messages")

    def _add_message(self, handle) -> None:
        import eccodes

        get = functools.partial(eccodes.codes_get, handle)
        name = str(get("shortName"))
        if get("gridType") != "regular_ll":
            raise InvalidDataError(f"{self.path}: field {name!r} is on a {get('gridType')} "
                                   "grid; only regular lat/lon grids can be loaded or regridded")
        if get("iScansNegatively") or get("jPointsAreConsecutive"):
            raise InvalidDataError(f"{self.path}: field {name!r} uses an unsupported scanning mode")
        shape = (int(get("Nj")), int(get("Ni")))
        check_grid_size(self.path, shape[0], shape[1], self._min_grid_step)
        if int(get("numberOfDataPoints")) != shape[0] * shape[1]:
            raise InvalidDataError(f"{self.path}: field {name!r} declares "
                                   f"{get('numberOfDataPoints')} points on a {shape[0]} x "
                                   f"{shape[1]} grid")
        lat_first = float(get("latitudeOfFirstGridPointInDegrees"))
        lat_last = float(get("latitudeOfLastGridPointInDegrees"))
        lon_first = float(get("longitudeOfFirstGridPointInDegrees"))
        lon_last = float(get("longitudeOfLastGridPointInDegrees"))
        lat = np.linspace(lat_first, lat_last, shape[0])
        lon_span = (lon_last - lon_first) % 360
        lon = lon_first + np.arange(shape[1]) * (lon_span / (shape[1] - 1))
        if self._shape is None:
            self._shape, self.latitudes, self.longitudes = shape, lat, lon
        elif shape != self._shape or not (np.allclose(lat, self.latitudes)
                                          and np.allclose(lon, self.longitudes)):
            raise InvalidDataError(f"{self.path}: field {name!r} is on a different grid than the "
                                   "file's first field")
        if eccodes.codes_is_defined(handle, "number") and int(get("number")) > 0:
            raise InvalidDataError(f"{self.path}: field {name!r} is ensemble member "
                                   f"{get('number')}; only the reanalysis (no ensemble members) "
                                   "can be loaded")
        level = int(get("level")) if get("typeOfLevel") == "isobaricInhPa" else 0
        date, time = int(get("validityDate")), int(get("validityTime"))
        try:
            when = datetime(date // 10000, date // 100 % 100, date % 100, time // 100,
                            time % 100, tzinfo=timezone.utc)
        except ValueError:
            raise InvalidDataError(f"{self.path}: field {name!r} has an invalid validity date "
                                   f"{date} {time:04d}") from None
        eccodes.codes_set(handle, "stepUnits", "s")  # steps in seconds, whatever the encoding
        accumulation = timedelta(seconds=get("endStep", int) - get("startStep", int))
        self._refs.append(FieldRef(name, level, when, int(get("offset")), str(get("units")),
                                   accumulation))

    def fields(self) -> list[FieldRef]:
        return list(self._refs)

    def read(self, ref: FieldRef) -> np.ndarray:
        import eccodes

        with reading(self.path, ref.describe(), eccodes.CodesInternalError):
            self._file.seek(int(ref.locator))
            handle = eccodes.codes_grib_new_from_file(self._file)
            if handle is None:  # the file was cut short since it was opened
                raise OSError(f"no GRIB message at byte {ref.locator}")
            try:
                values = eccodes.codes_get_values(handle)
                if eccodes.codes_get(handle, "bitmapPresent"):
                    values[values == eccodes.codes_get(handle, "missingValue")] = np.nan
            finally:
                eccodes.codes_release(handle)
        return values.reshape(self._shape)

    def close(self) -> None:
        self._file.close()
