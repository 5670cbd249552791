"""Prepare a forecast request: pick the cycle, read what the model needs, validate, encode.

The API's `GET /v1/model` says which variables, levels and grid the model takes; this
module extracts exactly those at T0 - 6 h and T0 (plus the static fields) from the ERA5
store and builds the `POST /v1/forecast` payload of docs/api.md.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from psycopg2.extensions import cursor as Cursor

from modules import era5_store, plausibility
from modules.era5_store import FieldKey, Grid
from modules.job_errors import ConfigError, InvalidDataError, InvalidReplyError, MissingDataError
from modules.sites import Site

CYCLE = timedelta(hours=6)
INPUT_OFFSETS = (-CYCLE, timedelta(0))  # the two input times relative to T0


def floor_to_cycle(when: datetime) -> datetime:
    """`when` (timezone-aware) in UTC, floored to the 6-hourly slot (00, 06, 12, 18 UTC)."""
    when = when.astimezone(timezone.utc)
    return when.replace(hour=when.hour - when.hour % 6, minute=0, second=0, microsecond=0)


def target_init_time(now: datetime, lag_days: int) -> datetime:
    """The cycle to forecast: `now` floored to its 6-hourly slot, minus `lag_days` ("J-6")."""
    return floor_to_cycle(now) - timedelta(days=lag_days)


def parse_init_time(text: str) -> datetime:
    """An ISO 8601 init time (UTC when no offset is given) on a 6-hourly slot."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--init-time {text!r} is not an ISO 8601 date and time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    when = when.astimezone(timezone.utc)
    if when != floor_to_cycle(when):
        raise ConfigError(f"--init-time {text!r} is not on a 6-hourly slot (00, 06, 12, 18 UTC)")
    return when


def earlier_cycles(init_time: datetime, count: int) -> list[datetime]:
    """The `count` cycles before `init_time`, oldest first."""
    return [init_time - CYCLE * k for k in range(count, 0, -1)]


