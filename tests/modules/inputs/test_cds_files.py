"""Loading ERA5 as the CDS delivers it: NetCDF (new and old style) and GRIB."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from graphcast_contract.errors import ExitCode
from graphcast_contract.model_spec import global_grid
from graphcast_contract.variables import STANDARD_GRAVITY
from modules.inputs import store as era5_store
from modules.inputs.loader import load_file
from modules.inputs.sources import InvalidDataError, UnreadableFileError
from tests.modules.inputs.helpers import cds_axes, cds_netcdf, count_rows, grib_message, run_loader

STEP = 10.0
LAT, LON = cds_axes(STEP)
SHAPE = (LAT.size, LON.size)
T06 = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)


def _fields(n_times: int, n_levels: int = 0, mean: float = 250.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n_times, n_levels, *SHAPE) if n_levels else (n_times, *SHAPE)
    return (mean + 10 * rng.standard_normal(shape)).astype(np.float32)


def _read(conn, variable: str, level: int = 0, when: datetime = T06, step: float = STEP):
    with conn, conn.cursor() as cur:
        got = era5_store.read_fields(cur, global_grid(step), when, [(variable, level)])
    return got[(variable, level)]


@pytest.mark.parametrize("old_style", [False, True])
def test_pressure_level_netcdf_with_short_names(conn, tmp_path: Path, old_style: bool) -> None:
    t, q = _fields(2, 2), _fields(2, 2, mean=0.01, seed=1) / 1000
    path = cds_netcdf(tmp_path / "pl.nc", {"t": t, "q": q}, ["2022-01-01T00:00",
                      "2022-01-01T06:00"], levels=[500, 850], units={"t": "K", "q": "kg kg**-1"},
                      old_style=old_style)
    result = load_file(conn, path, grid_step=STEP)
    assert result.fields == 8 and len(result.valid_times) == 2
    # latitudes flipped to ascending, values otherwise untouched
    assert _read(conn, "temperature", 850).tobytes() == t[1, 1, ::-1].tobytes()
    assert _read(conn, "specific_humidity", 500).tobytes() == q[1, 0, ::-1].tobytes()


def test_single_level_netcdf_with_statics_regridded(conn, clean_db: str, tmp_path: Path) -> None:
    lsm = np.repeat((np.arange(SHAPE[1]) % 2).astype(np.float32)[None, None], SHAPE[0], axis=1)
    lsm = np.repeat(lsm, 2, axis=0)
    fields = {"t2m": _fields(2), "msl": _fields(2, mean=101_000), "u10": _fields(2, mean=0),
              "v10": _fields(2, mean=0), "z": np.full((2, *SHAPE), 981.0, np.float32), "lsm": lsm}
    path = cds_netcdf(tmp_path / "sfc.nc", fields, ["2022-01-01T00:00", "2022-01-01T06:00"],
                      units={"msl": "Pa", "z": "m**2 s**-2", "lsm": "(0 - 1)"})
    result = load_file(conn, path, grid_step=20.0)
    assert (result.fields, result.static_fields) == (8, 2)
    assert count_rows(clean_db) == (8, 2)
    with conn, conn.cursor() as cur:
        static = era5_store.read_static(cur, global_grid(20.0),
                                        ["geopotential_at_surface", "land_sea_mask"])
    assert np.all(static["geopotential_at_surface"] == np.float32(981.0))
    # each 20 deg cell covers one full 10 deg land column and two half sea columns
    np.testing.assert_allclose(static["land_sea_mask"], 0.5, rtol=1e-6)


def _hourly_tp(hours: list[int]) -> tuple[np.ndarray, list[str]]:
    """Hourly accumulations on 2022-01-01 at `hours`: hour h holds h millimetres everywhere."""
    values = np.stack([np.full(SHAPE, h * 1e-3, np.float32) for h in hours])
    return values, [f"2022-01-01T{h:02d}:00" for h in hours]


@pytest.mark.parametrize("units", [{"gh": "gpm"}, None])
def test_geopotential_height_is_stored_as_geopotential(conn, tmp_path: Path,
                                                       units: dict[str, str] | None) -> None:
    """`gh` is in geopotential metres by definition, units attribute or not."""
    gh = np.full((1, 1, *SHAPE), 5500.0, np.float32)
    path = cds_netcdf(tmp_path / "gh.nc", {"gh": gh}, ["2022-01-01T06:00"], levels=[500],
                      units=units)
    load_file(conn, path, grid_step=STEP)
    np.testing.assert_allclose(_read(conn, "geopotential", 500), 5500.0 * STANDARD_GRAVITY,
                               rtol=1e-6)


def test_six_hour_precipitation_is_the_sum_of_six_hourly_accumulations(conn,
                                                                        tmp_path: Path) -> None:
    values, times = _hourly_tp(list(range(0, 13)))
    path = cds_netcdf(tmp_path / "tp.nc", {"tp": values}, times, units={"tp": "m"})
    result = load_file(conn, path, grid_step=STEP)
    assert result.fields == 13
    # 00Z needs the previous day's hours: not derived; 06Z = 1+...+6 mm, 12Z = 7+...+12 mm
    assert [t.hour for t in result.precipitation_6hr] == [6, 12]
    np.testing.assert_allclose(_read(conn, "total_precipitation_6hr"), 0.021, rtol=1e-6)
    np.testing.assert_allclose(_read(conn, "total_precipitation_6hr",
                                     when=T06.replace(hour=12)), 0.057, rtol=1e-6)


def test_six_hour_window_spanning_two_files_is_derived_once_both_are_loaded(
        conn, clean_db: str, tmp_path: Path) -> None:
    late = np.stack([np.full(SHAPE, h * 1e-3, np.float32) for h in range(19, 24)])
    first = cds_netcdf(tmp_path / "d1.nc", {"tp": late},
                       [f"2021-12-31T{h}:00" for h in range(19, 24)])
    assert load_file(conn, first, grid_step=STEP).precipitation_6hr == ()
    values, times = _hourly_tp([0, 1])
    second = cds_netcdf(tmp_path / "d2.nc", {"tp": values}, times)
    result = load_file(conn, second, grid_step=STEP)
    midnight = T06.replace(hour=0)
    assert result.precipitation_6hr == (midnight,)
    np.testing.assert_allclose(_read(conn, "total_precipitation_6hr", when=midnight),
                               (19 + 20 + 21 + 22 + 23 + 0) * 1e-3, rtol=1e-6)


def test_precipitation_in_millimetres_is_converted(conn, tmp_path: Path) -> None:
    values, times = _hourly_tp(list(range(1, 7)))
    path = cds_netcdf(tmp_path / "tp_mm.nc", {"tp": values * 1000}, times, units={"tp": "mm"})
    load_file(conn, path, grid_step=STEP)
    np.testing.assert_allclose(_read(conn, "total_precipitation_6hr"), 0.021, rtol=1e-6)


def test_missing_hours_are_never_filled_in(conn, clean_db: str, tmp_path: Path) -> None:
    values, times = _hourly_tp([0, 1, 2, 4, 5, 6])
    path = cds_netcdf(tmp_path / "gap.nc", {"tp": values}, times)
    with pytest.raises(InvalidDataError, match=r"gap.nc: field 'total_precipitation': hourly "
                       r"accumulations missing for 2022-01-01T03:00Z; total_precipitation_6hr "
                       r"is never derived from incomplete hours"):
        load_file(conn, path, grid_step=STEP)
    values, times = _hourly_tp([0, 6, 12])  # six-hourly instead of hourly
    path = cds_netcdf(tmp_path / "sixhourly.nc", {"tp": values}, times)
    with pytest.raises(InvalidDataError, match="missing for 2022-01-01T01:00Z"):
        load_file(conn, path, grid_step=STEP)
    assert count_rows(clean_db) == (0, 0)


def _grib_file(path: Path, messages: list[bytes]) -> Path:
    path.write_bytes(b"".join(messages))
    return path


def test_grib_matches_netcdf(conn, tmp_path: Path) -> None:
    t, t2m = _fields(1, 1)[0], _fields(1, mean=280, seed=3)[0]
    tp, tp_times = _hourly_tp(list(range(1, 7)))
    messages = [grib_message("t", t[0], "2022-01-01T06:00", level=850),
                grib_message("2t", t2m, "2022-01-01T06:00"),
                grib_message("z", np.full(SHAPE, 50.0), "2022-01-01T06:00"),
                grib_message("lsm", np.full(SHAPE, 0.25), "2022-01-01T06:00")]
    messages += [grib_message("tp", tp[i], when, accumulation_hours=1)
                 for i, when in enumerate(tp_times)]
    path = _grib_file(tmp_path / "era5.grib", messages)
    result = load_file(conn, path, grid_step=STEP)
    assert (result.fields, result.static_fields) == (2 + 6, 2)
    np.testing.assert_allclose(_read(conn, "temperature", 850), t[0, ::-1], atol=1e-4)
    np.testing.assert_allclose(_read(conn, "2m_temperature"), t2m[::-1], atol=1e-4)
    np.testing.assert_allclose(_read(conn, "total_precipitation_6hr"), 0.021, rtol=1e-6)


@pytest.mark.parametrize("edition", [1, 2])
def test_grib_precipitation_not_accumulated_over_one_hour_is_invalid_data(
        clean_db: str, tmp_path: Path, edition: int) -> None:
    """A forecast's 0-6 h accumulations valid at consecutive hours are no hourly values:
    summed, they made total_precipitation_6hr six times too large."""
    tp, tp_times = _hourly_tp(list(range(1, 7)))
    path = _grib_file(tmp_path / "tp6.grib", [
        grib_message("tp", tp[i], when, edition=edition, accumulation_hours=6)
        for i, when in enumerate(tp_times)])
    done = run_loader(clean_db, path, "--grid-step", "10")
    assert done.returncode == ExitCode.NO_DATA
    assert done.stderr.strip().splitlines()[-1].endswith(
        f"{path}: field 'tp' valid 2022-01-01T01:00Z is accumulated over 6 h; "
        "total_precipitation must be accumulated over 1 h (nothing loaded from this file)")
    assert count_rows(clean_db) == (0, 0)


def test_grib_edition_2_pressure_levels(conn, tmp_path: Path) -> None:
    t = _fields(1, 1)[0, 0]
    path = _grib_file(tmp_path / "pl2.grib",
                      [grib_message("t", t, "2022-01-01T06:00", level=500, edition=2)])
    load_file(conn, path, grid_step=STEP)
    np.testing.assert_allclose(_read(conn, "temperature", 500), t[::-1], atol=1e-4)


def test_grib_nan_patch_is_rejected(conn, clean_db: str, tmp_path: Path) -> None:
    t = _fields(1, 1)[0, 0].astype(np.float64)
    t[3:5, 10:14] = np.nan
    path = _grib_file(tmp_path / "holes.grib",
                      [grib_message("t", _fields(1, 1, seed=4)[0, 0], "2022-01-01T06:00", 850),
                       grib_message("t", t, "2022-01-01T06:00", level=500)])
    with pytest.raises(InvalidDataError, match=r"holes.grib: field 't' at 500 hPa valid "
                       r"2022-01-01T06:00Z has 8 NaN or infinite values"):
        load_file(conn, path, grid_step=STEP)
    assert count_rows(clean_db) == (0, 0)


def test_grib_reduced_gaussian_grid_is_rejected(conn, tmp_path: Path) -> None:
    import eccodes

    handle = eccodes.codes_grib_new_from_samples("reduced_gg_pl_32_grib2")
    path = _grib_file(tmp_path / "gaussian.grib", [eccodes.codes_get_message(handle)])
    eccodes.codes_release(handle)
    with pytest.raises(InvalidDataError, match="reduced_gg grid; only regular lat/lon grids"):
        load_file(conn, path)


def test_unknown_short_name_is_rejected(conn, tmp_path: Path) -> None:
    path = cds_netcdf(tmp_path / "sst.nc", {"sst": _fields(1, mean=290)}, ["2022-01-01T06:00"])
    with pytest.raises(InvalidDataError, match=r"sst.nc: unknown variable 'sst'"):
        load_file(conn, path, grid_step=STEP)


def test_damaged_grib_is_unreadable(conn, tmp_path: Path) -> None:
    good = grib_message("2t", _fields(1)[0], "2022-01-01T06:00")
    path = _grib_file(tmp_path / "cut.grib", [good[: len(good) // 2]])
    with pytest.raises(UnreadableFileError, match="cut.grib"):
        load_file(conn, path)


def test_cli_exit_code_for_missing_hours(clean_db: str, tmp_path: Path) -> None:
    values, times = _hourly_tp([0, 1, 2, 4, 5, 6])
    path = cds_netcdf(tmp_path / "gap.nc", {"tp": values}, times)
    done = run_loader(clean_db, path, "--grid-step", "10")
    assert done.returncode == ExitCode.NO_DATA
    assert "hourly accumulations missing for 2022-01-01T03:00Z" in done.stderr
    assert count_rows(clean_db) == (0, 0)


def test_hourly_precipitation_whose_sum_overflows_float32_is_invalid_data(
        clean_db: str, tmp_path: Path) -> None:
    """Each hour finite as float32 (1e38 m), their six-hour sum not: exit 3, not the store's
    ValueError, and nothing loaded."""
    values, times = _hourly_tp(list(range(1, 7)))
    path = cds_netcdf(tmp_path / "flood.nc", {"tp": np.full_like(values, 1e38)}, times)
    done = run_loader(clean_db, path, "--grid-step", "10")
    assert done.returncode == ExitCode.NO_DATA, done.stderr
    assert "Traceback" not in done.stderr
    assert ("flood.nc: total_precipitation_6hr at 2022-01-01T06:00Z: the sum of the hourly "
            "accumulations is beyond float32's range") in done.stderr
    assert count_rows(clean_db) == (0, 0)
