"""Turn a `POST /v1/forecast` body, JSON or binary (graphcast_contract.wire), into the
engine's inputs, checking it against the model.

Every problem raises `RequestError` with the HTTP status and a message that names it
(the field path, what was expected, what came).
"""
from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import numpy as np
import pybase64
import xarray as xr
from pydantic import ValidationError

from graphcast_api.service import model_card
from graphcast_api.service.model_card import Forecaster
from graphcast_api.service.schemas import (
    BinaryArray,
    BinaryForecastHeader,
    EncodedArray,
    ForecastRequest,
    Grid,
)
from graphcast_api.settings import (
    DEFAULT_MAX_SITE_NAME_CHARS,
    DEFAULT_MAX_SITES,
    DEFAULT_MAX_VALUES,
    ENV,
)
from graphcast_contract.cycles import INPUT_TIMES_HOURS, MAX_LEAD_HOURS, STEP_HOURS, as_utc
from graphcast_contract.request import site_name_problem
from graphcast_contract.wire import ArraySlot, WireError, array_from_bytes, data_size, slot_bytes

Request = TypeVar("Request", bound=ForecastRequest)
MAX_LISTED_ERRORS = 5
# init_time range: forcings need datetime64[ns] (which wraps past 2262) and a sane calendar.
EARLIEST_INIT_TIME = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST_INIT_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)
# Commas and opening brackets (check_json_marks) of a site: its `{`, the two commas between
# its members and the one after it, plus one per character of its name (a printable name may
# be all commas); of the rest of a request, with room (variables, leads, levels, grid, arrays).
SITE_JSON_MARKS = 4
OTHER_JSON_MARKS = 10_000


@dataclass(frozen=True)
class RequestCaps:
    """What one forecast may ask for; they bound the size of the reply."""

    max_sites: int = DEFAULT_MAX_SITES
    max_site_name_chars: int = DEFAULT_MAX_SITE_NAME_CHARS
    max_values: int = DEFAULT_MAX_VALUES  # sites x variables x lead times

    @property
    def max_json_marks(self) -> int:
        """The most commas and opening brackets a request within these caps holds."""
        return (self.max_sites * (SITE_JSON_MARKS + self.max_site_name_chars)
                + OTHER_JSON_MARKS)


