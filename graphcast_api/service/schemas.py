"""The JSON bodies of the HTTP contract (`docs/api.md`) as pydantic models.

These models give the OpenAPI document at `/docs` its field descriptions and examples, and
check the structure of requests. Checks against the served model (variables, levels, grid,
array shapes) live in `graphcast_api.service.request_parsing`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from graphcast_contract.cycles import INPUT_TIMES_HOURS, MAX_LEAD_HOURS, STEP_HOURS
from graphcast_contract.variables import (
    ATMOSPHERIC_VARIABLES,
    PRESSURE_LEVELS_13,
    STATIC_VARIABLES,
    SURFACE_VARIABLES,
    UNITS,
)

SMALL_LEVELS = list(PRESSURE_LEVELS_13)
ONE_DEGREE_GRID = {"n_lat": 181, "n_lon": 360, "lat_first": -90.0, "lat_step": 1.0,
                   "lon_first": 0.0, "lon_step": 1.0}


class _Strict(BaseModel):
    """Unknown fields and NaN/infinite numbers are rejected."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Grid(_Strict):
    """A regular global latitude/longitude grid; latitudes ascend from `lat_first`."""

    n_lat: int = Field(gt=1, description="Number of latitudes (181 at 1 degree).")
    n_lon: int = Field(gt=1, description="Number of longitudes (360 at 1 degree).")
    lat_first: float = Field(description="First (southernmost) latitude, degrees: -90.")
    lat_step: float = Field(gt=0, description="Latitude spacing, degrees (positive).")
    lon_first: float = Field(description="First longitude, degrees east: 0.")
    lon_step: float = Field(gt=0, description="Longitude spacing, degrees (positive).")

    model_config = ConfigDict(json_schema_extra={"examples": [ONE_DEGREE_GRID]})


class EncodedArray(_Strict):
    """An array as base64 of its little-endian float32 bytes in C (row-major) order."""

    dtype: Literal["float32"] = Field(description="Element type; only `float32` is accepted.")
    shape: list[int] = Field(description="Array shape, e.g. `[2, 13, 181, 360]`.")
    data: str = Field(description="Base64 of the little-endian float32 bytes in C order.")

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"dtype": "float32", "shape": [2, 2], "data": "AACAPwAAAEAAAEBAAACAQA=="}]
    })


class BinaryArray(_Strict):
    """An array of a binary body: its bytes lie at `offset` in the data section."""

    dtype: Literal["float32"] = Field(description="Element type; only `float32` is accepted.")
    shape: list[int] = Field(description="Array shape, e.g. `[2, 13, 721, 1440]`.")
    offset: int = Field(ge=0, description="Byte offset of its data in the data section.")


class Site(_Strict):
    """A place where forecast values are wanted."""

    name: str = Field(min_length=1, description="Site name, echoed in the response.")
    latitude: float = Field(ge=-90, le=90, description="Degrees north, in [-90, 90].")
    longitude: float = Field(description="Degrees east, any range (wrapped modulo 360).")

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"name": "Paris", "latitude": 48.8566, "longitude": 2.3522}]
    })


class VariableRequest(_Strict):
    """A target variable wanted; atmospheric variables need a pressure level."""

    name: str = Field(description="GraphCast long ERA5 name, e.g. `2m_temperature`.")
    level: int | None = Field(
        default=None,
        description="Pressure level in hPa for atmospheric variables; omit (or 0) otherwise.",
    )

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"name": "2m_temperature"}, {"name": "temperature", "level": 850}]
    })


class ForecastRequest(_Strict):
    """Two input frames (init_time - 6 h and init_time), static fields, sites and outputs."""

    init_time: datetime = Field(
        description="Time of the second input frame, ISO 8601 UTC (`...Z`); naive means UTC."
    )
    grid: Grid = Field(description="Grid of every array; must equal the model's grid.")
    pressure_levels: list[int] = Field(
        description="Levels (hPa) of the atmospheric arrays, in order; must equal the model's."
    )
    inputs: dict[str, EncodedArray] = Field(
        description="Every surface input as `[2, n_lat, n_lon]` and every atmospheric input as"
        " `[2, n_levels, n_lat, n_lon]` (time index 0: init_time - 6 h, 1: init_time).",
    )
    static: dict[str, EncodedArray] = Field(
        description="Every static field of the model (`/v1/model`) as `[n_lat, n_lon]`."
    )
    sites: list[Site] = Field(min_length=1, description="One or more sites.")
    variables: list[VariableRequest] = Field(
        min_length=1, description="Target variables wanted (see `targets` in `/v1/model`)."
    )
    lead_hours: list[int] = Field(
        min_length=1,
        description="Lead times in hours: positive multiples of `step_hours`, at most"
        " `max_lead_hours`, no duplicates.",
    )

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "init_time": "2022-01-01T06:00:00Z",
        "grid": ONE_DEGREE_GRID,
        "pressure_levels": SMALL_LEVELS,
        "inputs": {
            "2m_temperature": {"dtype": "float32", "shape": [2, 181, 360], "data": "..."},
            "temperature": {"dtype": "float32", "shape": [2, 13, 181, 360], "data": "..."},
        },
        "static": {
            "geopotential_at_surface": {"dtype": "float32", "shape": [181, 360], "data": "..."},
            "land_sea_mask": {"dtype": "float32", "shape": [181, 360], "data": "..."},
        },
        "sites": [{"name": "Paris", "latitude": 48.8566, "longitude": 2.3522}],
        "variables": [{"name": "2m_temperature"}, {"name": "temperature", "level": 850}],
        "lead_hours": [6, 12, 18, 24],
    }]})


