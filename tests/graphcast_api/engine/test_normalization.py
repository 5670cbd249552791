"""Stacking and unstacking a block of grid nodes at a time equals xarray's whole-array
arithmetic, for any block size, batch size and mix of dimensions."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from graphcast_api.engine import normalization
from graphcast_api.engine.normalization import normalized_stack, unstack
from graphcast_api.engine.stats import NormalizationStats

LEVELS = [50, 500, 850]
LAT, LON, BATCH = 5, 8, 2


def _random(rng: np.random.Generator, dims: tuple[str, ...], scale: float = 1.0,
            offset: float = 0.0) -> tuple[tuple[str, ...], np.ndarray]:
    sizes = {"batch": BATCH, "time": 2, "level": len(LEVELS), "lat": LAT, "lon": LON}
    return dims, (offset + scale * rng.standard_normal([sizes[d] for d in dims])
                  ).astype(np.float32)


@pytest.fixture
def data() -> tuple[xr.Dataset, NormalizationStats]:
    """Inputs with atmospheric, surface and static variables, and their statistics; the
    statistics cover more levels than the inputs, in another order (aligned by label)."""
    rng = np.random.default_rng(0)
    coords = {"level": LEVELS, "lat": np.arange(LAT), "lon": np.arange(LON)}
    inputs = xr.Dataset({
        "temperature": _random(rng, ("batch", "time", "level", "lat", "lon"), 20, 250),
        "2m_temperature": _random(rng, ("batch", "time", "lat", "lon"), 10, 280),
        "land_sea_mask": _random(rng, ("lat", "lon")),
    }, coords=coords)
    stat_levels = {"level": [850, 925, 500, 50, 1000]}

    def statistic(offset: float) -> xr.Dataset:
        return xr.Dataset({
            "temperature": ("level", offset + rng.random(5).astype(np.float32)),
            "2m_temperature": ((), np.float32(offset + rng.random())),
            "land_sea_mask": ((), np.float32(offset + rng.random())),
        }, coords=stat_levels)
    return inputs, NormalizationStats(mean=statistic(0.0), stddev=statistic(1.0),
                                      diffs_stddev=statistic(2.0))


def _expected_stack(inputs: xr.Dataset, stats: NormalizationStats) -> np.ndarray:
    """The stack by whole-array xarray arithmetic: [lat * lon, batch, channels]."""
    columns = []
    for name in sorted(inputs.data_vars):
        normalized = (inputs[name] - stats.mean[name]) / stats.stddev[name]
        normalized = normalized.expand_dims({d: n for d, n in (("batch", BATCH),)
                                             if d not in normalized.dims})
        others = [d for d in normalized.dims if d not in ("lat", "lon", "batch")]
        values = normalized.transpose("lat", "lon", "batch", *others).values
        columns.append(values.reshape(LAT * LON, BATCH, -1))
    return np.concatenate(columns, axis=-1)


def _laid_out_otherwise(inputs: xr.Dataset) -> xr.Dataset:
    """The same values, each array's memory in reversed dimension order (not channel-major)."""
    return inputs.copy(data={name: np.asfortranarray(value.values)
                             for name, value in inputs.data_vars.items()})


@pytest.mark.parametrize("layout", [lambda inputs: inputs, _laid_out_otherwise])
@pytest.mark.parametrize("block", [1, 7, LAT * LON, 65_536])
def test_stack_equals_whole_array_arithmetic(data, monkeypatch, block: int, layout) -> None:
    inputs, stats = data
    inputs = layout(inputs)
    monkeypatch.setattr(normalization, "_BLOCK_NODES", block)
    ours = normalized_stack([inputs], stats, BATCH)
    expected = _expected_stack(inputs, stats)
    assert ours.shape == (LAT * LON, BATCH, 3 * 2 + 2 + 1)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("block", [1, 7, 65_536])
def test_unstack_denormalizes_as_whole_array_arithmetic(data, monkeypatch, block: int) -> None:
    """Residual targets get output * diffs_stddev + last input, the others output * stddev
    + mean; without statistics the outputs come back as they are."""
    inputs, stats = data
    monkeypatch.setattr(normalization, "_BLOCK_NODES", block)
    template = inputs[["temperature", "2m_temperature"]].isel(time=[0])
    outputs = np.random.default_rng(1).standard_normal(
        (LAT * LON, BATCH, 3 + 1)).astype(np.float32)
    last = _laid_out_otherwise(inputs[["temperature"]].isel(time=-1, drop=True))
    ours = unstack(outputs, template, stats, last)
    plain = unstack(outputs, template)
    for name in template.data_vars:
        assert ours[name].dims == template[name].dims
    np.testing.assert_array_equal(
        ours["temperature"].values,
        (plain["temperature"] * stats.diffs_stddev["temperature"] + last["temperature"])
        .transpose(*template["temperature"].dims).values)
    np.testing.assert_array_equal(
        ours["2m_temperature"].values,
        (plain["2m_temperature"] * stats.stddev["2m_temperature"]
         + stats.mean["2m_temperature"]).values)
    # The plain unstack is the outputs' channels in order, variables sorted by name.
    np.testing.assert_array_equal(
        plain["2m_temperature"].values[:, 0].reshape(BATCH, -1).T, outputs[:, :, 0])
    np.testing.assert_array_equal(
        plain["temperature"].values[:, 0].transpose(2, 3, 0, 1).reshape(LAT * LON, BATCH, 3),
        outputs[:, :, 1:])
