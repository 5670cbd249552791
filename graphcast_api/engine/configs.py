"""GraphCast model and task configurations (official field names) and channel bookkeeping."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from graphcast_contract.cycles import STEP_HOURS
from graphcast_contract.variables import (
    ATMOSPHERIC_VARIABLES,
    FORCING_VARIABLES,
    PRECIPITATION_6HR,
    PRESSURE_LEVELS_13,
    PRESSURE_LEVELS_37,
    STATIC_VARIABLES,
    SURFACE_VARIABLES,
)

# The network's dense-product back ends (network.default_products picks one): torch's `@`,
# oneDNN with prepacked weights, oneDNN plus every edge MLP as one AMX kernel (amx.py).
PRODUCTS = ("matmul", "onednn", "amx")

# Number of structural features per grid/mesh node (sin lat, cos lon, sin lon).
NODE_STRUCT_FEATURES = 3
# Model time step.
TIME_STEP = np.timedelta64(STEP_HOURS, "h")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Network and graph hyper-parameters, as stored in an official checkpoint."""

    resolution: float
    mesh_size: int
    latent_size: int
    gnn_msg_steps: int
    hidden_layers: int
    radius_query_fraction_edge_length: float
    mesh2grid_edge_normalization_factor: float | None = None


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """Variables, pressure levels and input window, as stored in an official checkpoint."""

    input_variables: tuple[str, ...]
    target_variables: tuple[str, ...]
    forcing_variables: tuple[str, ...]
    pressure_levels: tuple[int, ...]
    input_duration: str

    @property
    def num_input_frames(self) -> int:
        """Number of input time frames (input_duration / 6 h)."""
        return int(pd.Timedelta(self.input_duration).to_timedelta64() // TIME_STEP)

    def variable_channels(self, name: str, frames: int) -> int:
        """Channels a variable contributes when stacked with `frames` time frames."""
        if name in STATIC_VARIABLES:
            return 1
        levels = len(self.pressure_levels) if name in ATMOSPHERIC_VARIABLES else 1
        return levels * frames

    @property
    def num_grid_input_channels(self) -> int:
        """Data channels per grid node: inputs at all input frames, then forcings of one step."""
        inputs = sum(self.variable_channels(v, self.num_input_frames) for v in self.input_variables)
        forcings = sum(self.variable_channels(v, 1) for v in self.forcing_variables)
        return inputs + forcings

    @property
    def num_output_channels(self) -> int:
        """Channels predicted per grid node (one frame of every target)."""
        return sum(self.variable_channels(v, 1) for v in self.target_variables)


# The official channel order is the catalogue's order within each kind.
_SURFACE = tuple(v for v in SURFACE_VARIABLES if v != PRECIPITATION_6HR)
_ATMOS = ATMOSPHERIC_VARIABLES
_FORCINGS = FORCING_VARIABLES
_STATICS = STATIC_VARIABLES
_PRECIP = (PRECIPITATION_6HR,)
_TARGETS = _SURFACE + _PRECIP + _ATMOS

TASK = TaskConfig(_TARGETS + _FORCINGS + _STATICS, _TARGETS, _FORCINGS, PRESSURE_LEVELS_37, "12h")
TASK_13 = dataclasses.replace(TASK, pressure_levels=PRESSURE_LEVELS_13)
TASK_13_PRECIP_OUT = dataclasses.replace(
    TASK_13, input_variables=_SURFACE + _ATMOS + _FORCINGS + _STATICS)

_M2G_FACTOR = 0.6180338738074472
PUBLISHED_MODELS: dict[str, tuple[ModelConfig, TaskConfig]] = {
    "GraphCast": (ModelConfig(0.25, 6, 512, 16, 1, 0.5999912857713345, _M2G_FACTOR), TASK),
    "GraphCast_small": (ModelConfig(1.0, 5, 512, 16, 1, 0.6, _M2G_FACTOR), TASK_13),
    "GraphCast_operational": (ModelConfig(0.25, 6, 512, 16, 1, 0.6, _M2G_FACTOR),
                              TASK_13_PRECIP_OUT),
}
