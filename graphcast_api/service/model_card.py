"""What a served model needs and produces: its grid, variable groups and units.

`Forecaster` is the interface the service expects of a model (`graphcast_api.engine`
implements it); `describe` turns one into the `/v1/model` body.
"""
from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import xarray as xr

from graphcast_api.service.schemas import Grid, Limits, ModelInfo, Provenance, Target
from graphcast_contract.cycles import INPUT_TIMES_HOURS, MAX_LEAD_HOURS, STEP_HOURS
from graphcast_contract.project import VERSION
from graphcast_contract.variables import ATMOSPHERIC_VARIABLES, STATIC_VARIABLES, UNITS


class Forecaster(Protocol):
    """A loaded GraphCast model (see `graphcast_api.engine.Forecaster`)."""

    name: str
    description: str
    license: str
    task_config: Any  # input_variables, target_variables, forcing_variables, pressure_levels
    precision: Any
    device: Any
    latitudes: np.ndarray  # ascending, degrees
    longitudes: np.ndarray  # from 0 eastwards, degrees

    def forecast(
        self, inputs: xr.Dataset, steps: int, forcings: xr.Dataset | None = None
    ) -> xr.Dataset:
        """Predictions (batch, time=steps, [level,] lat, lon) from two input frames."""


def model_grid(model: Forecaster) -> Grid:
    """The model's regular grid (latitudes ascending)."""
    lat = np.asarray(model.latitudes, dtype=np.float64)
    lon = np.asarray(model.longitudes, dtype=np.float64)
    return Grid(n_lat=lat.size, n_lon=lon.size, lat_first=float(lat[0]),
                lat_step=float(lat[1] - lat[0]), lon_first=float(lon[0]),
                lon_step=float(lon[1] - lon[0]))


def pressure_levels(model: Forecaster) -> list[int]:
    """The model's pressure levels, hPa, in array order."""
    return [int(level) for level in model.task_config.pressure_levels]


def dynamic_inputs(model: Forecaster) -> tuple[list[str], list[str]]:
    """(surface, atmospheric) input variables the client sends, in the model's order."""
    skipped = set(model.task_config.forcing_variables) | set(STATIC_VARIABLES)
    wanted = [v for v in model.task_config.input_variables if v not in skipped]
    return ([v for v in wanted if v not in ATMOSPHERIC_VARIABLES],
            [v for v in wanted if v in ATMOSPHERIC_VARIABLES])


def static_inputs(model: Forecaster) -> list[str]:
    """Static fields the model needs, in the model's order."""
    return [v for v in model.task_config.input_variables if v in STATIC_VARIABLES]


def targets(model: Forecaster) -> list[Target]:
    """Predicted variables with their units."""
    return [Target(name=v, unit=UNITS.get(v, "unknown"), atmospheric=v in ATMOSPHERIC_VARIABLES)
            for v in model.task_config.target_variables]


def provenance(model: Forecaster) -> Provenance:
    """What makes this model's values; a model not loaded from a file (tests' stand-ins)
    has no checkpoint file or hash."""
    return Provenance(checkpoint_file=getattr(model, "checkpoint_file", None),
                      checkpoint_sha256=getattr(model, "checkpoint_sha256", None),
                      precision=str(model.precision), device=str(model.device),
                      version=VERSION)


def full_request_base64_bytes(model: Forecaster) -> int:
    """Bytes of base64 text in a complete request for `model`: every input and static array."""
    grid = model_grid(model)
    cells = grid.n_lat * grid.n_lon
    surface, atmospheric = dynamic_inputs(model)
    sizes = ([2 * cells] * len(surface)
             + [2 * len(pressure_levels(model)) * cells] * len(atmospheric)
             + [cells] * len(static_inputs(model)))
    return sum(4 * math.ceil(4 * size / 3) for size in sizes)  # float32, base64


def describe(model: Forecaster, limits: Limits) -> ModelInfo:
    """The `/v1/model` body."""
    surface, atmospheric = dynamic_inputs(model)
    return ModelInfo(
        model=model.name, description=model.description, license=model.license,
        grid=model_grid(model), pressure_levels=pressure_levels(model),
        input_times_hours=list(INPUT_TIMES_HOURS), surface_inputs=surface,
        atmospheric_inputs=atmospheric, static_inputs=static_inputs(model),
        targets=targets(model), step_hours=STEP_HOURS, max_lead_hours=MAX_LEAD_HOURS,
        precision=str(model.precision), device=str(model.device),
        provenance=provenance(model), limits=limits,
    )
