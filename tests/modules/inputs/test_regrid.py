"""Conservative regridding: constants and linear fields survive, area means are kept."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphcast_contract.model_spec import global_grid
from modules.inputs import store as era5_store
from modules.inputs.loader import load_file
from modules.inputs.regrid import Regridder
from modules.inputs.sources import InvalidDataError
from tests.modules.inputs.helpers import cds_axes, cds_netcdf


def _cartesian(grid_lat: np.ndarray, grid_lon: np.ndarray) -> np.ndarray:
    """A field linear in the 3-D position on the unit sphere, like 1000 + 30x - 20y + 50z."""
    lat, lon = np.meshgrid(np.radians(grid_lat), np.radians(grid_lon), indexing="ij")
    x, y, z = np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)
    return 1000 + 30 * x - 20 * y + 50 * z


def _area_mean(field: np.ndarray, grid) -> float:
    lat = grid.latitudes()
    lo = np.radians(np.clip(lat - grid.lat_step / 2, -90, 90))
    hi = np.radians(np.clip(lat + grid.lat_step / 2, -90, 90))
    weights = (np.sin(hi) - np.sin(lo))[:, None] * np.ones(grid.n_lon)
    return float((field * weights).sum() / weights.sum())


@pytest.mark.parametrize("source_step, target_step", [(0.25, 1.0), (2.5, 10.0), (1.0, 1.0)])
def test_constant_linear_and_mean_survive(source_step: float, target_step: float) -> None:
    source, target = global_grid(source_step), global_grid(target_step)
    regrid = Regridder(source, target)
    constant = np.full(source.shape, 287.5)
    np.testing.assert_allclose(regrid(constant), 287.5, rtol=1e-12)
    linear = _cartesian(source.latitudes(), source.longitudes())
    got = regrid(linear)
    expected = _cartesian(target.latitudes(), target.longitudes())
    amplitude = np.sqrt(30**2 + 20**2 + 50**2)
    # up to 60 deg, within the curvature of a cell: ~(step in radians)^2 / 12 x (1 + tan^2)
    inside = np.abs(target.latitudes()) <= 60
    curvature = amplitude * np.radians(target_step) ** 2 / 2 + 1e-9
    assert np.max(np.abs(got[inside] - expected[inside])) < curvature
    # nearer the poles the error grows; a polar row holds the mean of its half-height cell,
    # whose centre lies a quarter step off the pole
    assert np.max(np.abs(got - expected)) < amplitude * np.radians(target_step) / 4 + 1e-9
    assert _area_mean(got, target) == pytest.approx(_area_mean(linear, source), rel=1e-12)


def test_a_field_linear_in_latitude_survives_away_from_the_poles() -> None:
    source, target = global_grid(0.25), global_grid(1.0)
    field = np.broadcast_to(250 + 0.5 * source.latitudes()[:, None], source.shape)
    got = Regridder(source, target)(field)
    expected = 250 + 0.5 * target.latitudes()
    interior = np.abs(target.latitudes()) <= 80
    assert np.max(np.abs(got[interior] - expected[interior, None])) < 0.5 * 0.01


def test_only_coarsening_is_supported() -> None:
    with pytest.raises(ValueError, match="only coarsening"):
        Regridder(global_grid(10.0), global_grid(1.0))


def test_loader_regrids_cds_quarter_degree_to_one_degree(conn, tmp_path: Path) -> None:
    lat, lon = cds_axes(0.25)
    constant = np.full((1, lat.size, lon.size), 281.25)
    linear = (100_000 + _cartesian(lat, lon) * 10)[None]
    path = cds_netcdf(tmp_path / "quarter.nc", {"t2m": constant, "msl": linear},
                      ["2022-01-01T06:00"], step=0.25, units={"t2m": "K", "msl": "Pa"})
    result = load_file(conn, path)
    target = global_grid(1.0)
    assert result.grid == target and result.fields == 2
    with conn, conn.cursor() as cur:
        got = era5_store.read_fields(cur, target, result.valid_times[0],
                                     [("2m_temperature", 0), ("mean_sea_level_pressure", 0)])
    assert np.all(got[("2m_temperature", 0)] == np.float32(281.25))
    expected = 100_000 + _cartesian(target.latitudes(), target.longitudes()) * 10
    # up to 60 deg: float32 storage of ~1e5 Pa (steps of 0.0078 Pa) dominates the error
    inside = np.abs(target.latitudes()) <= 60
    np.testing.assert_allclose(got[("mean_sea_level_pressure", 0)][inside], expected[inside],
                               atol=0.05)
    # towards the poles: the polar half-cell's mean lies a quarter degree off the pole
    np.testing.assert_allclose(got[("mean_sea_level_pressure", 0)], expected,
                               atol=10 * 62 * np.radians(0.25))


def test_loader_refuses_to_regrid_to_a_finer_grid(conn, tmp_path: Path) -> None:
    lat, lon = cds_axes(10.0)
    path = cds_netcdf(tmp_path / "coarse.nc", {"t2m": np.full((1, lat.size, lon.size), 280.0)},
                      ["2022-01-01T06:00"], step=10.0)
    with pytest.raises(InvalidDataError, match=r"coarse.nc: cannot regrid .* finer"):
        load_file(conn, path)
