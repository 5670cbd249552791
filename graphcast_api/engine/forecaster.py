"""`Forecaster`: an official checkpoint + statistics → autoregressive GraphCast forecasts."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Container, Iterator
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from graphcast_api.engine import heap
from graphcast_api.engine.checkpoint import CheckPoint, load_checkpoint
from graphcast_api.engine.configs import TIME_STEP, ModelConfig, TaskConfig
from graphcast_api.engine.forcings import add_forcings
from graphcast_api.engine.graph import load_or_build_graphs
from graphcast_api.engine.network import (
    DECODE_CHUNK_NODES,
    ENCODE_CHUNK_NODES,
    ROW_BLOCK,
    GraphCastNetwork,
)
from graphcast_api.engine.normalization import (
    normalized_stack,
    unstack,
)
from graphcast_api.engine.stats import NormalizationStats, load_stats
from graphcast_api.settings import PRECISIONS, DeviceUnavailable
from graphcast_contract.files import file_sha256
from graphcast_contract.model_spec import global_grid
from graphcast_contract.variables import ATMOSPHERIC_VARIABLES
from graphcast_contract.wire import all_finite

# The dimension order of every variable the engine stacks and returns (each has those it
# needs): normalization flattens a variable's channels in its own dimension order.
DIMS = ("batch", "time", "level", "lat", "lon")


class ForecastInputError(ValueError):
    """The input dataset does not fit the model (variables, grid, levels, times)."""


def default_device() -> str:
    """'cuda' when a CUDA GPU is usable, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> None:
    """DeviceUnavailable unless this host can run on `device` (cpu, cuda or cuda:N); cheap,
    so that a process can check before it reads a checkpoint."""
    if not device.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {device!r} requested but no CUDA GPU is usable by "
                                "this torch")
    index, count = torch.device(device).index, torch.cuda.device_count()
    if index is not None and index >= count:
        raise DeviceUnavailable(f"device {device!r} requested but this host has {count} "
                                "CUDA GPU(s)")


def default_precision(device: str) -> str:
    """bf16 where the hardware has fast bf16 matrix products (AMX/AVX512-BF16, CUDA), else fp32.

    Both stay within their tolerances against the official fp32 outputs (see README); bf16
    is several times faster where the hardware supports it.
    """
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "fp32"
    return "bf16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "fp32"


