"""A small GraphCast API that follows docs/api.md, for tests: real HTTP on loopback.

Its "model" is deterministic persistence: the forecast of a variable at lead time h is its
T0 input field, bilinearly interpolated at the site, plus 0.1 * h / 6. Knobs on the
`ContractApi` object make it fail in the ways the batch job must survive.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from graphcast_contract.interpolation import bilinear
from graphcast_contract.project import VERSION
from graphcast_contract.variables import UNITS
from graphcast_contract.wire import (
    ARRAY_GROUPS,
    BINARY_CONTENT_TYPE,
    PREFIX,
    ArraySlot,
    BinaryBodyReader,
    WireError,
    data_size,
    slot_bytes,
)

LEVELS = [50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000]
SURFACE = ["2m_temperature", "mean_sea_level_pressure", "10m_v_component_of_wind",
           "10m_u_component_of_wind", "total_precipitation_6hr"]
ATMOSPHERIC = ["temperature", "geopotential", "u_component_of_wind", "v_component_of_wind",
               "vertical_velocity", "specific_humidity"]
STATIC = ["geopotential_at_surface", "land_sea_mask"]
FAILURE_REQUEST_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # X-Request-ID of injected failures
PROVENANCE = {"checkpoint_file": "GraphCast_test.npz", "checkpoint_sha256": "0" * 64,
              "precision": "fp32", "device": "cpu", "version": VERSION}
GRID_10DEG = {"n_lat": 19, "n_lon": 36, "lat_first": -90.0, "lat_step": 10.0,
              "lon_first": 0.0, "lon_step": 10.0}


def persistence_value(t0_field: np.ndarray, latitude: float, longitude: float,
                      lead_hours: int, grid: dict[str, Any] = GRID_10DEG) -> float:
    """The test model's forecast at a site: T0 value (bilinear) + 0.1 per 6 h of lead."""
    at_site = bilinear(t0_field, np.array([latitude]), np.array([longitude]),
                       lat_first=grid["lat_first"], lat_step=grid["lat_step"],
                       lon_first=grid["lon_first"], lon_step=grid["lon_step"])
    return float(at_site[0]) + 0.1 * lead_hours / 6


