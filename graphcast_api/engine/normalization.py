"""Input normalisation, output de-normalisation and xarray ↔ stacked-array conversion.

Stacking follows the official channel order: variables in alphabetical order of their names,
each contributing its non-(batch, lat, lon) dimensions flattened in its own dimension order.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from graphcast_api.engine.stats import NormalizationStats

_PRESERVED = ("lat", "lon", "batch")


def normalize(data: xr.Dataset, stats: NormalizationStats) -> xr.Dataset:
    """(value - mean) / stddev per variable (and level), in float32."""
    return xr.Dataset({name: ((data[name] - stats.mean[name]) / stats.stddev[name]).astype(
        np.float32) for name in data.data_vars}, attrs=data.attrs)


def stack(data: xr.Dataset, batch: int) -> np.ndarray:
    """Dataset → float32 [lat * lon, batch, channels] in the official channel order."""
    arrays = []
    for name in sorted(data.data_vars):
        variable = data[name]
        missing = {dim: size for dim, size in (("batch", batch), ("lat", data.sizes["lat"]),
                                               ("lon", data.sizes["lon"]))
                   if dim not in variable.dims}
        variable = variable.expand_dims(missing)
        others = [d for d in variable.dims if d not in _PRESERVED]
        values = variable.transpose(*_PRESERVED, *others).values
        arrays.append(values.reshape(values.shape[0] * values.shape[1], batch, -1))
    return np.concatenate(arrays, axis=-1).astype(np.float32, copy=False)


def unstack(outputs: np.ndarray, template: xr.Dataset) -> xr.Dataset:
    """Outputs [lat * lon, batch, channels] → dataset shaped like `template` (one time step).

    `template` variables have dims (batch, time=1, [level,] lat, lon).
    """
    num_lat, num_lon = template.sizes["lat"], template.sizes["lon"]
    grid = outputs.reshape(num_lat, num_lon, outputs.shape[1], -1)
    variables, start = {}, 0
    for name in sorted(template.data_vars):
        dims = template[name].dims
        others = [d for d in dims if d not in _PRESERVED]
        sizes = [template.sizes[d] for d in others]
        count = int(np.prod(sizes))
        block = grid[..., start:start + count].reshape(num_lat, num_lon, -1, *sizes)
        start += count
        variables[name] = xr.Variable(("lat", "lon", "batch", *others), block).transpose(*dims)
    return xr.Dataset(variables, coords=template.coords)


def denormalize_targets(normalized: xr.Dataset, last_inputs: xr.Dataset,
                        stats: NormalizationStats) -> xr.Dataset:
    """Residual targets: output * diffs_stddev + last input; others: output * stddev + mean."""
    result = {}
    for name in normalized.data_vars:
        if name in last_inputs:
            value = normalized[name] * stats.diffs_stddev[name] + last_inputs[name]
        else:
            value = normalized[name] * stats.stddev[name] + stats.mean[name]
        result[name] = value.astype(np.float32).transpose(*normalized[name].dims)
    return xr.Dataset(result, coords=normalized.coords)
