"""Input normalisation, output de-normalisation and xarray ↔ stacked-array conversion.

Stacking follows the official channel order: variables in alphabetical order of their names,
each contributing its non-(batch, lat, lon) dimensions flattened in its own dimension order.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from graphcast_api.engine.stats import NormalizationStats

_PRESERVED = ("lat", "lon", "batch")


def normalized_stack(parts: list[xr.Dataset], stats: NormalizationStats,
                     batch: int) -> np.ndarray:
    """(value - mean) / stddev of every variable of each dataset in turn, stacked per grid
    node → float32 [lat * lon, batch, channels] in the official channel order.

    Written variable by variable into one array: normalising whole datasets, then stacking
    and concatenating them, held three copies of the inputs at once (5.7 GB at 0.25° and 37
    levels); this holds the result and one variable.
    """
    def layout(data: xr.Dataset, name: str) -> tuple[xr.DataArray, list[str]]:
        variable = data[name]
        missing = {dim: size for dim, size in (("batch", batch), ("lat", data.sizes["lat"]),
                                               ("lon", data.sizes["lon"]))
                   if dim not in variable.dims}
        variable = variable.expand_dims(missing)
        return variable, [d for d in variable.dims if d not in _PRESERVED]

    variables = [layout(data, name) for data in parts for name in sorted(data.data_vars)]
    channels = [int(np.prod([v.sizes[d] for d in others])) for v, others in variables]
    first = variables[0][0]
    result = np.empty((first.sizes["lat"] * first.sizes["lon"], batch, sum(channels)),
                      np.float32)
    start = 0
    for (variable, others), count in zip(variables, channels, strict=True):
        name = variable.name
        normalized = (variable - stats.mean[name]) / stats.stddev[name]
        values = normalized.transpose(*_PRESERVED, *others).values
        result[:, :, start:start + count] = values.reshape(result.shape[0], batch, count)
        start += count
    return result


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
        result[name] = value.astype(np.float32, copy=False).transpose(*normalized[name].dims)
    return xr.Dataset(result, coords=normalized.coords)