class RequestRejected(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class ContractApi:
    """The server and its knobs (reset them between tests with `reset()`)."""

    def __init__(self, grid: dict[str, Any] = GRID_10DEG) -> None:
        self.grid = grid
        self.reset()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        """Default behaviour, once requests still in flight (from a timed-out client) end."""
        deadline = time.monotonic() + 10
        while getattr(self, "in_flight", 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.in_flight = 0
        self.token: str | None = None
        self.failures_before_success = 0   # answer failure_status this many times first
        self.failure_status = 500
        self.retry_after: str | None = None  # Retry-After header of those failures
        self.detail = "injected failure"   # their `detail`
        self.delay_s = 0.0                 # wait before answering a forecast
        self.gate: threading.Event | None = None  # if set: hold forecasts until it opens
        self.held = threading.Event()      # set once a forecast is held at the gate
        self.reply_mode = "ok"             # ok | malformed | nan | missing_entry
        # Called with each reply (/v1/model or forecast) before it is sent; may alter it.
        self.model_hook: Callable[[dict[str, Any]], None] | None = None
        self.reply_hook: Callable[[dict[str, Any]], None] | None = None
        self.provenance: dict[str, Any] = dict(PROVENANCE)
        self.surface_inputs = list(SURFACE)  # GraphCast_operational's lack precipitation
        self.calls: list[tuple[str, str]] = []

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def model_info(self) -> dict[str, Any]:
        targets = [{"name": n, "unit": UNITS[n], "atmospheric": n in ATMOSPHERIC}
                   for n in SURFACE + ATMOSPHERIC]
        return {"model": "GraphCast_test", "description": "persistence test model",
                "license": "test", "grid": self.grid, "pressure_levels": LEVELS,
                "input_times_hours": [-6, 0], "surface_inputs": self.surface_inputs,
                "atmospheric_inputs": ATMOSPHERIC, "static_inputs": STATIC,
                "targets": targets, "step_hours": 6, "max_lead_hours": 240,
                "precision": self.provenance["precision"], "device": "cpu",
                "provenance": dict(self.provenance)}

    def forecast(self, request: dict[str, Any], data: np.ndarray | None = None
                 ) -> dict[str, Any]:
        """Check the request (JSON; or a binary header and its data section `data`) against
        the contract and answer with the persistence model."""
        if request.get("grid") != self.grid or request.get("pressure_levels") != LEVELS:
            raise RequestRejected(422, "grid or pressure_levels differ from the model's")
        shape = (self.grid["n_lat"], self.grid["n_lon"])
        inputs = {}
        for name in self.surface_inputs + ATMOSPHERIC:
            want = (2, *shape) if name in SURFACE else (2, len(LEVELS), *shape)
            inputs[name] = _decode(request["inputs"], name, want, data)
        for name in STATIC:
            _decode(request["static"], name, shape, data)
        init = datetime.fromisoformat(request["init_time"].replace("Z", "+00:00"))
        forecasts = []
        for lead in request["lead_hours"]:
            for site in request["sites"]:
                for variable in request["variables"]:
                    name, level = variable["name"], variable.get("level", 0)
                    field = inputs[name][1] if not level else inputs[name][1, LEVELS.index(level)]
                    value = persistence_value(field, site["latitude"], site["longitude"],
                                              lead, self.grid)
                    valid = (init + timedelta(hours=lead)).astimezone(timezone.utc)
                    forecasts.append({
                        "site": site["name"], "latitude": site["latitude"],
                        "longitude": site["longitude"], "variable": name, "level": level,
                        "unit": UNITS[name], "lead_hours": lead,
                        "valid_time": valid.strftime("%Y-%m-%dT%H:%M:%SZ"), "value": value})
        if self.reply_mode == "nan":
            forecasts[5]["value"] = float("nan")
        if self.reply_mode == "missing_entry":
            forecasts.pop()
        return {"model": "GraphCast_test", "init_time": request["init_time"],
                "forecasts": forecasts, "timings": {"total_s": 0.0},
                "provenance": dict(self.provenance)}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                api.calls.append(("GET", self.path))
                if self.path == "/health":
                    return self._send(200, {"status": "ok", "model": "GraphCast_test"})
                if not self._authorised():
                    return
                if self.path == "/v1/model":
                    info = api.model_info()
                    if api.model_hook is not None:
                        api.model_hook(info)
                    return self._send(200, info)
                self._send(404, {"detail": f"no route {self.path}"})

            def do_POST(self) -> None:
                api.calls.append(("POST", self.path))
                api.in_flight += 1
                try:
                    self._post()
                except BrokenPipeError:  # the client gave up (timeout test)
                    pass
                finally:
                    api.in_flight -= 1

            def _post(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self._authorised():
                    return
                if self.path != "/v1/forecast":
                    return self._send(404, {"detail": f"no route {self.path}"})
                time.sleep(api.delay_s)
                if api.gate is not None:
                    api.held.set()
                    api.gate.wait(timeout=60)
                if api.failures_before_success > 0:
                    api.failures_before_success -= 1
                    headers = {"Retry-After": api.retry_after} if api.retry_after else {}
                    headers["X-Request-ID"] = FAILURE_REQUEST_ID  # as the real service does
                    return self._send(api.failure_status, {"detail": api.detail}, headers)
                try:
                    reply = api.forecast(*_read_body(self.headers.get("Content-Type"), body))
                except (json.JSONDecodeError, WireError) as exc:
                    return self._send(400, {"detail": f"body unreadable: {exc}"})
                except RequestRejected as exc:
                    return self._send(exc.status, {"detail": exc.detail})
                if api.reply_mode == "malformed":
                    return self._send_raw(200, b'{"model": "GraphCast_test", "forecasts": [')
                if api.reply_hook is not None:
                    api.reply_hook(reply)
                self._send(200, reply)

            def _authorised(self) -> bool:
                if api.token and self.headers.get("Authorization") != f"Bearer {api.token}":
                    self._send(401, {"detail": "missing or wrong bearer token"})
                    return False
                return True

            def _send(self, status: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(body).encode(), headers)

            def _send_raw(self, status: int, data: bytes,
                          headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _read_body(content_type: str | None, body: bytes) -> tuple[dict[str, Any], np.ndarray | None]:
    """(request or binary header, the binary body's data section or None for JSON)."""
    if content_type != BINARY_CONTENT_TYPE:
        return json.loads(body), None
    reader = BinaryBodyReader(max_header_bytes=len(body))
    reader.feed(body[:PREFIX.size])
    reader.feed(body[PREFIX.size:reader.head_bytes])
    header = json.loads(reader.header)
    slots = [ArraySlot(f"{group}.{name}", tuple(item["shape"]), item["offset"])
             for group in ARRAY_GROUPS for name, item in header[group].items()]
    reader.expect_data(data_size(slots))
    reader.feed(body[reader.head_bytes:])
    return header, reader.finish()


def _decode(arrays: dict[str, Any], name: str, shape: tuple[int, ...],
            data: np.ndarray | None) -> np.ndarray:
    if name not in arrays:
        raise RequestRejected(422, f"missing input {name}")
    item = arrays[name]
    if item.get("dtype") != "float32" or tuple(item.get("shape", ())) != shape:
        raise RequestRejected(422, f"{name}: expected float32 {list(shape)}")
    if data is None:
        raw: bytes | memoryview = base64.b64decode(item["data"])
    else:
        raw = slot_bytes(data, ArraySlot(name, shape, item["offset"]))
    values = np.frombuffer(raw, dtype="<f4")
    if values.size != int(np.prod(shape)):
        raise RequestRejected(422, f"{name}: data does not match its shape")
    if not np.all(np.isfinite(values)):
        raise RequestRejected(422, f"{name}: NaN or infinite values")
    return values.reshape(shape)
