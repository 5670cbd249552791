"""Bilinear interpolation at sites: exact at grid points, linear in between, wrapping, clamping."""
import numpy as np

from graphcast_contract.interpolation import bilinear

GRID = dict(lat_first=-90.0, lat_step=10.0, lon_first=0.0, lon_step=10.0)
LATS = np.arange(-90, 91, 10.0)
LONS = np.arange(0, 360, 10.0)


def test_grid_points_are_exact() -> None:
    field = np.random.default_rng(1).normal(size=(19, 36))
    got = bilinear(field, np.array([-90, 40, 90.0]), np.array([0, 120, 350.0]), **GRID)
    np.testing.assert_allclose(got, [field[0, 0], field[13, 12], field[18, 35]])


def test_linear_field_is_reproduced() -> None:
    field = 2.0 * LATS[:, None] + 0.5 * LONS[None, :]
    got = bilinear(field, np.array([41.3, -7.5]), np.array([12.7, 201.0]), **GRID)
    np.testing.assert_allclose(got, [2 * 41.3 + 0.5 * 12.7, 2 * -7.5 + 0.5 * 201.0])


def test_longitude_wraps_and_latitude_clamps() -> None:
    field = np.zeros((19, 36))
    field[:, 35] = 1.0  # 350 E
    got = bilinear(field, np.array([0.0, 0.0, 0.0]), np.array([355.0, -5.0, 715.0]), **GRID)
    np.testing.assert_allclose(got, [0.5, 0.5, 0.5])
    field = np.tile(LATS[:, None], (1, 36))
    np.testing.assert_allclose(bilinear(field, np.array([95.0]), np.array([3.0]), **GRID), [90.0])


def test_leading_dimensions_are_kept() -> None:
    field = np.random.default_rng(2).normal(size=(4, 3, 19, 36))
    assert bilinear(field, np.array([1.0, 2.0]), np.array([3.0, 4.0]), **GRID).shape == (4, 3, 2)
