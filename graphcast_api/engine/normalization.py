"""Input normalisation, output de-normalisation and xarray ↔ stacked-array conversion.

Stacking follows the official channel order: variables in alphabetical order of their names,
each contributing its non-(batch, lat, lon) dimensions flattened in its own dimension order.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from graphcast_api.engine.stats import NormalizationStats

_PRESERVED = ("lat", "lon", "batch")
_BLOCK_NODES = 65_536  # grid nodes normalised or unstacked at a time (normalized_stack, unstack)


def normalized_stack(parts: list[xr.Dataset], stats: NormalizationStats,
                     batch: int) -> np.ndarray:
    """(value - mean) / stddev of every variable of each dataset in turn, stacked per grid
    node → float32 [lat * lon, batch, channels] in the official channel order.

    The result is a transposed view of a (batch, channels, grid) array, the variables' own
    layout: each is normalised into its channels with contiguous, vectorised arithmetic, a
    block of grid nodes at a time (the division re-reads from cache what the subtraction
    wrote), and nothing is transposed here: the network's compiled encoder reads the view as
    it is, tile by tile (see network.GraphCastNetwork.__call__). 0.25–0.6 s a 0.25° step,
    where xarray arithmetic on whole variables, written transposed, took 1.1 s.
    """
    fields = [_channel_major(data[name], data, batch)
              for data in parts for name in sorted(data.data_vars)]
    arrays = [_grid_last(field) for field in fields]
    means = [_per_channel(stats.mean[field.name], field) for field in fields]
    stddevs = [_per_channel(stats.stddev[field.name], field) for field in fields]
    nodes = arrays[0].shape[2]
    major = np.empty((batch, sum(len(mean) for mean in means), nodes), np.float32)
    for start in range(0, nodes, _BLOCK_NODES):
        stop, channel = min(start + _BLOCK_NODES, nodes), 0
        for values, mean, stddev in zip(arrays, means, stddevs, strict=True):
            rows = major[:, channel:channel + len(mean), start:stop]
            channel += len(mean)
            np.subtract(values[:, :, start:stop], mean[:, None], out=rows)
            np.divide(rows, stddev[:, None], out=rows)
    return major.transpose(2, 0, 1)


def unstack(outputs: np.ndarray, template: xr.Dataset, stats: NormalizationStats | None = None,
            last_inputs: xr.Dataset | None = None) -> xr.Dataset:
    """Outputs [lat * lon, batch, channels] → dataset shaped like `template` (one time step),
    de-normalised when `stats` are given: residual targets (those in `last_inputs`) as
    output * diffs_stddev + last input, the others as output * stddev + mean.

    `template` variables have dims (batch, time=1, [level,] lat, lon). Written a block of
    grid nodes at a time into one channel-major float32 array, of which each variable is a
    part, and de-normalised while the block is in cache: a plain copy when the outputs are
    a view of a channel-major array, as the network returns them. 0.2 s a 0.25° step, where
    xarray arithmetic on outputs laid out (grid, batch, channels) took 0.7 s.
    """
    nodes, batch, channels = outputs.shape
    fields = [_channel_major(template[name], template, batch)
              for name in sorted(template.data_vars)]
    affine = [None if stats is None else _denormalization(field, stats, last_inputs)
              for field in fields]
    major = np.empty((batch, channels, nodes), np.float32)
    for start in range(0, nodes, _BLOCK_NODES):
        stop = min(start + _BLOCK_NODES, nodes)
        part, channel = major[:, :, start:stop], 0
        part[...] = outputs[start:stop].transpose(1, 2, 0)
        for field, terms in zip(fields, affine, strict=True):
            rows = part[:, channel:channel + _channels(field)]
            channel += _channels(field)
            if terms is not None:
                scale, offset = terms
                np.multiply(rows, scale[:, None], out=rows)
                np.add(rows, offset[:, None] if offset.ndim == 1 else offset[:, :, start:stop],
                       out=rows)
    variables, channel = {}, 0
    for field in fields:
        values = major[:, channel:channel + _channels(field)].reshape(field.shape)
        channel += _channels(field)
        variables[field.name] = xr.Variable(field.dims, values).transpose(
            *template[field.name].dims)
    return xr.Dataset(variables, coords=template.coords)


def _channel_major(variable: xr.DataArray, data: xr.Dataset, batch: int) -> xr.DataArray:
    """`variable` with dims (batch, *channel dims, lat, lon), broadcast where it lacks one of
    batch, lat and lon; its channels are the other dimensions, flattened in their order."""
    missing = {dim: size for dim, size in (("batch", batch), ("lat", data.sizes["lat"]),
                                           ("lon", data.sizes["lon"]))
               if dim not in variable.dims}
    variable = variable.expand_dims(missing)
    others = [d for d in variable.dims if d not in _PRESERVED]
    return variable.transpose("batch", *others, "lat", "lon")


def _channels(field: xr.DataArray) -> int:
    """The number of channels of a _channel_major field."""
    return int(np.prod(field.shape[1:-2]))


def _grid_last(field: xr.DataArray) -> np.ndarray:
    """A _channel_major field's values as [batch, channels, lat * lon] (a view if it can)."""
    return field.values.reshape(field.shape[0], _channels(field), -1)


def _per_channel(statistic: xr.DataArray, field: xr.DataArray) -> np.ndarray:
    """A statistic (dims among the field's channel dims; levels matched by label) per channel
    of a _channel_major field, float32 [channels]."""
    dims = field.dims[1:-2]
    if "level" in statistic.dims:
        statistic = statistic.sel(level=field["level"].values)
    values = statistic.transpose(*(d for d in dims if d in statistic.dims)).values
    shape = [field.sizes[d] if d in statistic.dims else 1 for d in dims]
    return np.broadcast_to(values.reshape(shape), field.shape[1:-2]).reshape(-1)


def _denormalization(field: xr.DataArray, stats: NormalizationStats,
                     last_inputs: xr.Dataset | None) -> tuple[np.ndarray, np.ndarray]:
    """(scale [channels], offset: [channels] or [batch, channels, lat * lon]) that turn the
    normalised output `field` (_channel_major) into physical values."""
    name = field.name
    if last_inputs is not None and name in last_inputs:
        last = _channel_major(last_inputs[name], last_inputs, field.shape[0])
        return _per_channel(stats.diffs_stddev[name], field), _grid_last(last)
    return _per_channel(stats.stddev[name], field), _per_channel(stats.mean[name], field)
