"""Helpers of the API service tests: servers on loopback, request payloads, a stand-in.

`serve_command` runs the real command (`python -m graphcast_api serve`); `serve_in_thread`
runs uvicorn in this process for tests that need a special model or special limits (e.g. a
slow stand-in to fill the queue), `serve_watched` too, with a QueueWatch on its queue that
tests wait on instead of sleeping.
"""
from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import uvicorn
import xarray as xr

from graphcast_api.engine.configs import ModelConfig
from graphcast_api.service.app import ServiceLimits, create_app
from graphcast_api.service.queue import ForecastQueue
from graphcast_contract.local_service import free_port, stop, wait_until_healthy
from graphcast_contract.wire import ARRAY_GROUPS, BinaryBody
from tests.paths import REFERENCE_DIR
from tests.subprocess_env import clean_environment

PROJECT_ROOT = REFERENCE_DIR.parent.parent.parent
INIT_TIME = "2022-01-01T06:00:00Z"
STARTUP_TIMEOUT_S = 120
WAIT_TIMEOUT_S = 60  # for a state the service reaches at once unless it is broken


@contextmanager
def serve_command(args: list[str], env: dict[str, str] | None = None, wait: bool = True,
                  output: Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `python -m graphcast_api serve ARGS` on a free loopback port; yields (url, process).

    The command gets a clean environment (tests/subprocess_env.py) plus `env`. Its output
    (stdout and stderr) goes to a pipe the caller reads (`process.communicate()`), or, for a
    server that outlives its first requests, to the file `output`: nobody reads the pipe of
    such a server, which would block once the pipe's buffer (64 KiB) is full of access lines.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(output, "w") if output is not None else contextlib.nullcontext() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "graphcast_api", "serve", "--port", str(port), *args],
            cwd=PROJECT_ROOT, env=clean_environment(**(env or {})),
            stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            if wait:
                try:
                    wait_until_healthy(url, STARTUP_TIMEOUT_S, process)
                except (RuntimeError, TimeoutError) as error:
                    if output is None:
                        raise
                    tail = output.read_text()[-4000:]
                    raise RuntimeError(f"{error}; its output ends:\n{tail}") from None
            yield url, process
        finally:
            stop(process)


@contextmanager
def serve_in_thread(model, limits: ServiceLimits | None = None) -> Iterator[str]:
    """Serve `model` with uvicorn in a thread of this process; yields the base URL."""
    with serve_asgi(create_app(limits or ServiceLimits(), model)) as url:
        yield url


@contextmanager
def serve_watched(model, limits: ServiceLimits) -> Iterator[tuple[str, QueueWatch]]:
    """`serve_in_thread`, with a QueueWatch on the service's queue; yields (URL, watch)."""
    app = create_app(limits, model)
    watch = QueueWatch(app.state.queue)
    with serve_asgi(app) as url:
        yield url, watch


class QueueWatch:
    """Counts what the forecasts reach in a service's ForecastQueue (its `slot` and `run`
    wrapped): a slot taken (`admitted`), then, the body read and decoded, the model's queue
    (`waiting_for_model`, in the order the model serves them)."""

    def __init__(self, queue: ForecastQueue) -> None:
        self.admitted = 0
        self.waiting_for_model = 0
        slot, run = queue.slot, queue.run

        @asynccontextmanager
        async def counted_slot() -> AsyncIterator[float]:
            async with slot() as deadline:
                self.admitted += 1
                yield deadline

        async def counted_run(job, deadline: float, still_wanted):
            self.waiting_for_model += 1
            return await run(job, deadline, still_wanted)

        queue.slot, queue.run = counted_slot, counted_run


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after WAIT_TIMEOUT_S."""
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_TIMEOUT_S} s: {what}")
        time.sleep(0.01)


@contextmanager
def serve_asgi(app) -> Iterator[str]:
    """Serve an ASGI `app` (the service's, possibly wrapped) with uvicorn in a thread on
    loopback; yields the base URL once `/health` answers 200."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, STARTUP_TIMEOUT_S)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class SlowPersistence:
    """A stand-in model: persistence of the last input frame, taking `seconds` per forecast,
    and, given a `gate`, not finishing one before the test sets it.

    Same interface and grid as the reference checkpoint; used where only the queueing,
    not the forecast, is under test.
    """

    name = "slow-persistence"
    description = "stand-in model for queue tests"
    license = "none"
    precision = "fp32"
    device = "cpu"

    def __init__(self, seconds: float, gate: threading.Event | None = None) -> None:
        reference = xr.load_dataset(REFERENCE_DIR / "inputs.nc", decode_timedelta=True)
        self.seconds = seconds
        self.gate = gate
        self.latitudes = reference.lat.values
        self.longitudes = reference.lon.values
        facts = json.loads((REFERENCE_DIR / "facts.json").read_text())
        self.task_config = SimpleNamespace(**facts["task_config"])
        self.calls: list[tuple[float, np.datetime64]] = []  # (start, init time)

    def rollout(self, inputs: xr.Dataset, steps: int, forcings=None, *,
                overwrite_inputs: bool = False) -> Iterator[xr.Dataset]:
        self.calls.append((time.monotonic(), inputs.datetime.values[0, -1]))
        time.sleep(self.seconds)
        if self.gate is not None and not self.gate.wait(WAIT_TIMEOUT_S):
            raise TimeoutError("the test never opened the gate")
        last = inputs[self.task_config.target_variables].isel(time=[-1])
        return (last.assign_coords(time=[step * np.timedelta64(6, "h")])
                for step in range(1, steps + 1))


def encode(array: np.ndarray) -> dict:
    """An array in the contract's encoding."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"dtype": "float32", "shape": list(data.shape),
            "data": base64.b64encode(data.tobytes()).decode()}


def reference_inputs() -> xr.Dataset:
    """The reference set's two input frames (init 2022-01-01T06:00)."""
    return xr.load_dataset(REFERENCE_DIR / "inputs.nc", decode_timedelta=True)


def reference_request(sites: list[dict] | None = None, variables: list[dict] | None = None,
                      lead_hours: list[int] | None = None) -> dict:
    """A valid forecast request built from the reference inputs."""
    inputs = reference_inputs()
    surface = ["2m_temperature", "mean_sea_level_pressure", "10m_v_component_of_wind",
               "10m_u_component_of_wind", "total_precipitation_6hr"]
    atmospheric = ["temperature", "geopotential", "u_component_of_wind",
                   "v_component_of_wind", "vertical_velocity", "specific_humidity"]
    return {
        "init_time": INIT_TIME,
        "grid": {"n_lat": 19, "n_lon": 36, "lat_first": -90.0, "lat_step": 10.0,
                 "lon_first": 0.0, "lon_step": 10.0},
        "pressure_levels": [int(level) for level in inputs.level.values],
        "inputs": {name: encode(inputs[name].isel(batch=0).values)
                   for name in surface + atmospheric},
        "static": {name: encode(inputs[name].values)
                   for name in ("geopotential_at_surface", "land_sea_mask")},
        "sites": sites or [{"name": "Paris", "latitude": 48.8566, "longitude": 2.3522}],
        "variables": variables or [{"name": "2m_temperature"},
                                   {"name": "temperature", "level": 850}],
        "lead_hours": lead_hours or [6, 12, 18, 24],
    }


def reference_binary_body(request: dict) -> BinaryBody:
    """`request` (a `reference_request`, its arrays the reference inputs) as a binary body."""
    inputs = reference_inputs()
    arrays = {"inputs": {name: inputs[name].isel(batch=0).values for name in request["inputs"]},
              "static": {name: inputs[name].values for name in request["static"]}}
    fields = {key: value for key, value in request.items() if key not in ARRAY_GROUPS}
    return BinaryBody(fields, arrays)


COARSE_OPERATIONAL = ModelConfig(  # GraphCast_operational's task on a 10-degree grid
    resolution=10.0, mesh_size=2, latent_size=32, gnn_msg_steps=2, hidden_layers=1,
    radius_query_fraction_edge_length=0.6,
    mesh2grid_edge_normalization_factor=0.6180338738074472)


def operational_serve_args(checkpoint: Path, stats_dir: Path) -> list[str]:
    """`serve` options for the coarse operational checkpoint: fp32 on the CPU."""
    return ["--checkpoint", str(checkpoint), "--stats-dir", str(stats_dir),
            "--precision", "fp32", "--device", "cpu", "--queue-wait-s", "120"]
