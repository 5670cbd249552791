"""Bilinear interpolation of gridded fields at sites (numpy only).

Used by the API service to turn forecast grids into site values, and by verification to
compute the ERA5 truth at the same sites the same way.
"""
from __future__ import annotations

import numpy as np


def bilinear(
    field: np.ndarray,
    latitudes: np.ndarray,
    longitudes: np.ndarray,
    *,
    lat_first: float,
    lat_step: float,
    lon_first: float,
    lon_step: float,
) -> np.ndarray:
    """Interpolate `field` [..., n_lat, n_lon] (latitudes ascending) at sites.

    `latitudes`/`longitudes` (degrees, one per site) give an array [..., n_sites]. Longitudes
    wrap around 360 degrees; latitudes beyond the outermost grid rows are clamped to them.
    """
    n_lat, n_lon = field.shape[-2:]
    lat_index = np.clip((np.asarray(latitudes, float) - lat_first) / lat_step, 0, n_lat - 1)
    i0 = np.minimum(np.floor(lat_index).astype(int), n_lat - 2)
    wi = lat_index - i0
    lon_index = np.mod(np.asarray(longitudes, float) - lon_first, 360.0) / lon_step
    j_floor = np.floor(lon_index)
    wj = lon_index - j_floor
    j0 = j_floor.astype(int) % n_lon
    j1 = (j0 + 1) % n_lon
    return (
        (1 - wi) * (1 - wj) * field[..., i0, j0]
        + (1 - wi) * wj * field[..., i0, j1]
        + wi * (1 - wj) * field[..., i0 + 1, j0]
        + wi * wj * field[..., i0 + 1, j1]
    )
