"""The FastAPI application of the GraphCast API (contract: `docs/api.md`).

`create_app` takes the service limits; the model is set with `set_model` once loaded, so
that `/health` can answer `loading` meanwhile (and the body limit can be sized from it). Any
object with the `Forecaster` interface (`graphcast_api.service.model_card`) can be served.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from graphcast_api.service import model_card
from graphcast_api.service.binary_body import read_binary_request
from graphcast_api.service.body_stream import (
    BODY_IDLE_S,
    BodyTimeout,
    body_chunks,
    drain_body,
    read_body,
)
from graphcast_api.service.guards import BearerToken, BodySizeLimit, RequestId
from graphcast_api.service.model_card import Forecaster
from graphcast_api.service.queue import ClientGone, ForecastQueue, QueueTimeout
from graphcast_api.service.request_parsing import (
    EARLIEST_INIT_TIME,
    LATEST_INIT_TIME,
    DecodedRequest,
    RequestCaps,
    RequestError,
    decode_forecast_request,
    describe_validation_errors,
)
from graphcast_api.service.schemas import (
    ErrorDetail,
    ForecastRequest,
    ForecastResponse,
    Health,
    Limits,
    ModelInfo,
)
from graphcast_api.service.site_forecasts import SiteForecasts
from graphcast_api.settings import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_SITE_NAME_CHARS,
    DEFAULT_MAX_SITES,
    DEFAULT_MAX_VALUES,
    DEFAULT_QUEUE_SLOTS,
    DEFAULT_QUEUE_WAIT_S,
)
from graphcast_contract.wire import BINARY_CONTENT_TYPE, JSON_CONTENT_TYPE

log = logging.getLogger(__name__)

LOADING_RETRY_AFTER_S = 10
CLIENT_GONE_STATUS = 499  # nginx's "client closed request": nobody reads it
# Body limit sized from the model: its base64 arrays plus this share, plus room for the
# sites (a name's character may take 12 bytes as a JSON escape pair) and the rest.
BODY_MARGIN_SHARE = 0.05
BODY_MARGIN_BYTES = 1024**2
SITE_JSON_BYTES = 200


@dataclass(frozen=True)
class ServiceLimits:
    """Limits of the service: body size (bytes; None: sized from the model), queue wait (s)
    and slots, the time to read a body (s: in all, and between its chunks), the optional
    token, and what one forecast may ask for."""

    max_body_bytes: int | None = None
    queue_wait_s: float = DEFAULT_QUEUE_WAIT_S
    queue_slots: int = DEFAULT_QUEUE_SLOTS
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    body_idle_s: float = BODY_IDLE_S  # not a setting (body_stream.BODY_IDLE_S)
    token: str | None = None
    max_sites: int = DEFAULT_MAX_SITES
    max_site_name_chars: int = DEFAULT_MAX_SITE_NAME_CHARS
    max_values: int = DEFAULT_MAX_VALUES

    def caps(self) -> RequestCaps:
        """The caps request parsing checks."""
        return RequestCaps(max_sites=self.max_sites,
                           max_site_name_chars=self.max_site_name_chars,
                           max_values=self.max_values)

    def body_bytes_for(self, model: Forecaster) -> int:
        """The configured body limit, else a full JSON request of `model` plus a margin (a
        binary body of the same request is 0.75x of that)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        arrays = model_card.full_request_base64_bytes(model)
        return int(arrays * (1 + BODY_MARGIN_SHARE)) + self.header_bytes()

    def body_chunks(self, request: Request) -> AsyncIterator[bytes]:
        """The chunks of `request`'s body, read within the body's time limits."""
        return body_chunks(request, self.body_idle_s, self.body_timeout_s)

    def header_bytes(self) -> int:
        """The most a request may hold besides its arrays' data (a binary body's header):
        the sites at their caps (a name's character may take 12 bytes as a JSON escape
        pair) and a margin for the rest."""
        sites = self.max_sites * (12 * self.max_site_name_chars + SITE_JSON_BYTES)
        return sites + BODY_MARGIN_BYTES