class SiteForecast(BaseModel):
    """One forecast value: a site, a variable (and level) and a lead time."""

    site: str = Field(description="Site name from the request.")
    latitude: float = Field(description="Site latitude from the request, degrees north.")
    longitude: float = Field(description="Site longitude from the request, degrees east.")
    variable: str = Field(description="Target variable name.")
    level: int = Field(description="Pressure level in hPa, 0 for single-level variables.")
    unit: str = Field(description="Unit of `value` (ERA5 convention, e.g. `K`, `Pa`, `m s-1`).")
    lead_hours: int = Field(description="Hours after init_time.")
    valid_time: datetime = Field(description="init_time + lead_hours, UTC.")
    value: float = Field(description="Bilinear interpolation of the forecast at the site.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "site": "Paris", "latitude": 48.8566, "longitude": 2.3522,
        "variable": "2m_temperature", "level": 0, "unit": "K", "lead_hours": 6,
        "valid_time": "2022-01-01T12:00:00Z", "value": 281.37,
    }]})


class Timings(BaseModel):
    """Server-side durations of this forecast, seconds."""

    decode_s: float = Field(description="Receiving, parsing, checking and decoding the request.")
    inference_s: float = Field(description="Running the model (forcings and all steps).")
    interpolate_s: float = Field(description="Interpolating the forecast at the sites.")
    total_s: float = Field(description="From receiving the body to the response, incl. waiting.")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"decode_s": 0.21, "inference_s": 12.8, "interpolate_s": 0.001, "total_s": 13.1}]})


class Provenance(BaseModel):
    """What made the values: the checkpoint file, precision, device and project version."""

    checkpoint_file: str | None = Field(description="File name of the loaded checkpoint.")
    checkpoint_sha256: str | None = Field(description="SHA-256 of the checkpoint file, hex.")
    precision: str = Field(description="Arithmetic precision of inference, `fp32` or `bf16`.")
    device: str = Field(description="Device running inference, e.g. `cpu`, `cuda:0`.")
    version: str = Field(description="Version of the project serving the model.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "checkpoint_file": "GraphCast_small - ERA5 1979-2015 - resolution 1.0 - pressure "
                           "levels 13 - mesh 2to5 - precipitation input and output.npz",
        "checkpoint_sha256": "3f1c0d…", "precision": "bf16", "device": "cpu",
        "version": "1.0.0"}]})


class ForecastResponse(BaseModel):
    """Values at every site x variable x lead time."""

    model: str = Field(description="Name of the model that made the forecast.")
    init_time: datetime = Field(description="init_time of the request, UTC.")
    forecasts: list[SiteForecast] = Field(description="One entry per site x variable x lead.")
    timings: Timings = Field(description="Where the server spent the time, seconds.")
    provenance: Provenance = Field(description="Checkpoint, precision, device and version.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "GraphCast_small",
        "init_time": "2022-01-01T06:00:00Z",
        "forecasts": [{
            "site": "Paris", "latitude": 48.8566, "longitude": 2.3522,
            "variable": "2m_temperature", "level": 0, "unit": "K", "lead_hours": 6,
            "valid_time": "2022-01-01T12:00:00Z", "value": 281.37,
        }],
        "timings": {"decode_s": 0.21, "inference_s": 12.8, "interpolate_s": 0.001,
                    "total_s": 13.1},
        "provenance": {"checkpoint_file": "GraphCast_small.npz", "checkpoint_sha256": "3f1c0d…",
                       "precision": "bf16", "device": "cpu", "version": "1.0.0"},
    }]})


class Target(BaseModel):
    """A variable the model predicts."""

    name: str = Field(description="GraphCast long ERA5 name.")
    unit: str = Field(description="Unit of its values.")
    atmospheric: bool = Field(description="True when it has pressure levels.")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "2m_temperature", "unit": "K", "atmospheric": False}]})


