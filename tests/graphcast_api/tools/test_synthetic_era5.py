"""The synthetic ERA5-like dataset: official example-dataset layout, plausible values,
determinism, and its command line."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from graphcast_api.__main__ import main
from graphcast_api.tools.synthetic_era5 import synthetic_dataset
from graphcast_contract.errors import ExitCode
from graphcast_contract.model_spec import Grid
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.variables import (
    ATMOSPHERIC_VARIABLES,
    PRESSURE_LEVELS_13,
    STATIC_VARIABLES,
    SURFACE_VARIABLES,
)

# (variable, lowest allowed, highest allowed): the span of real ERA5 values, loosely.
PLAUSIBLE_RANGES = [
    ("2m_temperature", 210.0, 325.0),
    ("mean_sea_level_pressure", 95_000.0, 106_000.0),
    ("10m_u_component_of_wind", -30.0, 30.0),
    ("10m_v_component_of_wind", -30.0, 30.0),
    ("total_precipitation_6hr", 0.0, 0.05),
    ("temperature", 180.0, 320.0),
    ("u_component_of_wind", -60.0, 90.0),
    ("v_component_of_wind", -60.0, 60.0),
    ("vertical_velocity", -3.0, 3.0),
    ("specific_humidity", 1e-7, 0.03),
    ("geopotential_at_surface", -500.0, 60_000.0),
    ("land_sea_mask", 0.0, 1.0),
]


@pytest.fixture(scope="module")
def one_degree() -> xr.Dataset:
    return synthetic_dataset(1.0, start="2022-01-01T00:00", n_times=3, seed=0)


def test_layout_matches_official_example_dataset(one_degree: xr.Dataset) -> None:
    ds = one_degree
    assert dict(ds.sizes) == {"batch": 1, "time": 3, "level": 13, "lat": 181, "lon": 360}
    assert tuple(ds.level.values) == PRESSURE_LEVELS_13
    np.testing.assert_array_equal(ds.lat.values, np.arange(-90, 91, dtype=np.float32))
    np.testing.assert_array_equal(ds.lon.values, np.arange(360, dtype=np.float32))
    assert ds.time.dtype == np.dtype("timedelta64[ns]")
    assert list(ds.time.values.astype("timedelta64[h]").astype(int)) == [0, 6, 12]
    assert ds.datetime.dims == ("batch", "time")
    assert str(ds.datetime.values[0, 1]) == "2022-01-01T06:00:00.000000000"
    assert set(ds.data_vars) == set(SURFACE_VARIABLES + ATMOSPHERIC_VARIABLES + STATIC_VARIABLES)
    for name in STATIC_VARIABLES:
        assert ds[name].dims == ("lat", "lon")
    for name in SURFACE_VARIABLES:
        assert ds[name].dims == ("batch", "time", "lat", "lon")
    for name in ATMOSPHERIC_VARIABLES:
        assert ds[name].dims == ("batch", "time", "level", "lat", "lon")
    assert all(ds[name].dtype == np.float32 for name in ds.data_vars)
    assert Grid.from_coordinates(ds.lat.values, ds.lon.values).shape == (181, 360)


@pytest.mark.parametrize("name, low, high", PLAUSIBLE_RANGES)
def test_values_are_finite_and_plausible(one_degree: xr.Dataset, name: str,
                                         low: float, high: float) -> None:
    values = one_degree[name].values
    assert np.isfinite(values).all()
    assert low <= values.min() and values.max() <= high, (name, values.min(), values.max())
    assert values.std() > 0


def test_vertical_structure(one_degree: xr.Dataset) -> None:
    """Geopotential rises with height everywhere; it is ~700 m2 s-2 at 1000 hPa and
    ~2e5 at 50 hPa on average; the stratosphere is cold and dry; a jet blows aloft."""
    z = one_degree.geopotential.sel(level=list(PRESSURE_LEVELS_13)).values
    assert (np.diff(z, axis=2) < 0).all()  # levels ascend in pressure: z falls
    assert 200 < z[:, :, -1].mean() < 1500
    assert 1.9e5 < z[:, :, 0].mean() < 2.1e5
    t50 = one_degree.temperature.sel(level=50).values
    assert 205 < t50.mean() < 230
    q = one_degree.specific_humidity
    assert q.sel(level=50).max() < 1e-4 < q.sel(level=1000).mean()
    jet = one_degree.u_component_of_wind.sel(level=250).max()
    assert 30 < jet < 70


def test_mask_has_land_sea_and_coasts(one_degree: xr.Dataset) -> None:
    mask = one_degree.land_sea_mask.values
    assert 0.1 < mask.mean() < 0.6
    assert (mask == 0).any() and (mask == 1).any() and ((mask > 0) & (mask < 1)).any()
    orography = one_degree.geopotential_at_surface.values
    assert orography[mask == 0].max() == 0 and orography.max() > 9.8 * 1000


def test_fields_move_slowly(one_degree: xr.Dataset) -> None:
    """Consecutive frames differ (persistence is not exact) but stay close."""
    for name in ("2m_temperature", "geopotential", "u_component_of_wind"):
        field = one_degree[name]
        if "level" in field.dims:
            field = field.sel(level=500)
        first, second = field.values[0, :2]
        change = np.sqrt(np.mean((second - first) ** 2))
        assert 0.01 * first.std() < change < 0.5 * first.std(), (name, change, first.std())


def test_deterministic_per_seed_and_consistent_across_resolutions() -> None:
    a = synthetic_dataset(5.0, n_times=2, seed=3)
    b = synthetic_dataset(5.0, n_times=2, seed=3)
    c = synthetic_dataset(5.0, n_times=2, seed=4)
    xr.testing.assert_identical(a, b)
    assert not np.array_equal(a.temperature.values, c.temperature.values)
    fine = synthetic_dataset(2.5, n_times=2, seed=3)
    np.testing.assert_allclose(fine.temperature.sel(lat=a.lat, lon=a.lon).values,
                               a.temperature.values, rtol=1e-6)


def test_custom_levels_and_bad_arguments() -> None:
    ds = synthetic_dataset(10.0, levels=(500, 850), n_times=1)
    assert ds.sizes["level"] == 2 and ds.sizes["time"] == 1
    with pytest.raises(ValueError, match="does not divide 180 and 360"):
        synthetic_dataset(7.0)
    with pytest.raises(ValueError, match="n_times"):
        synthetic_dataset(10.0, n_times=0)
    with pytest.raises(ValueError, match="levels"):
        synthetic_dataset(10.0, levels=(0, 500))
    with pytest.raises(ValueError, match="not a time"):
        synthetic_dataset(10.0, start="NaT")
    for start in ("2262-04-11T12:00", "1677-09-21T00:00"):  # past either end: numpy wraps
        with pytest.raises(ValueError, match=r"leave datetime64\[ns\]'s range"):
            synthetic_dataset(10.0, start=start)


def _cli(*args: str, alias: bool = True) -> subprocess.CompletedProcess[str]:
    """The command, by its alias module or as `python -m graphcast_api synthetic-era5`."""
    command = ["graphcast_api.synthetic_era5"] if alias else ["graphcast_api", "synthetic-era5"]
    return subprocess.run([sys.executable, "-m", *command, *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


def test_command_line_writes_a_readable_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "synthetic.nc"
    result = _cli("--out", str(out), "--resolution", "10", "--start", "2023-06-30T18:00",
                  "--times", "4", "--seed", "7")
    assert result.returncode == 0, result.stderr
    assert "19x36 grid, 13 levels, 4 frames 2023-06-30T18:00 .. 2023-07-01T12:00" in result.stdout
    written = xr.load_dataset(out, decode_timedelta=True)
    expected = synthetic_dataset(10.0, start="2023-06-30T18:00", n_times=4, seed=7)
    xr.testing.assert_identical(written, expected)
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # no partial file left


def test_command_line_rejects_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "x.nc"
    bad_start = _cli("--out", str(out), "--start", "yesterday-ish")
    assert bad_start.returncode == ExitCode.USAGE and "--start" in bad_start.stderr
    bad_resolution = _cli("--out", str(out), "--resolution", "7", alias=False)
    assert (bad_resolution.returncode == ExitCode.USAGE
            and "does not divide 180 and 360" in bad_resolution.stderr)
    assert "Traceback" not in bad_start.stderr + bad_resolution.stderr
    assert not out.exists()


def test_command_line_reports_an_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _cli("--out", str(blocker / "x.nc"), "--resolution", "30", "--times", "1",
                  alias=False)
    assert result.returncode == ExitCode.OUTPUT_FAILED, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot write {blocker / 'x.nc'}" in lines[0]
    assert sorted(tmp_path.iterdir()) == [blocker]


@pytest.mark.parametrize("option, value, message", [
    ("--resolution", "inf", "grid step of inf deg does not divide"),
    ("--start", "NaT", "start NaT is not a time"),
    ("--start", "2262-04-11T18:00", "to 2262-04-12 00:00:00 leave datetime64[ns]'s range"),
    ("--seed", "-1", "--seed must be a non-negative integer, got -1"),
])
def test_command_line_refuses_a_bad_value_in_one_line(
        option: str, value: str, message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.nc"
    assert main(["synthetic-era5", "--out", str(out), "--resolution", "30", "--times", "2",
                 option, value]) == ExitCode.USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