class Forecaster:
    """GraphCast with its checkpoint, statistics, graphs and network ready to run.

    `checkpoint_file` and `checkpoint_sha256` say which file the weights came from (set by
    `from_files`; None for weights built in memory): the provenance of every forecast.
    """

    checkpoint_file: str | None = None
    checkpoint_sha256: str | None = None

    def __init__(self, checkpoint: CheckPoint, stats: NormalizationStats, *, name: str,
                 precision: str | None = None, device: str | None = None,
                 cache_dir: Path | None = None, compile: bool | None = None,
                 products: str | None = None,
                 decode_chunk_nodes: int = DECODE_CHUNK_NODES,
                 encode_chunk_nodes: int = ENCODE_CHUNK_NODES,
                 row_block: int = ROW_BLOCK, edge_terms: str | None = None) -> None:
        self.device = device or default_device()
        self.precision = precision or default_precision(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; "
                             f"use {' or '.join(PRECISIONS)}")
        check_device(self.device)
        self.name = name
        self.description, self.license = checkpoint.description, checkpoint.license
        self.model_config: ModelConfig = checkpoint.model_config
        self.task_config: TaskConfig = checkpoint.task_config
        self.stats = stats
        grid = global_grid(self.model_config.resolution)  # latitudes ascending
        self.latitudes = grid.latitudes().astype(np.float32)
        self.longitudes = grid.longitudes().astype(np.float32)
        start = time.perf_counter()
        self.graphs = load_or_build_graphs(self.model_config, self.latitudes, self.longitudes,
                                           cache_dir)
        graphs_s = time.perf_counter() - start
        dtype = getattr(torch, PRECISIONS[self.precision])
        self.network = GraphCastNetwork(checkpoint.params, self.graphs, self.model_config,
                                        dtype, self.device, compile,
                                        products, decode_chunk_nodes=decode_chunk_nodes,
                                        encode_chunk_nodes=encode_chunk_nodes,
                                        row_block=row_block, edge_terms=edge_terms)
        # Where set-up time went (seconds): graphs built or loaded; static parts and packing.
        self.setup_times = {"graphs_s": graphs_s,
                            "network_s": time.perf_counter() - start - graphs_s}
        self.products = self.network.products  # the dense-product back end in use

    @classmethod
    def from_files(cls, checkpoint: Path, stats_dir: Path, *, precision: str | None = None,
                   device: str | None = None, cache_dir: Path | None = None,
                   compile: bool | None = None, products: str | None = None,
                   decode_chunk_nodes: int = DECODE_CHUNK_NODES,
                   encode_chunk_nodes: int = ENCODE_CHUNK_NODES,
                   row_block: int = ROW_BLOCK, edge_terms: str | None = None) -> "Forecaster":
        """Load an official checkpoint `.npz` and a directory with the three stats files.

        cache_dir: where built graphs are kept (None: settings.default_cache_dir());
        compile: torch.compile the network (None: network._compile_by_default);
        products: dense-product back end, one of configs.PRODUCTS (None: network.default_products).
        decode_chunk_nodes, encode_chunk_nodes, row_block: see GraphCastNetwork (the
        defaults suit every model); edge_terms: "stored" (faster) or "recomputed"
        (grid2mesh/mesh2grid static edge terms per step: less memory; None:
        network.default_edge_terms, i.e. stored unless their table passes 2 GiB).
        """
        loaded = load_checkpoint(Path(checkpoint))
        stem = Path(checkpoint).stem
        name = stem.split(" - ")[0] if " - " in stem else stem
        forecaster = cls(loaded, load_stats(Path(stats_dir), loaded.task_config), name=name,
                         precision=precision, device=device, cache_dir=cache_dir,
                         compile=compile, products=products,
                         decode_chunk_nodes=decode_chunk_nodes,
                         encode_chunk_nodes=encode_chunk_nodes, row_block=row_block,
                         edge_terms=edge_terms)
        forecaster.checkpoint_file = Path(checkpoint).name
        forecaster.checkpoint_sha256 = file_sha256(checkpoint)
        return forecaster

    def forecast(self, inputs: xr.Dataset, steps: int,
                 forcings: xr.Dataset | None = None) -> xr.Dataset:
        """Roll the model out `steps` × 6 h from two input frames: all steps in one dataset.

        inputs: dims (batch, time=2, [level], lat, lon), statics (lat, lon), coordinate
        `datetime` (batch, time); forcing variables may be absent (computed). forcings: the
        forcing variables at the target times (optional; computed from the valid times).
        Returns float32 predictions (batch, time=steps, [level], lat, lon) with `time` = lead
        time after the last input and `datetime` = valid time. It holds every step's frame
        (0.95 GB each at 0.25° and 37 levels): a caller that needs only part of each step
        should use `rollout`.
        """
        whole: xr.Dataset | None = None
        leads, valid = [], []
        for step, prediction in enumerate(self.rollout(inputs, steps, forcings)):
            if whole is None:  # arrays for all steps: frames concatenated would be held twice
                whole = xr.Dataset(
                    {name: (value.dims, np.empty((value.shape[0], steps, *value.shape[2:]),
                                                 np.float32))
                     for name, value in sorted(prediction.data_vars.items())},
                    coords={k: v for k, v in prediction.coords.items()
                            if k in ("lat", "lon", "level")})
            for name, value in prediction.data_vars.items():
                whole[name].values[:, step] = value.values[:, 0]
            leads.append(prediction["time"].values)
            valid.append(prediction["datetime"].values)
            del prediction
        return whole.assign_coords(time=np.concatenate(leads),
                                   datetime=(("batch", "time"), np.concatenate(valid, axis=1)))

    def rollout(self, inputs: xr.Dataset, steps: int, forcings: xr.Dataset | None = None, *,
                overwrite_inputs: bool = False) -> Iterator[xr.Dataset]:
        """Each step's prediction in turn: float32 (batch, time=1, [level], lat, lon), with
        the lead time and valid time as in `forecast`.

        Only the step being yielded is held: a caller that keeps what it needs of each step
        (the service keeps its sites) does not hold the whole rollout. The inputs are
        checked here, before the first step.

        overwrite_inputs: the caller hands its input arrays over and will not read them
        again, so the rollout rolls them in place from the first step (those that are
        writable and share memory with no other variable) instead of copying them first
        (1.9 GB at 0.25° and 37 levels). Otherwise the caller's inputs are never written.
        """
        if steps < 1:
            raise ForecastInputError(f"steps must be at least 1, got {steps}")
        inputs = self._checked_inputs(inputs)
        handed = _overwritable_frames(inputs) if overwrite_inputs else set()
        return self._steps(inputs, self._target_forcings(inputs, steps, forcings), handed)

    def _steps(self, inputs: xr.Dataset, forcings: xr.Dataset,
               handed: set[str]) -> Iterator[xr.Dataset]:
        """The rollout; `handed`: the variables whose arrays the first step may overwrite."""
        template = self._target_template(inputs)
        residual_targets = [v for v in self.task_config.target_variables if v in inputs]
        # Each step, and the work between steps, reuse what the one before freed (heap.py).
        with (heap.reuse_freed_memory() if self.network.reuse_memory
              else contextlib.nullcontext()):
            for step in range(forcings.sizes["time"]):
                step_forcings = forcings.isel(time=[step])
                outputs = self.network(self._network_input(inputs, step_forcings))
                last = inputs[residual_targets].isel(time=-1, drop=True)
                prediction = unstack(outputs.cpu().numpy(), template, self.stats, last)
                del outputs, last  # freed as soon as used (0.95 GB each at 37 levels)
                # The first step's inputs are the caller's (but for those handed over); from
                # then on they are all ours to overwrite.
                inputs = self._next_inputs(inputs, prediction, step_forcings,
                                           set(inputs.data_vars) if step > 0 else handed)
                yield prediction.assign_coords(time=step_forcings["time"].values,
                                               datetime=step_forcings["datetime"])
                del prediction

    def grid_features(self, inputs: xr.Dataset, step_forcings: xr.Dataset) -> np.ndarray:
        """Normalised inputs and one step's forcings stacked per grid node [G, B, channels]
        (a view of a channel-major array: normalization.normalized_stack)."""
        return normalized_stack([inputs, step_forcings], self.stats, inputs.sizes["batch"])

    def first_step_features(self, inputs: xr.Dataset,
                            forcings: xr.Dataset | None = None) -> torch.Tensor:
        """The network's input for the first step of a rollout from `inputs`, as the rollout
        feeds it: a check or a profile of one step then runs the rollout's own kernels."""
        inputs = self._checked_inputs(inputs)
        step_forcings = self._target_forcings(inputs, 1, forcings).isel(time=[0])
        return self._network_input(inputs, step_forcings)

    # -- helpers -------------------------------------------------------------------------

    def _network_input(self, inputs: xr.Dataset, step_forcings: xr.Dataset) -> torch.Tensor:
        """One step's features, cast to the network's precision before the call (its encoder
        casts them first thing anyway), so that in bf16 the float32 features (0.75 GB at
        0.25°) are freed before the step, not held through it."""
        return torch.from_numpy(self.grid_features(inputs, step_forcings)).to(self.network.dtype)

    def _checked_inputs(self, inputs: xr.Dataset) -> xr.Dataset:
        """Validate and trim the inputs to the task's variables and levels; add forcings;
        each variable's dimensions in the order DIMS (a view: transposing copies nothing)."""
        task = self.task_config
        if "datetime" not in inputs.coords:
            raise ForecastInputError("inputs lack the 'datetime' coordinate (batch, time)")
        if inputs.sizes.get("time") != task.num_input_frames:
            raise ForecastInputError(f"inputs need {task.num_input_frames} time frames, "
                                     f"got {inputs.sizes.get('time', 0)}")
        self._check_grid(inputs)
        needed = [v for v in task.input_variables if v not in task.forcing_variables]
        missing = [v for v in needed if v not in inputs.data_vars]
        if missing:
            raise ForecastInputError(f"inputs lack variable(s): {', '.join(missing)}")
        inputs = inputs.assign_coords(lat=self.latitudes, lon=self.longitudes)
        inputs = add_forcings(inputs, task.forcing_variables)
        inputs = inputs[list(task.input_variables)]
        if "level" in inputs.dims:
            levels = inputs["level"].values.tolist()
            absent = [lv for lv in task.pressure_levels if lv not in levels]
            if absent:
                raise ForecastInputError(f"inputs lack pressure level(s) {absent}; the model "
                                         f"needs {list(task.pressure_levels)}")
            if levels != list(task.pressure_levels):  # selecting copies: only when needed
                inputs = inputs.sel(level=list(task.pressure_levels))
        if "batch" not in inputs.dims:
            raise ForecastInputError("inputs lack the 'batch' dimension")
        unknown = sorted(set(inputs.dims) - set(DIMS))
        if unknown:
            raise ForecastInputError(f"inputs have unknown dimension(s) {unknown}; "
                                     f"expected among {list(DIMS)}")
        inputs = inputs.transpose(*(d for d in DIMS if d in inputs.dims))
        if inputs["datetime"].dims != ("batch", "time"):
            raise ForecastInputError(f"inputs' 'datetime' has dimensions "
                                     f"{inputs['datetime'].dims}, expected (batch, time)")
        if np.any(np.diff(inputs["datetime"].values, axis=1) != TIME_STEP):
            raise ForecastInputError(f"input frames must be {_hours(TIME_STEP)} apart; their "
                                     f"datetimes are {_times(inputs['datetime'].values)}")
        _check_finite(inputs, "input")
        return inputs.astype(np.float32, copy=False)  # float32 inputs are not copied

    def _check_grid(self, data: xr.Dataset) -> None:
        """The dataset's lat/lon must be the model's native grid (lat ascending)."""
        for axis, expected in (("lat", self.latitudes), ("lon", self.longitudes)):
            if axis not in data.coords:
                raise ForecastInputError(f"dataset lacks the '{axis}' coordinate")
            values = np.asarray(data[axis].values, np.float64)
            if values.shape != expected.shape or not np.allclose(values, expected, atol=1e-4):
                raise ForecastInputError(
                    f"{axis} grid does not match the checkpoint's {self.model_config.resolution}° "
                    f"grid ({len(expected)} points from {expected[0]} to {expected[-1]}, "
                    f"ascending); got {values.size} points")

    def _target_forcings(self, inputs: xr.Dataset, steps: int,
                         forcings: xr.Dataset | None) -> xr.Dataset:
        """Forcings at the target times: the given ones where present, else computed."""
        last = inputs["datetime"].isel(time=-1).values
        valid = last[:, None] + np.arange(1, steps + 1) * TIME_STEP
        leads = np.arange(1, steps + 1) * TIME_STEP
        frame = xr.Dataset(coords={"lat": self.latitudes, "lon": self.longitudes,
                                   "time": leads, "datetime": (("batch", "time"), valid)})
        if forcings is not None and forcings.data_vars:
            self._check_grid(forcings)
            if forcings.sizes.get("time", 0) < steps:
                raise ForecastInputError(f"forcings cover {forcings.sizes.get('time', 0)} "
                                         f"step(s), {steps} needed")
            given = forcings.isel(time=slice(0, steps))
            self._check_forcing_times(given, frame)
            present = [v for v in self.task_config.forcing_variables if v in given.data_vars]
            _check_finite(given[present], "forcing")
            frame = frame.assign({v: given[v].variable for v in present})
        frame = add_forcings(frame, self.task_config.forcing_variables)
        return frame[list(self.task_config.forcing_variables)].astype(np.float32)

    @staticmethod
    def _check_forcing_times(given: xr.Dataset, frame: xr.Dataset) -> None:
        """The given forcings are taken by position: their valid times (`datetime`), or
        without those their lead times (`time`), must be the target times of `frame`, the
        6 h steps after the last input."""
        for name, kind in (("datetime", "M"), ("time", "m")):
            if name in given.coords and given[name].dtype.kind == kind:
                if bool((given[name].variable != frame[name].variable).any()):
                    raise ForecastInputError(
                        f"forcings' {name} {_times(given[name].values)} are not the target "
                        f"times {_times(frame[name].values)}: the {_hours(TIME_STEP)} steps "
                        "after the last input")
                return

    def _target_template(self, inputs: xr.Dataset) -> xr.Dataset:
        """Dataset with one time step of every target variable (values unused)."""
        batch, num_lat, num_lon = inputs.sizes["batch"], len(self.latitudes), len(self.longitudes)
        variables = {}
        for name in self.task_config.target_variables:
            if name in ATMOSPHERIC_VARIABLES:
                shape = (batch, 1, len(self.task_config.pressure_levels), num_lat, num_lon)
                dims = DIMS
            else:
                shape, dims = (batch, 1, num_lat, num_lon), ("batch", "time", "lat", "lon")
            variables[name] = (dims, np.empty(shape, np.float32))
        coords = {k: inputs.coords[k] for k in ("lat", "lon", "level") if k in inputs.coords}
        return xr.Dataset(variables, coords=coords)

    @staticmethod
    def _next_inputs(inputs: xr.Dataset, prediction: xr.Dataset, step_forcings: xr.Dataset,
                     in_place: Container[str]) -> xr.Dataset:
        """Drop the oldest frame; append the prediction and this step's forcings as newest.

        in_place: the variables whose arrays are overwritten (those that are the rollout's,
        not the caller's), so that two copies of the inputs (1.9 GB each at 37 levels) are
        never held; the others are copied.
        """
        updated = {}
        for name, old in inputs.data_vars.items():
            if "time" not in old.dims:
                continue
            source = prediction if name in prediction else step_forcings
            axis = old.dims.index("time")
            frames = np.moveaxis(old.values if name in in_place else np.empty_like(old.values),
                                 axis, 0)
            frames[:-1] = np.moveaxis(old.values, axis, 0)[1:]
            frames[-1:] = np.moveaxis(source[name].transpose(*old.dims).values, axis, 0)
            updated[name] = (old.dims, np.moveaxis(frames, 0, axis))
        datetime = inputs["datetime"].values
        shifted = np.concatenate([datetime[:, 1:], datetime[:, -1:] + TIME_STEP], axis=1)
        return inputs.assign(updated).assign_coords(datetime=(("batch", "time"), shifted))


