"""The FastAPI application of the GraphCast API (contract: `docs/api.md`).

`create_app` takes the service limits; the model is set with `set_model` once loaded, so
that `/health` can answer `loading` meanwhile. Any object with the `Forecaster` interface
(`graphcast_api.service.model_card`) can be served.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import xarray as xr
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from graphcast_api.service import model_card
from graphcast_api.service.guards import BearerToken, BodySizeLimit
from graphcast_api.service.model_card import Forecaster
from graphcast_api.service.queue import ForecastQueue, QueueTimeout
from graphcast_api.service.request_parsing import (
    RequestError, decode_forecast_request, describe_validation_errors,
)
from graphcast_api.service.schemas import (
    ErrorDetail, ForecastRequest, ForecastResponse, Health, ModelInfo,
)
from graphcast_api.service.site_forecasts import site_forecasts
from graphcast_api.settings import DEFAULT_MAX_BODY_MB

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = DEFAULT_MAX_BODY_MB * 1024**2
LOADING_RETRY_AFTER_S = 10


@dataclass(frozen=True)
class ServiceLimits:
    """Limits of the service: body size (bytes), queue wait (s) and the optional token."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    queue_wait_s: float = 300.0
    token: str | None = None


class ServiceUnavailable(Exception):
    """503 with a Retry-After header."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


ERROR_RESPONSES = {
    status: {"model": ErrorDetail, "description": description}
    for status, description in {
        400: "The body is not valid JSON.",
        401: "A token is configured and the request lacks it or has a wrong one.",
        413: "The body is larger than the configured limit.",
        422: "Invalid content; `detail` names the field and the problem.",
        503: "Model not loaded yet, or the forecast queue did not free up in time"
             " (`Retry-After` header, seconds).",
    }.items()
}


def create_app(limits: ServiceLimits = ServiceLimits(), model: Forecaster | None = None) -> FastAPI:
    """The application; serves `model` now if given, else after `set_model`."""
    app = FastAPI(
        title="GraphCast API",
        version="1",
        description="Site forecasts from a self-hosted GraphCast model. Contract: docs/api.md."
                    " Arrays travel as base64 of little-endian float32 bytes in C order.",
    )
    app.state.model = model
    app.state.queue = ForecastQueue(limits.queue_wait_s)
    add_error_handlers(app)
    add_routes(app)
    app.openapi = lambda: openapi_with_forecast_request(app)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    if limits.token:
        app.add_middleware(BearerToken, token=limits.token)
    return app


def set_model(app: FastAPI, model: Forecaster) -> None:
    """Start serving `model` (after loading it in the background)."""
    app.state.model = model


def loaded_model(request: Request) -> Forecaster:
    """The served model; 503 while it is loading."""
    model = request.app.state.model
    if model is None:
        raise ServiceUnavailable("model not loaded yet", LOADING_RETRY_AFTER_S)
    return model


def add_routes(app: FastAPI) -> None:
    """`/health`, `/v1/model` and `/v1/forecast`."""

    @app.get("/health", response_model=Health, responses={503: {"model": Health}},
             summary="Readiness: 200 once the model is loaded, 503 while loading")
    def health(request: Request) -> JSONResponse:
        """`ok` with the model name once the checkpoint is loaded and its graphs are built;
        `loading` (503) before. Never needs the token."""
        model = request.app.state.model
        if model is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok", "model": model.name})

    @app.get("/v1/model", response_model=ModelInfo,
             responses={k: ERROR_RESPONSES[k] for k in (401, 503)},
             summary="What the model needs (grid, levels, inputs) and produces (targets)")
    def model_info(request: Request) -> ModelInfo:
        """The grid, pressure levels, inputs (surface, atmospheric, static) and targets with
        units that `/v1/forecast` works with, plus step, longest lead time, precision and
        device. Forcings (TISR, day/year progress) are computed by the service."""
        return model_card.describe(loaded_model(request))

    @app.post("/v1/forecast", response_model=ForecastResponse, responses=ERROR_RESPONSES,
              summary="Forecast values at sites from two input frames",
              openapi_extra={"requestBody": {
                  "required": True,
                  "content": {"application/json": {
                      "schema": {"$ref": "#/components/schemas/ForecastRequest"}}},
              }})
    async def forecast(request: Request) -> ForecastResponse:
        """Runs the model from the two input frames for `max(lead_hours) / 6` steps and
        returns the bilinear interpolation of each wanted variable at each site and lead
        time. Forecasts run one at a time, in arrival order; a request that waits longer
        than the configured limit gets 503 with `Retry-After`."""
        started = time.perf_counter()
        model = loaded_model(request)
        body = await request.body()
        decoded = await asyncio.to_thread(decode_forecast_request, body, model)
        decode_s = time.perf_counter() - started

        def run_model() -> tuple[xr.Dataset, float]:
            begin = time.perf_counter()
            predictions = model.forecast(decoded.inputs, decoded.steps)
            return predictions, time.perf_counter() - begin

        try:
            predictions, inference_s = await request.app.state.queue.run(run_model)
        except QueueTimeout as timeout:
            raise ServiceUnavailable(str(timeout), timeout.retry_after_s) from None
        begin = time.perf_counter()
        entries = site_forecasts(predictions, decoded, model_card.model_grid(model))
        interpolate_s = time.perf_counter() - begin
        timings = {"decode_s": decode_s, "inference_s": inference_s,
                   "interpolate_s": interpolate_s, "total_s": time.perf_counter() - started}
        log.info("forecast %s: %d values, %s", decoded.init_time.isoformat(), len(entries),
                 ", ".join(f"{k} {v:.3f}" for k, v in timings.items()))
        return ForecastResponse(model=model.name, init_time=decoded.init_time,
                                forecasts=entries, timings=timings,
                                provenance=model_card.provenance(model))


def add_error_handlers(app: FastAPI) -> None:
    """Every error answers `{"detail": "<message naming the problem>"}`."""

    @app.exception_handler(RequestError)
    def request_error(_: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    @app.exception_handler(ServiceUnavailable)
    def unavailable(_: Request, error: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=503,
                            headers={"Retry-After": str(error.retry_after_s)})

    @app.exception_handler(RequestValidationError)
    def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = jsonable_encoder(error.errors())
        return JSONResponse({"detail": describe_validation_errors(problems)}, status_code=422)

    @app.exception_handler(Exception)
    def internal(_: Request, error: Exception) -> JSONResponse:
        # Logged with its traceback by the server; the client gets one line.
        return JSONResponse({"detail": f"internal error: {type(error).__name__}: {error}"},
                            status_code=500)

    @app.exception_handler(HTTPException)
    def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code,
                            headers=error.headers)


def openapi_with_forecast_request(app: FastAPI) -> dict:
    """FastAPI's schema plus the ForecastRequest body, which the route reads itself."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version,
                             description=app.description, routes=app.routes)
        body = ForecastRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["ForecastRequest"] = body
        app.openapi_schema = schema
    return app.openapi_schema
