"""Input normalisation, output de-normalisation and xarray ↔ stacked-array conversion.

Stacking follows the official channel order: variables in alphabetical order of their names,
each contributing its non-(batch, lat, lon) dimensions flattened in its own dimension order.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from graphcast_api.engine.stats import NormalizationStats

_PRESERVED = ("lat", "lon", "batch")
_BLOCK_NODES = 65_536  # about the grid nodes normalised or unstacked at a time (_row_blocks)


def normalized_stack(parts: list[xr.Dataset], stats: NormalizationStats,
                     batch: int) -> np.ndarray:
    """(value - mean) / stddev of every variable of each dataset in turn, stacked per grid
    node → float32 [lat * lon, batch, channels] in the official channel order.

    The result is a transposed view of a (batch, channels, grid) array, the variables' own
    layout: each is normalised into its channels with contiguous, vectorised arithmetic, a
    block of latitude rows at a time (the division re-reads from cache what the subtraction
    wrote; a variable laid out otherwise is copied a block at a time, never whole), and
    nothing is transposed here: the network's compiled encoder reads the view as it is, tile
    by tile (see network.GraphCastNetwork.__call__). 0.25–0.6 s a 0.25° step, where xarray
    arithmetic on whole variables, written transposed, took 1.1 s.
    """
    fields = [_channel_major(data[name], data, batch)
              for data in parts for name in sorted(data.data_vars)]
    means = [_per_channel(stats.mean[field.name], field) for field in fields]
    stddevs = [_per_channel(stats.stddev[field.name], field) for field in fields]
    num_lat, num_lon = fields[0].shape[-2:]
    major = np.empty((batch, sum(len(mean) for mean in means), num_lat * num_lon), np.float32)
    for lats, nodes in _row_blocks(num_lat, num_lon):
        channel = 0
        for field, mean, stddev in zip(fields, means, stddevs, strict=True):
            rows = major[:, channel:channel + len(mean), nodes]
            channel += len(mean)
            np.subtract(_grid_last(field, lats), mean[:, None], out=rows)
            np.divide(rows, stddev[:, None], out=rows)
    return major.transpose(2, 0, 1)


def unstack(outputs: np.ndarray, template: xr.Dataset, stats: NormalizationStats | None = None,
            last_inputs: xr.Dataset | None = None) -> xr.Dataset:
    """Outputs [lat * lon, batch, channels] → dataset shaped like `template` (one time step),
    de-normalised when `stats` are given: residual targets (those in `last_inputs`) as
    output * diffs_stddev + last input, the others as output * stddev + mean.

    `template` variables have dims (batch, time=1, [level,] lat, lon). Written a block of
    latitude rows at a time into one channel-major float32 array, of which each variable is a
    part, and de-normalised while the block is in cache: a plain copy when the outputs are
    a view of a channel-major array, as the network returns them. 0.2 s a 0.25° step, where
    xarray arithmetic on outputs laid out (grid, batch, channels) took 0.7 s.
    """
    nodes, batch, channels = outputs.shape
    fields = [_channel_major(template[name], template, batch)
              for name in sorted(template.data_vars)]
    starts = np.cumsum([0] + [_channels(field) for field in fields])
    affine = [None if stats is None else _denormalization(field, stats, last_inputs)
              for field in fields]
    major = np.empty((batch, channels, nodes), np.float32)
    for lats, block in _row_blocks(*fields[0].shape[-2:]):
        part = major[:, :, block]
        part[...] = outputs[block].transpose(1, 2, 0)
        for start, stop, terms in zip(starts[:-1], starts[1:], affine, strict=True):
            if terms is not None:
                scale, offset = terms
                rows = part[:, start:stop]
                np.multiply(rows, scale[:, None], out=rows)
                np.add(rows, offset[:, None] if isinstance(offset, np.ndarray)
                       else _grid_last(offset, lats), out=rows)
    variables = {field.name: xr.Variable(field.dims, major[:, start:stop].reshape(field.shape))
                 .transpose(*template[field.name].dims)
                 for field, start, stop in zip(fields, starts[:-1], starts[1:], strict=True)}
    return xr.Dataset(variables, coords=template.coords)


def _row_blocks(num_lat: int, num_lon: int) -> list[tuple[slice, slice]]:
    """(latitude rows, their grid nodes) in blocks of about _BLOCK_NODES nodes, whole rows."""
    rows = max(1, _BLOCK_NODES // num_lon)
    return [(slice(lat, min(lat + rows, num_lat)),
             slice(lat * num_lon, min(lat + rows, num_lat) * num_lon))
            for lat in range(0, num_lat, rows)]


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


def _grid_last(field: xr.DataArray, lats: slice) -> np.ndarray:
    """Latitude rows of a _channel_major field as [batch, channels, rows * lon]: a view when
    the field's memory allows, else a copy of those rows only."""
    return field.values[..., lats, :].reshape(field.shape[0], _channels(field), -1)


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
                     last_inputs: xr.Dataset | None
                     ) -> tuple[np.ndarray, np.ndarray | xr.DataArray]:
    """(scale [channels], offset) that turn the normalised output `field` (_channel_major)
    into physical values; the offset is the mean per channel, or for a residual target its
    last input (_channel_major, taken a block of rows at a time)."""
    name = field.name
    if last_inputs is not None and name in last_inputs:
        last = _channel_major(last_inputs[name], last_inputs, field.shape[0])
        return _per_channel(stats.diffs_stddev[name], field), last
    return _per_channel(stats.stddev[name], field), _per_channel(stats.mean[name], field)