class ServiceUnavailable(Exception):
    """503 with a Retry-After header."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_s = retry_after_s


ERROR_RESPONSES = {
    status: {"model": ErrorDetail, "description": description}
    for status, description in {
        400: "The body is not valid JSON, or a binary body does not follow its framing.",
        401: "A token is configured and the request lacks it or has a wrong one.",
        408: "The body did not arrive within the time limits (the connection is closed).",
        413: "The body is larger than the configured limit.",
        422: "Invalid content; `detail` names the field and the problem.",
        503: "Model not loaded yet, or the forecast queue did not free up in time"
             " (`Retry-After` header, seconds).",
        500: "Internal error (e.g. the model failed); `request_id` names it in the log.",
    }.items()
}


def create_app(limits: ServiceLimits = ServiceLimits(), model: Forecaster | None = None) -> FastAPI:
    """The application; serves `model` now if given, else after `set_model`."""
    app = FastAPI(
        title="GraphCast API",
        version="1",
        description="Site forecasts from a self-hosted GraphCast model. Contract: docs/api.md."
                    " Arrays travel as little-endian float32 bytes in C order: base64 in a JSON"
                    f" body, raw in a binary body (`{BINARY_CONTENT_TYPE}`).",
    )
    app.state.model = None
    app.state.limits = limits
    app.state.max_body_bytes = None
    app.state.queue = ForecastQueue(limits.queue_wait_s, limits.queue_slots)
    add_error_handlers(app)
    add_routes(app)
    app.openapi = lambda: openapi_with_forecast_request(app)
    app.add_middleware(BodySizeLimit, max_bytes=lambda: app.state.max_body_bytes)
    if limits.token:
        app.add_middleware(BearerToken, token=limits.token)
    app.add_middleware(RequestId)  # outermost: every answer, 401 and 413 too, has an id
    if model is not None:
        set_model(app, model)
    return app


def set_model(app: FastAPI, model: Forecaster) -> None:
    """Start serving `model` (after loading it in the background), sizing the body limit."""
    app.state.max_body_bytes = app.state.limits.body_bytes_for(model)
    app.state.model = model
    log.info("request body limit %d bytes", app.state.max_body_bytes)


def limits_of(app: FastAPI) -> Limits:
    """The `limits` object of `/v1/model`."""
    return describe_limits(app.state.limits, app.state.max_body_bytes)


def describe_limits(limits: ServiceLimits, max_body_bytes: int | None) -> Limits:
    """The `limits` object of `/v1/model` for these limits and body size."""
    return Limits(max_body_bytes=max_body_bytes, max_sites=limits.max_sites,
                  max_site_name_chars=limits.max_site_name_chars, max_values=limits.max_values,
                  init_time_min=EARLIEST_INIT_TIME, init_time_max=LATEST_INIT_TIME)


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
        model = loaded_model(request)
        return model_card.describe(model, limits_of(request.app))

    @app.post("/v1/forecast", response_model=ForecastResponse, responses=ERROR_RESPONSES,
              summary="Forecast values at sites from two input frames",
              openapi_extra={"requestBody": {
                  "required": True,
                  "content": {
                      JSON_CONTENT_TYPE: {
                          "schema": {"$ref": "#/components/schemas/ForecastRequest"}},
                      BINARY_CONTENT_TYPE: {
                          "schema": {"type": "string", "format": "binary"}}},
              }})
    async def forecast(request: Request) -> Response:
        """Runs the model from the two input frames for `max(lead_hours) / 6` steps and
        returns the bilinear interpolation of each wanted variable at each site and lead
        time. Forecasts are admitted to a few slots, then run one at a time, in arrival
        order; a request that waits longer than the configured limit gets 503 with
        `Retry-After`."""
        started = time.perf_counter()
        model = loaded_model(request)
        queue: ForecastQueue = request.app.state.queue
        request_id = request.scope.get("request_id")
        try:
            try:
                async with queue.slot() as deadline:
                    return await answer_forecast(request, model, started, deadline)
            except QueueTimeout as timeout:
                if not request.scope.get("body_read"):  # so the client, still sending,
                    limits: ServiceLimits = request.app.state.limits  # reads the 503
                    await drain_body(limits.body_chunks(request))
                raise ServiceUnavailable(str(timeout), timeout.retry_after_s) from None
        except ClientGone as gone:
            log.info("request %s: client left %s; forecast dropped", request_id, gone)
            return Response(status_code=CLIENT_GONE_STATUS)
        except BodyTimeout as timeout:
            log.info("request %s: %s; answered 408", request_id, timeout)
            return JSONResponse({"detail": str(timeout)}, status_code=408,
                                headers={"Connection": "close"})


async def answer_forecast(request: Request, model: Forecaster, started: float,
                          deadline: float) -> Response:
    """Read, decode and queue one forecast (its slot is held); the reply's JSON is built in a
    worker thread, never on the event loop."""
    decoded = await receive_request(request, model)
    request.scope["body_read"] = True
    # uvicorn may have paused reading this connection during the last body chunk; a receive
    # resumes it, so that a client closing while it waits is noticed at its turn.
    await request.is_disconnected()
    decode_s = time.perf_counter() - started
    entries, inference_s, interpolate_s = await request.app.state.queue.run(
        lambda: forecast_entries(model, decoded), deadline, lambda: still_connected(request))
    timings = {"decode_s": decode_s, "inference_s": inference_s,
               "interpolate_s": interpolate_s, "total_s": time.perf_counter() - started}
    log.info("request %s: forecast %s: %d values, %s", request.scope.get("request_id"),
             decoded.init_time.isoformat(), len(entries),
             ", ".join(f"{k} {v:.3f}" for k, v in timings.items()))
    content = await asyncio.to_thread(render_reply, model, decoded, entries, timings)
    return Response(content, media_type="application/json")


def forecast_entries(model: Forecaster, decoded: DecodedRequest
                     ) -> tuple[list[dict], float, float]:
    """Run the model on a decoded request: the reply's entries, inference and interpolation
    seconds (blocking: the service runs it in its queue's thread, a backfill worker in-process).

    Each step's sites are taken as the step comes and the step's grid dropped, so a forecast
    holds one step, not the whole rollout. The decoded inputs are handed over to the rollout,
    which rolls them in place: they were decoded for this forecast alone, and are not read
    again (their values afterwards are the rollout's last frames)."""
    sites = SiteForecasts(decoded, model_card.model_grid(model))
    interpolate_s = 0.0
    begin = time.perf_counter()
    for prediction in model.rollout(decoded.inputs, decoded.steps, overwrite_inputs=True):
        start = time.perf_counter()
        sites.add(prediction)
        del prediction  # not held while the next step runs
        interpolate_s += time.perf_counter() - start
    inference_s = time.perf_counter() - begin - interpolate_s
    start = time.perf_counter()
    entries = sites.entries()
    return entries, inference_s, interpolate_s + time.perf_counter() - start


def render_reply(model: Forecaster, decoded: DecodedRequest, entries: list[dict],
                 timings: dict[str, float]) -> bytes:
    """The reply's JSON (up to max_values entries: seconds of work, so off the event loop)."""
    reply = ForecastResponse(model=model.name, init_time=decoded.init_time, forecasts=entries,
                             timings=timings, provenance=model_card.provenance(model))
    return reply.model_dump_json().encode()


async def receive_request(request: Request, model: Forecaster) -> DecodedRequest:
    """Read and decode the body in the encoding its Content-Type names (JSON by default)."""
    limits: ServiceLimits = request.app.state.limits
    chunks = limits.body_chunks(request)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == BINARY_CONTENT_TYPE:
        return await read_binary_request(request, chunks, model, limits.caps(),
                                         limits.header_bytes())
    body = await read_body(chunks)
    try:
        return await asyncio.to_thread(decode_forecast_request, body, model, limits.caps())
    finally:
        body.clear()  # the decoded arrays are all that is kept while waiting


async def still_connected(request: Request) -> bool:
    """False once the client has disconnected (checked after its body was read)."""
    return not await request.is_disconnected()


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

    # Any other exception reaches guards.RequestId: logged under the request id, the client
    # gets `500 {"detail": "internal error", "request_id": ...}`.

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