class RequestError(ValueError):
    """A request the service refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class DecodedRequest:
    """A checked request: the engine inputs and what to extract from the forecast."""

    request: ForecastRequest
    init_time: datetime  # timezone-aware, UTC
    inputs: xr.Dataset  # (batch=1, time=2, [level,] lat, lon) + statics (lat, lon)

    @property
    def steps(self) -> int:
        """Model steps needed to reach the longest lead time."""
        return max(self.request.lead_hours) // STEP_HOURS


def decode_forecast_request(body: bytes | bytearray, model: Forecaster,
                            caps: RequestCaps = RequestCaps()) -> DecodedRequest:
    """Parse, check and decode the JSON `body` for `model`; RequestError on any problem.

    The cheap checks come first; the returned request keeps no base64 text (only the
    decoded arrays), so a request waiting for the model holds about 0.75x its body."""
    request = parse_body(body, ForecastRequest, caps)
    init_time = check_request(request, model, caps)
    arrays = {where: decode_array(where, encoded, shape)
              for where, encoded, shape in expected_arrays(request, model)}
    return decoded_request(request, model, init_time, arrays)


@dataclass(frozen=True)
class BinaryPlan:
    """A checked binary header: the request and where each of its arrays lies."""

    request: BinaryForecastHeader
    init_time: datetime
    slots: list[ArraySlot]
    data_bytes: int


def check_binary_header(header: bytes, model: Forecaster, caps: RequestCaps = RequestCaps()
                        ) -> BinaryPlan:
    """Parse and check the JSON header of a binary body before its data is read: the same
    checks as a JSON request's, then the arrays' shapes and the tiling of their offsets."""
    request = parse_body(header, BinaryForecastHeader, caps)
    init_time = check_request(request, model, caps)
    slots = [ArraySlot(where, shape, encoded.offset)
             for where, encoded, shape in expected_arrays(request, model)]
    try:
        size = data_size(slots)
    except WireError as error:
        raise RequestError(400, str(error)) from None
    return BinaryPlan(request, init_time, slots, size)


def decode_binary_data(plan: BinaryPlan, data: np.ndarray, model: Forecaster) -> DecodedRequest:
    """The engine inputs over the data section `data` (views, no copy); 422 for NaN/inf."""
    arrays = {}
    for slot in plan.slots:
        try:
            arrays[slot.where] = array_from_bytes(slot_bytes(data, slot), slot.shape)
        except ValueError as error:
            raise RequestError(422, f"{slot.where}: {error}") from None
    return decoded_request(plan.request, model, plan.init_time, arrays)


def check_request(request: ForecastRequest, model: Forecaster, caps: RequestCaps) -> datetime:
    """Every check that needs no array data; the init time in UTC."""
    init_time = check_init_time(request.init_time)
    check_sites(request, caps)
    check_reply_size(request, caps)
    check_grid_and_levels(request, model)
    check_outputs(request, model)
    return init_time


def decoded_request(request: ForecastRequest, model: Forecaster, init_time: datetime,
                    arrays: dict[str, np.ndarray]) -> DecodedRequest:
    """The decoded request, keeping of the request only what is not an array."""
    inputs = build_inputs(request, model, init_time, arrays)
    return DecodedRequest(request.model_copy(update={"inputs": {}, "static": {}}), init_time,
                          inputs)


def check_init_time(init_time: datetime) -> datetime:
    """`init_time` in UTC; 422 outside [EARLIEST_INIT_TIME, LATEST_INIT_TIME), or beyond the
    years a datetime holds once in UTC."""
    try:
        when = as_utc(init_time)
    except ValueError:
        when = None
    if when is None or not EARLIEST_INIT_TIME <= when < LATEST_INIT_TIME:
        raise RequestError(422, f"init_time: {init_time.isoformat()} is outside the supported"
                                f" range {EARLIEST_INIT_TIME.date()} to"
                                f" {LATEST_INIT_TIME.date()}")
    return when


def check_sites(request: ForecastRequest, caps: RequestCaps) -> None:
    """422 for more sites than `caps.max_sites`, or a name too long or not printable."""
    if len(request.sites) > caps.max_sites:
        raise RequestError(422, f"sites: {len(request.sites)} sites, more than the limit of "
                                f"{caps.max_sites} ({ENV['max_sites'][0]})")
    for i, site in enumerate(request.sites):
        if len(site.name) > caps.max_site_name_chars:
            raise RequestError(422, f"sites.{i}.name: {len(site.name)} characters, more than "
                                    f"the limit of {caps.max_site_name_chars} "
                                    f"({ENV['max_site_name_chars'][0]})")
        problem = site_name_problem(site.name)
        if problem:
            raise RequestError(422, f"sites.{i}.name: {problem}")


def check_reply_size(request: ForecastRequest, caps: RequestCaps) -> None:
    """422 when sites x variables x lead times exceeds `caps.max_values`."""
    values = len(request.sites) * len(request.variables) * len(request.lead_hours)
    if values > caps.max_values:
        raise RequestError(422, f"sites x variables x lead_hours: {values} values, more than "
                                f"the limit of {caps.max_values} per reply "
                                f"({ENV['max_values'][0]})")


def parse_body(body: bytes | bytearray, schema: type[Request], caps: RequestCaps) -> Request:
    """The request (or binary header) model; 400 when `body` is not JSON, 422 when its
    structure is wrong or, checked first, it has more values than `caps` allow."""
    what = "binary header" if schema is BinaryForecastHeader else "body"
    check_json_marks(what, body, caps)
    try:
        return schema.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise RequestError(400, f"{what} is not valid JSON: {problems[0]['msg']}") from None
        raise RequestError(422, describe_validation_errors(problems)) from None


def check_json_marks(what: str, body: bytes | bytearray, caps: RequestCaps) -> None:
    """422, before parsing, when `body` has more commas and opening brackets than a request
    within `caps`. Parsing builds the whole tree before any length is checked, at 30-700
    bytes a value (with its validation error): 500,000 sites in 20 MB took 380 MB. Every
    value but the outermost comes first in its container (after its `[` or `{`) or after a
    comma, and base64 has none of these marks, so they bound the values (counted at about
    1 GB/s); a request a little over a cap still gets that cap's own message."""
    marks = body.count(b",") + body.count(b"[") + body.count(b"{")
    if marks > caps.max_json_marks:
        raise RequestError(422, f"{what}: {marks} commas and brackets, more than the limit of "
                                f"{caps.max_json_marks} that {caps.max_sites} sites of "
                                f"{caps.max_site_name_chars} characters allow "
                                f"({ENV['max_sites'][0]}, {ENV['max_site_name_chars'][0]})")


