"""Loading NetCDF files in the GraphCast example layout into the ERA5 store."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from graphcast_contract.errors import ExitCode
from graphcast_contract.model_spec import Grid
from modules.inputs import store as era5_store
from modules.inputs.loader import load_file
from modules.inputs.sources import InvalidDataError, UnreadableFileError
from tests.modules.inputs.helpers import count_rows, graphcast_dataset, run_loader
from tests.paths import REFERENCE_DIR

EXAMPLE = REFERENCE_DIR / "example_batch.nc"


def _utc(value: np.datetime64) -> datetime:
    return datetime.fromtimestamp(int(value.astype("datetime64[s]").astype(int)), tz=timezone.utc)


def test_example_batch_round_trip_is_bit_identical(conn, clean_db: str) -> None:
    result = load_file(conn, EXAMPLE)
    ds = xr.load_dataset(EXAMPLE, decode_timedelta=True)
    grid = Grid.from_coordinates(ds.lat.values, ds.lon.values)
    assert result.grid == grid
    assert result.fields == 6 * (6 * 13 + 6) and result.static_fields == 2
    with conn, conn.cursor() as cur:
        for t, when in enumerate(ds.datetime.values[0]):
            keys = [(name, int(level) if "level" in ds[name].dims else 0)
                    for name in ds.data_vars if "time" in ds[name].dims
                    for level in (ds.level.values if "level" in ds[name].dims else [0])]
            got = era5_store.read_fields(cur, grid, _utc(when), keys)
            assert len(got) == len(keys) == 6 * 13 + 6
            for (name, level), field in got.items():
                expected = ds[name].isel(batch=0, time=t)
                if level:
                    expected = expected.sel(level=level)
                assert field.tobytes() == expected.values.tobytes(), (name, level, when)
        static = era5_store.read_static(cur, grid, ["land_sea_mask", "geopotential_at_surface"])
    for name, field in static.items():
        assert field.tobytes() == ds[name].values.tobytes()


def test_reloading_is_idempotent(conn, clean_db: str) -> None:
    load_file(conn, EXAMPLE)
    first = count_rows(clean_db)
    load_file(conn, EXAMPLE)
    assert count_rows(clean_db) == first == (6 * 84, 2)


@pytest.mark.parametrize("step", [5.0, 1.0])
def test_any_regular_global_grid_loads_as_is(conn, tmp_path: Path, step: float) -> None:
    ds = graphcast_dataset(step=step, levels=(850,))
    path = tmp_path / "batch.nc"
    ds.to_netcdf(path)
    result = load_file(conn, path)
    assert result.grid == Grid(int(180 / step) + 1, int(360 / step), -90.0, step, 0.0, step)
    with conn, conn.cursor() as cur:
        got = era5_store.read_fields(cur, result.grid, result.valid_times[1],
                                     [("temperature", 850)])
    assert got[("temperature", 850)].tobytes() == ds.temperature.values[0, 1, 0].tobytes()


def test_descending_latitudes_and_negative_longitudes_are_reordered(conn, tmp_path: Path) -> None:
    ds = graphcast_dataset(step=10.0)
    shifted = ds.assign_coords(lon=((ds.lon + 180) % 360) - 180).roll(lon=18, roll_coords=True)
    shifted = shifted.isel(lat=slice(None, None, -1))
    path = tmp_path / "flipped.nc"
    shifted.to_netcdf(path)
    result = load_file(conn, path)
    assert result.grid.lon_first == 0.0
    with conn, conn.cursor() as cur:
        got = era5_store.read_static(cur, result.grid, ["land_sea_mask"])
    assert got["land_sea_mask"].tobytes() == ds.land_sea_mask.values.tobytes()


def _write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_netcdf(path)
    return path


BAD_FILES = {
    "nan": (lambda ds: ds.assign(geopotential=ds.geopotential.where(ds.lat < 60)),
            "'geopotential' at 500 hPa valid 2022-01-01T00:00Z has 144 NaN"),
    "inf": (lambda ds: ds.assign(land_sea_mask=ds.land_sea_mask.where(ds.lon != 0, np.inf)),
            "'land_sea_mask' has 19 NaN or infinite"),
    "irregular": (lambda ds: ds.assign_coords(lat=ds.lat.values + np.r_[0, 0, 3, [0] * 16]),
                  "latitude is not a regular ascending grid"),
    "not global": (lambda ds: ds.isel(lat=slice(1, -1)), "not the global -90..90"),
    "no datetime": (lambda ds: ds.drop_vars("datetime"), "no matching time coordinate"),
    "no latitude": (lambda ds: ds.drop_vars("lat"), "no latitude coordinate"),
    "no level": (lambda ds: ds.drop_vars("level"), "no pressure-level coordinate"),
    "unknown variable": (lambda ds: ds.assign(snow=ds["2m_temperature"]),
                         "unknown variable 'snow'"),
    "bad units": (lambda ds: ds.assign(temperature=ds.temperature.assign_attrs(units="degC")),
                  "units 'degC'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_rejected_whole(conn, clean_db: str, tmp_path: Path, case: str) -> None:
    change, message = BAD_FILES[case]
    path = _write(change(graphcast_dataset()), tmp_path / "bad.nc")
    with pytest.raises(InvalidDataError) as info:
        load_file(conn, path)
    assert str(path) in str(info.value) and message in str(info.value)
    assert count_rows(clean_db) == (0, 0)


def test_not_a_netcdf_file(conn, tmp_path: Path) -> None:
    path = tmp_path / "notes.nc"
    path.write_text("hello")
    with pytest.raises(UnreadableFileError, match="not a NetCDF or GRIB file"):
        load_file(conn, path)


def test_cli_loads_files_and_reports_each_failure_with_its_exit_code(clean_db: str,
                                                                     tmp_path: Path) -> None:
    good = _write(graphcast_dataset(), tmp_path / "good.nc")
    nan = _write(BAD_FILES["nan"][0](graphcast_dataset(seed=1)), tmp_path / "nan.nc")
    text = tmp_path / "text.nc"
    text.write_text("not netcdf")

    done = run_loader(clean_db, good)
    assert done.returncode == ExitCode.OK, done.stderr
    assert "loaded 12 fields at 2 valid times and 2 static fields" in done.stderr
    assert count_rows(clean_db) == (12, 2)

    done = run_loader(clean_db, nan)
    assert done.returncode == ExitCode.NO_DATA
    assert f"{nan}: field 'geopotential'" in done.stderr and "nothing loaded" in done.stderr

    done = run_loader(clean_db, text)
    assert done.returncode == ExitCode.UNREADABLE_FILE
    assert f"{text}: not a NetCDF or GRIB file" in done.stderr

    done = run_loader(clean_db, tmp_path / "missing.nc")
    assert done.returncode == ExitCode.UNREADABLE_FILE and "cannot read" in done.stderr
    assert count_rows(clean_db) == (12, 2)


def test_cli_reports_an_unreachable_database(tmp_path: Path) -> None:
    good = _write(graphcast_dataset(), tmp_path / "good.nc")
    done = run_loader("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2", good)
    assert done.returncode == ExitCode.DATABASE
    assert "database unavailable" in done.stderr