class Limits(BaseModel):
    """What one forecast request may hold and ask for; beyond, 413 (body) or 422."""

    max_body_bytes: int = Field(description="Largest request body, bytes (413 beyond).")
    max_sites: int = Field(description="Most sites in one request.")
    max_site_name_chars: int = Field(description="Longest site name, printable characters.")
    max_values: int = Field(description="Most values in one reply: sites x variables x leads.")
    init_time_min: datetime = Field(description="Earliest init_time accepted, UTC.")
    init_time_max: datetime = Field(description="init_time must be before this, UTC.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "max_body_bytes": 63_000_000, "max_sites": 1000, "max_site_name_chars": 100,
        "max_values": 200_000, "init_time_min": "1900-01-01T00:00:00Z",
        "init_time_max": "2200-01-01T00:00:00Z"}]})


class ModelInfo(BaseModel):
    """What the served model needs and produces."""

    model: str = Field(description="Model name.")
    description: str = Field(description="Description stored in the checkpoint.")
    license: str = Field(description="Licence stored in the checkpoint.")
    grid: Grid = Field(description="The model's grid; requests must use exactly this grid.")
    pressure_levels: list[int] = Field(description="Pressure levels, hPa, in array order.")
    input_times_hours: list[int] = Field(description="Input frame times relative to init_time.")
    surface_inputs: list[str] = Field(description="Single-level inputs, `[2, n_lat, n_lon]`.")
    atmospheric_inputs: list[str] = Field(
        description="Inputs on pressure levels, `[2, n_levels, n_lat, n_lon]`."
    )
    static_inputs: list[str] = Field(description="Static fields, `[n_lat, n_lon]`.")
    targets: list[Target] = Field(description="Predicted variables with units.")
    step_hours: int = Field(description="Model time step, hours.")
    max_lead_hours: int = Field(description="Longest lead time a request may ask for, hours.")
    precision: str = Field(description="Arithmetic precision of inference, e.g. `fp32`.")
    device: str = Field(description="Device running inference, e.g. `cpu`, `cuda:0`.")
    provenance: Provenance = Field(description="Checkpoint, precision, device and version.")
    limits: Limits = Field(description="What one forecast request may hold and ask for.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "model": "GraphCast_small",
        "description": "GraphCast model at 1.0deg resolution, with 13 pressure levels...",
        "license": "The model weights are licensed under CC BY-NC-SA 4.0...",
        "grid": ONE_DEGREE_GRID,
        "pressure_levels": SMALL_LEVELS,
        "input_times_hours": list(INPUT_TIMES_HOURS),
        "surface_inputs": list(SURFACE_VARIABLES),
        "atmospheric_inputs": list(ATMOSPHERIC_VARIABLES),
        "static_inputs": list(STATIC_VARIABLES),
        "targets": [{"name": name, "unit": UNITS[name],
                     "atmospheric": name in ATMOSPHERIC_VARIABLES}
                    for name in (SURFACE_VARIABLES[0], ATMOSPHERIC_VARIABLES[0])],
        "step_hours": STEP_HOURS,
        "max_lead_hours": MAX_LEAD_HOURS,
        "precision": "bf16",
        "device": "cpu",
        "provenance": {"checkpoint_file": "GraphCast_small.npz", "checkpoint_sha256": "3f1c0d…",
                       "precision": "bf16", "device": "cpu", "version": "1.0.0"},
        "limits": {"max_body_bytes": 63_000_000, "max_sites": 1000, "max_site_name_chars": 100,
                   "max_values": 200_000, "init_time_min": "1900-01-01T00:00:00Z",
                   "init_time_max": "2200-01-01T00:00:00Z"},
    }]})


class Health(BaseModel):
    """Readiness of the service."""

    status: Literal["ok", "loading"] = Field(
        description="`ok` when forecasts can be served, `loading` while the model loads."
    )
    model: str | None = Field(default=None, description="Model name once loaded.")

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "model": "GraphCast_small"}, {"status": "loading"}]})


class ErrorDetail(BaseModel):
    """Every error response."""

    detail: str = Field(description="Message naming the problem.")
    request_id: str | None = Field(
        default=None, description="On 500 only: the id under which the server logged the"
        " error (also in the `X-Request-ID` header of every response).")

    model_config = ConfigDict(json_schema_extra={
        "examples": [{"detail": "inputs.temperature: missing input variable"}]
    })


class BinaryForecastHeader(ForecastRequest):
    """The JSON header of a binary forecast body: the request, with arrays given by offset."""

    inputs: dict[str, BinaryArray]  # type: ignore[assignment]
    static: dict[str, BinaryArray]  # type: ignore[assignment]