def describe_validation_errors(problems: list[Mapping]) -> str:
    """One line per problem, `field.path: message`, at most MAX_LISTED_ERRORS of them."""
    lines = []
    for problem in problems[:MAX_LISTED_ERRORS]:
        location = ".".join(str(part) for part in problem["loc"] if part != "body")
        lines.append(f"{location or 'body'}: {problem['msg']}")
    if len(problems) > MAX_LISTED_ERRORS:
        lines.append(f"... and {len(problems) - MAX_LISTED_ERRORS} more problems")
    return "; ".join(lines)


def check_grid_and_levels(request: ForecastRequest, model: Forecaster) -> None:
    """422 unless the request's grid and pressure levels are the model's."""
    expected = model_card.model_grid(model)
    if not same_grid(request.grid, expected):
        raise RequestError(422, f"grid: {request.grid.model_dump()} is not the model's grid"
                                f" {expected.model_dump()}")
    levels = model_card.pressure_levels(model)
    if request.pressure_levels != levels:
        raise RequestError(422, f"pressure_levels: expected the model's levels {levels},"
                                f" got {request.pressure_levels}")


def same_grid(a: Grid, b: Grid) -> bool:
    """Equal sizes and equal origins/steps to 1e-6 degrees."""
    return (a.n_lat, a.n_lon) == (b.n_lat, b.n_lon) and all(
        abs(getattr(a, f) - getattr(b, f)) <= 1e-6
        for f in ("lat_first", "lat_step", "lon_first", "lon_step"))


def check_outputs(request: ForecastRequest, model: Forecaster) -> None:
    """422 for unknown or duplicate variables, bad levels and bad lead times."""
    targets = {t.name: t for t in model_card.targets(model)}
    levels = model_card.pressure_levels(model)
    seen = set()
    for i, wanted in enumerate(request.variables):
        where = f"variables.{i}"
        if wanted.name not in targets:
            raise RequestError(422, f"{where}.name: unknown variable {wanted.name!r};"
                                    f" the model predicts {sorted(targets)}")
        if targets[wanted.name].atmospheric and wanted.level not in levels:
            raise RequestError(422, f"{where}.level: {wanted.name} needs a level among"
                                    f" {levels}, got {wanted.level}")
        if not targets[wanted.name].atmospheric and wanted.level not in (None, 0):
            raise RequestError(422, f"{where}.level: {wanted.name} is a single-level variable;"
                                    f" omit level or give 0, got {wanted.level}")
        key = (wanted.name, wanted.level or 0)
        if key in seen:
            raise RequestError(422, f"{where}: {wanted.name} level {key[1]} asked twice")
        seen.add(key)
    check_lead_hours(request.lead_hours)


def check_lead_hours(lead_hours: list[int]) -> None:
    """422 unless every lead is a positive multiple of the step, within the maximum, once."""
    step, limit = STEP_HOURS, MAX_LEAD_HOURS
    for i, lead in enumerate(lead_hours):
        if lead <= 0 or lead % step or lead > limit:
            raise RequestError(422, f"lead_hours.{i}: {lead} h is not a positive multiple of"
                                    f" {step} h up to {limit} h")
    if len(set(lead_hours)) != len(lead_hours):
        raise RequestError(422, f"lead_hours: duplicates in {lead_hours}")


