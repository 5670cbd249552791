"""Loading the official normalisation statistics."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from graphcast_api.engine.checkpoint import load_checkpoint
from graphcast_api.engine.stats import StatsError, load_stats


@pytest.fixture(scope="module")
def task(reference_dir: Path):
    return load_checkpoint(reference_dir / "params.npz").task_config


def test_stats_select_levels_by_label_and_cast(stats_dir: Path, reference_dir: Path,
                                               task) -> None:
    stats = load_stats(stats_dir, task)
    raw = xr.load_dataset(reference_dir / "stats_diffs_stddev_by_level.nc")
    assert stats.diffs_stddev["temperature"].dtype == np.float32
    assert stats.diffs_stddev["level"].values.tolist() == list(task.pressure_levels)
    expected = raw["temperature"].sel(level=500).values.astype(np.float32)
    assert stats.diffs_stddev["temperature"].sel(level=500).item() == expected
    assert "10m_wind_speed" not in stats.mean and "total_precipitation_24hr" not in stats.stddev
    assert "year_progress_sin" in stats.mean and "land_sea_mask" in stats.stddev
    assert set(stats.diffs_stddev.data_vars) == set(task.target_variables)


def test_missing_statistics_variable_or_file(stats_dir: Path, tmp_path: Path, task) -> None:
    for name in ("mean_by_level", "stddev_by_level"):
        shutil.copy(stats_dir / f"{name}.nc", tmp_path / f"{name}.nc")
    with pytest.raises(StatsError, match="not found: .*diffs_stddev_by_level.nc"):
        load_stats(tmp_path, task)
    xr.load_dataset(stats_dir / "diffs_stddev_by_level.nc").drop_vars("geopotential").to_netcdf(
        tmp_path / "diffs_stddev_by_level.nc")
    with pytest.raises(StatsError, match="lacks variable.*geopotential"):
        load_stats(tmp_path, task)


def test_missing_level(stats_dir: Path, tmp_path: Path, task) -> None:
    for name in ("mean_by_level", "stddev_by_level", "diffs_stddev_by_level"):
        data = xr.load_dataset(stats_dir / f"{name}.nc")
        data.sel(level=[lv for lv in data.level.values if lv != 925]).to_netcdf(
            tmp_path / f"{name}.nc")
    with pytest.raises(StatsError, match=r"lacks pressure level\(s\): \[925\]"):
        load_stats(tmp_path, task)
