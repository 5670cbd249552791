"""Files whose headers lie about their size: refused as invalid data before any big read;
files whose data are damaged or out of range: refused with one line, nothing loaded."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from graphcast_contract.errors import ExitCode
from modules.inputs.loader import load_file
from modules.inputs.sources import MAX_CHUNK_BYTES, MAX_COMPRESSION_RATIO, InvalidDataError
from tests.modules.inputs.helpers import cds_netcdf, count_rows, grib_message, run_loader

HUGE = (18001, 36000)  # 0.01 deg: 2.6 GB a float32 field


def _huge_netcdf(path: Path) -> Path:
    """A ~0.4 MB NetCDF-4 file declaring a 0.01-degree 2m_temperature it never wrote."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("valid_time", 1)
        ds.createDimension("latitude", HUGE[0])
        ds.createDimension("longitude", HUGE[1])
        time = ds.createVariable("valid_time", "i8", ("valid_time",))
        time.units = "seconds since 1970-01-01"
        time[:] = [1_641_016_800]
        ds.createVariable("latitude", "f8", ("latitude",))[:] = np.linspace(90, -90, HUGE[0])
        ds.createVariable("longitude", "f8", ("longitude",))[:] = np.arange(HUGE[1]) * 0.01
        ds.createVariable("t2m", "f4", ("valid_time", "latitude", "longitude"), zlib=True)
    return path


def _grib_with(edit) -> bytes:
    """A GRIB 2 sample message after `edit(handle)`."""
    import eccodes

    handle = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    try:
        edit(handle)
        return eccodes.codes_get_message(handle)
    finally:
        eccodes.codes_release(handle)


def _set(**keys):
    import eccodes

    return lambda handle: [eccodes.codes_set(handle, k, v) for k, v in keys.items()]


def test_netcdf_declaring_a_huge_grid_is_refused_unread(clean_db: str, tmp_path: Path) -> None:
    path = _huge_netcdf(tmp_path / "huge.nc")
    assert path.stat().st_size < 2_000_000
    done = run_loader(clean_db, path)
    assert done.returncode == ExitCode.NO_DATA, done.stderr
    assert "huge.nc" in done.stderr and "Traceback" not in done.stderr
    assert count_rows(clean_db) == (0, 0)


def test_truncated_classic_netcdf_is_refused(conn, tmp_path: Path) -> None:
    import netCDF4

    path = tmp_path / "cut.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("valid_time", 1)
        ds.createDimension("latitude", 19)
        ds.createDimension("longitude", 36)
        time = ds.createVariable("valid_time", "f8", ("valid_time",))
        time.units = "seconds since 1970-01-01"
        time[:] = [1_641_016_800]
        ds.createVariable("latitude", "f8", ("latitude",))[:] = np.arange(90, -91, -10)
        ds.createVariable("longitude", "f8", ("longitude",))[:] = np.arange(0, 360, 10)
        ds.createVariable("t2m", "f4", ("valid_time", "latitude", "longitude"))[:] = 280.0
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(InvalidDataError, match="cut.nc: the variables declare at least"):
        load_file(conn, path, grid_step=10)


def test_grid_finer_than_the_setting_is_refused(conn, clean_db: str, tmp_path: Path) -> None:
    values = 280 + np.zeros((1, 19, 36), dtype=np.float32)
    path = cds_netcdf(tmp_path / "ten.nc", {"t2m": values}, ["2022-01-01T06:00"])
    with pytest.raises(InvalidDataError, match=r"19 x 36 points, finer than 20 deg \(at most "
                                               r"10 x 18; see ERA5_MIN_GRID_STEP\)"):
        load_file(conn, path, grid_step=20, min_grid_step=20)
    done = run_loader(clean_db, path, "--grid-step", "20", ERA5_MIN_GRID_STEP="20")
    assert done.returncode == ExitCode.NO_DATA and "finer than 20 deg" in done.stderr
    assert count_rows(clean_db) == (0, 0)


@pytest.mark.parametrize("edit, message", [
    (_set(Ni=36000, Nj=18001), "18001 x 36000 points, finer than 0.1 deg"),  # 179 bytes
    (_set(Ni=1), "1 points; a global grid needs at least 2"),
    (_set(numberOfDataPoints=5), "declares 5 points on a 31 x 16 grid"),
])
def test_grib_with_inconsistent_sizes_is_refused(conn, clean_db: str, tmp_path: Path,
                                                 edit, message: str) -> None:
    path = tmp_path / "crafted.grib"
    path.write_bytes(_grib_with(edit))
    with pytest.raises(InvalidDataError, match=message):
        load_file(conn, path)
    assert count_rows(clean_db) == (0, 0)


def test_grib_with_an_impossible_date_is_invalid_data(clean_db: str, tmp_path: Path) -> None:
    message = bytearray(grib_message("2t", np.full((19, 36), 280.0), "2022-01-01T06:00",
                                     edition=2))
    message[16 + 12: 16 + 14] = b"\x00\x00"  # section 1 year: 0
    path = tmp_path / "year0.grib"
    path.write_bytes(bytes(message))
    done = run_loader(clean_db, path, "--grid-step", "10")
    assert done.returncode == ExitCode.NO_DATA, done.stderr
    assert "invalid validity date" in done.stderr and "Traceback" not in done.stderr
    assert count_rows(clean_db) == (0, 0)