def expected_arrays(request: ForecastRequest, model: Forecaster
                    ) -> list[tuple[str, EncodedArray | BinaryArray, tuple[int, ...]]]:
    """(field path, array object, the shape the model needs) of every array of the request,
    in the model's order; 422 for missing or unknown names and wrong shapes."""
    grid = (request.grid.n_lat, request.grid.n_lon)
    surface, atmospheric = model_card.dynamic_inputs(model)
    statics = model_card.static_inputs(model)
    check_names("inputs", request.inputs, surface + atmospheric)
    check_names("static", request.static, statics)
    n_levels = len(request.pressure_levels)
    wanted = ([("inputs", name, (2, *grid)) for name in surface]
              + [("inputs", name, (2, n_levels, *grid)) for name in atmospheric]
              + [("static", name, grid) for name in statics])
    arrays = []
    for group, name, shape in wanted:
        encoded = getattr(request, group)[name]
        if tuple(encoded.shape) != shape:
            raise RequestError(422, f"{group}.{name}.shape: expected {list(shape)}, "
                                    f"got {encoded.shape}")
        arrays.append((f"{group}.{name}", encoded, shape))
    return arrays


def build_inputs(request: ForecastRequest, model: Forecaster, init_time: datetime,
                 arrays: dict[str, np.ndarray]) -> xr.Dataset:
    """The engine's inputs: the decoded `arrays` (by field path) with time, level, lat/lon
    coordinates."""
    surface, atmospheric = model_card.dynamic_inputs(model)
    data_vars = {}
    for name in surface:
        data_vars[name] = (("batch", "time", "lat", "lon"), arrays[f"inputs.{name}"][None])
    for name in atmospheric:
        data_vars[name] = (("batch", "time", "level", "lat", "lon"),
                           arrays[f"inputs.{name}"][None])
    for name in model_card.static_inputs(model):
        data_vars[name] = (("lat", "lon"), arrays[f"static.{name}"])
    return xr.Dataset(data_vars, coords=input_coordinates(request, model, init_time))


def check_names(field: str, given: Mapping[str, object], expected: list[str]) -> None:
    """422 naming missing and unknown arrays of `field`."""
    missing = [name for name in expected if name not in given]
    unknown = sorted(set(given) - set(expected))
    if missing:
        raise RequestError(422, f"{field}: missing {missing} (the model needs {expected})")
    if unknown:
        raise RequestError(422, f"{field}: unknown {unknown} (the model needs {expected})")


def decode_array(where: str, encoded: EncodedArray, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 array of `encoded` (its shape already checked); 422 for bad base64 or
    NaN/inf. Decoded into a buffer of its own, so the array is writable: the forecast rolls
    it in place (Forecaster.rollout's overwrite_inputs)."""
    try:
        raw = pybase64.b64decode_as_bytearray(encoded.data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(422, f"{where}.data: undecodable base64 ({error})") from None
    try:
        return array_from_bytes(raw, shape)
    except ValueError as error:  # wrong byte count, or NaN/inf: the core's message says which
        raise RequestError(422, f"{where}.data: {error}") from None


def input_coordinates(request: ForecastRequest, model: Forecaster, init_time: datetime) -> dict:
    """Coordinates of the inputs: lead `time`, `datetime` (batch, time), level, lat, lon."""
    lead_times = [timedelta(hours=h) for h in INPUT_TIMES_HOURS]
    valid = [np.datetime64((init_time + lead).replace(tzinfo=None), "ns") for lead in lead_times]
    return {
        "time": np.array(lead_times, dtype="timedelta64[ns]"),
        "datetime": (("batch", "time"), np.array([valid], dtype="datetime64[ns]")),
        "level": np.array(request.pressure_levels, dtype=np.int32),
        "lat": np.asarray(model.latitudes, dtype=np.float32),
        "lon": np.asarray(model.longitudes, dtype=np.float32),
    }
