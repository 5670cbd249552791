"""Official normalisation statistics: the `graphcast_contract.variables.STATS_FILES` of `stats/`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import xarray as xr

from graphcast_api.engine.configs import TaskConfig
from graphcast_contract.variables import STATS_FILES


class StatsError(ValueError):
    """A statistics file is missing, unreadable or lacks a needed variable or level."""


@dataclasses.dataclass(frozen=True)
class NormalizationStats:
    """Per-variable statistics on the task's pressure levels, float32."""

    mean: xr.Dataset
    stddev: xr.Dataset
    diffs_stddev: xr.Dataset


def _select(path: Path, variables: set[str], levels: tuple[int, ...]) -> xr.Dataset:
    """Read one statistics file, keep `variables`, select `levels` by label, cast to float32."""
    try:
        data = xr.load_dataset(path)
    except (OSError, ValueError) as error:
        raise StatsError(f"cannot read statistics file {path}: {error}") from error
    missing = sorted(variables - set(data.data_vars))
    if missing:
        raise StatsError(f"{path.name} lacks variable(s): {', '.join(missing)}")
    data = data[sorted(variables)]
    if "level" in data.dims:
        absent = sorted(set(levels) - set(data["level"].values.tolist()))
        if absent:
            raise StatsError(f"{path.name} lacks pressure level(s): {absent}")
        data = data.sel(level=list(levels))
    return data.astype(np.float32)


def load_stats(stats_dir: Path, task_config: TaskConfig) -> NormalizationStats:
    """Load the three official statistics files from `stats_dir` for this task."""
    inputs = set(task_config.input_variables) | set(task_config.forcing_variables)
    non_input_targets = set(task_config.target_variables) - set(task_config.input_variables)
    residual_targets = set(task_config.target_variables) & set(task_config.input_variables)
    paths = [Path(stats_dir) / name for name in STATS_FILES]
    for path in paths:
        if not path.is_file():
            raise StatsError(f"statistics file not found: {path}")
    levels = task_config.pressure_levels
    return NormalizationStats(
        mean=_select(paths[0], inputs | non_input_targets, levels),
        stddev=_select(paths[1], inputs | non_input_targets, levels),
        diffs_stddev=_select(paths[2], residual_targets, levels))
