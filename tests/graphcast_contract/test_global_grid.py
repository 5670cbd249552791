"""The regular global grid, defined once (`model_spec.global_grid`) for the models, the
ERA5 store, the regridder and the synthetic data."""
from __future__ import annotations

import numpy as np
import pytest

from graphcast_contract.model_spec import Grid, global_grid


@pytest.mark.parametrize("step", [0.25, 1.0, 2.5, 10.0])
def test_the_grid_runs_pole_to_pole_and_round_the_globe(step: float) -> None:
    grid = global_grid(step)
    n_lat, n_lon = round(180 / step) + 1, round(360 / step)
    assert grid.shape == (n_lat, n_lon)
    # float32 values are the graph cache's key: they must stay those of the evenly spaced
    # axes the engine built its graphs from before the grid was defined here
    np.testing.assert_array_equal(grid.latitudes().astype(np.float32),
                                  np.linspace(-90, 90, n_lat).astype(np.float32))
    np.testing.assert_array_equal(grid.longitudes().astype(np.float32),
                                  (np.arange(n_lon) * step).astype(np.float32))
    assert Grid.from_coordinates(grid.latitudes(), grid.longitudes()) == grid


@pytest.mark.parametrize("step", [0.7, 7.0, 0.0, -1.0, 360.0, float("inf"), float("nan")])
def test_a_step_that_does_not_divide_the_globe_is_refused(step: float) -> None:
    with pytest.raises(ValueError, match="does not divide 180 and 360"):
        global_grid(step)