def _check_finite(data: xr.Dataset, kind: str) -> None:
    """ForecastInputError naming the first variable that holds NaN or an infinity: one pass
    per variable, in pieces (graphcast_contract.wire.all_finite), no copy of a contiguous or
    transposed array."""
    for name, value in data.data_vars.items():
        if not all_finite(value.values.ravel(order="K")):
            raise ForecastInputError(f"{kind} variable {name!r} holds NaN or infinite values")


def _hours(step: np.timedelta64) -> str:
    """A time step as '6 h'."""
    return f"{step // np.timedelta64(1, 'h')} h"


def _times(values: np.ndarray) -> str:
    """Valid times (to the minute) or lead times (hours) for a message: the first batch
    member's, at most six."""
    first = np.asarray(values).reshape(-1, np.shape(values)[-1])[0][:6]
    if first.dtype.kind == "M":
        return ", ".join(np.datetime_as_string(first, unit="m"))
    return ", ".join(f"{hours:g} h" for hours in first / np.timedelta64(1, "h"))


def _overwritable_frames(inputs: xr.Dataset) -> set[str]:
    """The time-dependent variables whose arrays can be rolled in place: writable (not a
    read-only buffer or a broadcast), and overlapping no other variable's array, which
    writing them would change."""
    arrays = {name: value.values for name, value in inputs.data_vars.items()
              if "time" in value.dims}
    return {name for name, array in arrays.items()
            if array.flags.writeable and not any(np.may_share_memory(array, other)
                                                 for key, other in arrays.items() if key != name)}
