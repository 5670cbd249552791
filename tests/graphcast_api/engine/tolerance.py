"""Tolerances of the reference README, shared by the engine tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr


def scale(reference_dir: Path, task_config, name: str, dims) -> np.ndarray:
    """diffs-stddev of `name` on the task's levels, shaped to broadcast over (level, lat, lon)."""
    stats = xr.load_dataset(reference_dir / "stats_diffs_stddev_by_level.nc")[name]
    if "level" in stats.dims:
        stats = stats.sel(level=list(task_config.pressure_levels))
    values = stats.values.astype(np.float32)
    return values.reshape(-1, 1, 1) if "level" in dims else values


def check_fp32(prediction: xr.Dataset, reference: xr.Dataset, reference_dir: Path,
               task_config) -> None:
    """|ours - ref| <= 1e-3 * scale + 1e-6 * |ref| for every variable, level and step."""
    assert set(prediction.data_vars) == set(reference.data_vars)
    for name in reference.data_vars:
        ours = prediction[name]
        ref = reference[name].transpose(*ours.dims).values
        bound = 1e-3 * scale(reference_dir, task_config, name, ours.dims) + 1e-6 * np.abs(ref)
        excess = np.abs(ours.values - ref) - bound
        assert ours.dtype == np.float32
        assert excess.max() <= 0, f"{name}: exceeds the fp32 tolerance by {excess.max()}"