def _small_netcdf(path: Path, values: np.ndarray, **options: object) -> Path:
    """A CDS-style NetCDF-4 file of `t2m` on the 10-degree grid: `values` (times, 19, 36),
    6-hourly from 2022-01-01T06:00Z, in its own dtype; `options` go to createVariable."""
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("valid_time", values.shape[0])
        ds.createDimension("latitude", 19)
        ds.createDimension("longitude", 36)
        time = ds.createVariable("valid_time", "i8", ("valid_time",))
        time.units = "seconds since 1970-01-01"
        time[:] = 1_641_016_800 + 21_600 * np.arange(values.shape[0])
        ds.createVariable("latitude", "f8", ("latitude",))[:] = np.arange(90, -91, -10)
        ds.createVariable("longitude", "f8", ("longitude",))[:] = np.arange(0, 360, 10)
        ds.createVariable("t2m", values.dtype, ("valid_time", "latitude", "longitude"),
                          **options)[:] = values
    return path


def _zlib_stream(data: bytes, size: int) -> tuple[int, int]:
    """(offset, length) of the zlib stream in `data` that inflates to `size` bytes."""
    for offset in range(len(data) - 2):
        if data[offset] != 0x78:
            continue
        inflater = zlib.decompressobj()
        try:
            if len(inflater.decompress(data[offset:])) == size and inflater.eof:
                return offset, len(data) - offset - len(inflater.unused_data)
        except zlib.error:
            continue
    raise AssertionError("no zlib stream found")


def test_a_damaged_compressed_chunk_is_an_unreadable_file(clean_db: str, tmp_path: Path) -> None:
    """Bytes flipped inside the compressed data, the size kept: the file opens and passes
    the size checks; reading the field fails in HDF5 ("NetCDF: HDF error"): exit 9."""
    values = 280 + np.random.default_rng(0).standard_normal((1, 19, 36)).astype(np.float32)
    path = _small_netcdf(tmp_path / "damaged.nc", values, zlib=True, shuffle=False)
    data = bytearray(path.read_bytes())
    offset, length = _zlib_stream(bytes(data), values.nbytes)
    middle = offset + length // 2
    data[middle:middle + 8] = bytes(b ^ 0xFF for b in data[middle:middle + 8])
    path.write_bytes(bytes(data))
    done = run_loader(clean_db, path, "--grid-step", "10")
    assert done.returncode == ExitCode.UNREADABLE_FILE, done.stderr
    assert "Traceback" not in done.stderr
    assert "damaged.nc: cannot read field 't2m' valid 2022-01-01T06:00Z" in done.stderr
    assert count_rows(clean_db) == (0, 0)


def test_a_float64_value_beyond_float32_is_invalid_data(clean_db: str, tmp_path: Path) -> None:
    """1e300 is finite as float64 and infinite once stored as float32: exit 3 naming the
    field, not the store's ValueError."""
    values = np.full((1, 19, 36), 280.0)
    values[0, 9, 18] = 1e300
    path = _small_netcdf(tmp_path / "huge-value.nc", values)
    done = run_loader(clean_db, path, "--grid-step", "10")
    assert done.returncode == ExitCode.NO_DATA, done.stderr
    assert "Traceback" not in done.stderr
    assert ("huge-value.nc: field 't2m' valid 2022-01-01T06:00Z has 1 NaN or infinite values"
            in done.stderr)
    assert count_rows(clean_db) == (0, 0)


def test_a_chunk_over_the_cap_is_refused_unread(clean_db: str, tmp_path: Path) -> None:
    """One zlib chunk spanning many time steps (just over MAX_CHUNK_BYTES of zeros: small on
    disk, yet enough for the declared-size check) would be decompressed whole for every
    field read: exit 3 before any read."""
    import netCDF4

    steps = MAX_CHUNK_BYTES // (19 * 36 * 4) + 1
    path = tmp_path / "one-chunk.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("valid_time", steps)
        ds.createDimension("latitude", 19)
        ds.createDimension("longitude", 36)
        ds.createVariable("t2m", "f4", ("valid_time", "latitude", "longitude"), zlib=True,
                          chunksizes=(steps, 19, 36))[:] = np.zeros((steps, 19, 36), np.float32)
    assert steps * 19 * 36 * 4 // MAX_COMPRESSION_RATIO < path.stat().st_size < 200_000
    done = run_loader(clean_db, path, "--grid-step", "10")
    assert done.returncode == ExitCode.NO_DATA, done.stderr
    assert "Traceback" not in done.stderr
    chunk = steps * 19 * 36 * 4
    assert (f"one-chunk.nc: variable 't2m' is stored in chunks of {chunk:,} bytes "
            f"({steps} x 19 x 36), more than the {MAX_CHUNK_BYTES:,} allowed") in done.stderr
    assert count_rows(clean_db) == (0, 0)