def iso_utc(when: datetime) -> str:
    """`2022-01-01T06:00:00Z`."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Target:
    unit: str
    atmospheric: bool


@dataclass(frozen=True)
class ModelSpec:
    """What the served model needs and produces (from `GET /v1/model`)."""

    model: str
    grid: Grid
    pressure_levels: tuple[int, ...]
    surface_inputs: tuple[str, ...]
    atmospheric_inputs: tuple[str, ...]
    static_inputs: tuple[str, ...]
    targets: dict[str, Target]
    step_hours: int
    max_lead_hours: int

    @classmethod
    def from_reply(cls, reply: Any) -> "ModelSpec":
        """Parse a `/v1/model` reply; InvalidReplyError names what is wrong."""
        try:
            grid_info = reply["grid"]
            grid = Grid(int(grid_info["n_lat"]), int(grid_info["n_lon"]),
                        float(grid_info["lat_first"]), float(grid_info["lat_step"]),
                        float(grid_info["lon_first"]), float(grid_info["lon_step"]))
            if [int(h) for h in reply["input_times_hours"]] != [-6, 0]:
                raise InvalidReplyError("/v1/model: input_times_hours is not [-6, 0]; "
                                        "this job supplies exactly two inputs 6 h apart")
            targets = {t["name"]: Target(str(t["unit"]), bool(t["atmospheric"]))
                       for t in reply["targets"]}
            return cls(
                model=str(reply["model"]),
                grid=grid,
                pressure_levels=tuple(int(p) for p in reply["pressure_levels"]),
                surface_inputs=tuple(map(str, reply["surface_inputs"])),
                atmospheric_inputs=tuple(map(str, reply["atmospheric_inputs"])),
                static_inputs=tuple(map(str, reply["static_inputs"])),
                targets=targets,
                step_hours=int(reply["step_hours"]),
                max_lead_hours=int(reply["max_lead_hours"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidReplyError(f"/v1/model reply is incomplete or malformed "
                                    f"({type(exc).__name__}: {exc})") from None

    def input_keys(self) -> list[FieldKey]:
        """Every time-dependent input field as (variable, level), level 0 at the surface."""
        keys = [(name, era5_store.SURFACE) for name in self.surface_inputs]
        keys += [(name, level) for name in self.atmospheric_inputs
                 for level in self.pressure_levels]
        return keys

    def check_wanted(self, variables: tuple[tuple[str, int], ...],
                     lead_hours: tuple[int, ...]) -> None:
        """ConfigError unless the model forecasts these variables at these lead times."""
        for name, level in variables:
            target = self.targets.get(name)
            if target is None:
                raise ConfigError(f"variable {name!r} is not a target of {self.model} "
                                  f"(targets: {', '.join(self.targets)})")
            if target.atmospheric and level not in self.pressure_levels:
                raise ConfigError(f"variable {name!r} needs a level among "
                                  f"{list(self.pressure_levels)} (write {name}@850)")
            if not target.atmospheric and level:
                raise ConfigError(f"variable {name!r} is single-level; drop '@{level}'")
        for hours in lead_hours:
            if hours % self.step_hours or hours > self.max_lead_hours:
                raise ConfigError(f"lead time {hours} h is not a multiple of {self.step_hours} h "
                                  f"up to {self.max_lead_hours} h")


@dataclass(frozen=True)
class Snapshot:
    """The model inputs of one cycle, validated.

    `inputs[name]` is [2, n_lat, n_lon] (surface) or [2, n_levels, n_lat, n_lon]
    (atmospheric), time index 0 = T0 - 6 h, 1 = T0; `static[name]` is [n_lat, n_lon].
    """

    init_time: datetime
    inputs: dict[str, np.ndarray]
    static: dict[str, np.ndarray]


def _describe(key: FieldKey) -> str:
    variable, level = key
    return f"{variable} at {level} hPa" if level else variable


def _read_time(cur: Cursor, spec: ModelSpec, when: datetime) -> dict[FieldKey, np.ndarray]:
    keys = spec.input_keys()
    try:
        fields = era5_store.read_fields(cur, spec.grid, when, keys)
    except ValueError:  # a stored array of the wrong size does not reshape to the grid
        raise InvalidDataError(_wrong_size(cur, spec.grid, when)) from None
    if not fields:
        raise MissingDataError(f"no ERA5 snapshot at {iso_utc(when)} on the model grid "
                               f"{spec.grid.n_lat}x{spec.grid.n_lon}")
    missing = [key for key in keys if key not in fields]
    if missing:
        raise MissingDataError(f"ERA5 field {_describe(missing[0])} missing at {iso_utc(when)} "
                               f"({len(missing)} of {len(keys)} fields missing)")
    return fields


def _wrong_size(cur: Cursor, grid: Grid, when: datetime) -> str:
    cur.execute(
        "SELECT f.variable, f.level, octet_length(f.data) FROM era5_fields f"
        " JOIN era5_grids g USING (grid_id)"
        " WHERE g.n_lat = %s AND g.n_lon = %s AND f.valid_time = %s"
        "   AND octet_length(f.data) <> %s ORDER BY f.variable, f.level LIMIT 1",
        (grid.n_lat, grid.n_lon, when, 4 * grid.n_lat * grid.n_lon),
    )
    variable, level, size = cur.fetchone()
    return (f"ERA5 field {_describe((variable, level))} at {iso_utc(when)} holds {size} bytes, "
            f"not the {4 * grid.n_lat * grid.n_lon} of a {grid.n_lat}x{grid.n_lon} grid")


def _check_values(label: str, variable: str, field: np.ndarray) -> None:
    issue = plausibility.problem(variable, field)
    if issue:
        raise InvalidDataError(f"ERA5 field {label}: {issue}")


def extract_snapshot(cur: Cursor, spec: ModelSpec, init_time: datetime) -> Snapshot:
    """Read and validate the inputs of the cycle `init_time` from the ERA5 store.

    MissingDataError or InvalidDataError names the first offending field.
    """
    per_time = [_read_time(cur, spec, init_time + offset) for offset in INPUT_OFFSETS]
    static = era5_store.read_static(cur, spec.grid, spec.static_inputs)
    for name in spec.static_inputs:
        if name not in static:
            raise MissingDataError(f"static ERA5 field {name} missing on the model grid "
                                   f"{spec.grid.n_lat}x{spec.grid.n_lon}")
        _check_values(name, name, static[name])
    for fields, offset in zip(per_time, INPUT_OFFSETS):
        for key, field in fields.items():
            _check_values(f"{_describe(key)} at {iso_utc(init_time + offset)}", key[0], field)
    inputs = {name: np.stack([fields[(name, 0)] for fields in per_time])
              for name in spec.surface_inputs}
    for name in spec.atmospheric_inputs:
        inputs[name] = np.stack([np.stack([fields[(name, lev)] for lev in spec.pressure_levels])
                                 for fields in per_time])
    return Snapshot(init_time, inputs, static)


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """The contract's array object: little-endian float32 bytes in C order, base64."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"dtype": "float32", "shape": list(data.shape),
            "data": base64.b64encode(data.data).decode("ascii")}


def build_payload(spec: ModelSpec, snapshot: Snapshot, sites: list[Site],
                  variables: tuple[tuple[str, int], ...],
                  lead_hours: tuple[int, ...]) -> dict[str, Any]:
    """The `POST /v1/forecast` request body of docs/api.md."""
    grid = spec.grid
    return {
        "init_time": iso_utc(snapshot.init_time),
        "grid": {"n_lat": grid.n_lat, "n_lon": grid.n_lon, "lat_first": grid.lat_first,
                 "lat_step": grid.lat_step, "lon_first": grid.lon_first,
                 "lon_step": grid.lon_step},
        "pressure_levels": list(spec.pressure_levels),
        "inputs": {name: encode_array(array) for name, array in snapshot.inputs.items()},
        "static": {name: encode_array(array) for name, array in snapshot.static.items()},
        "sites": [{"name": s.name, "latitude": s.latitude, "longitude": s.longitude}
                  for s in sites],
        "variables": [{"name": name, "level": level} if level else {"name": name}
                      for name, level in variables],
        "lead_hours": list(lead_hours),
    }
