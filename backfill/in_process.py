"""The model API client's interface (`model_info()`, `forecast(body)`) served in-process.

It runs the service's own request decoding, forecasting and reply building on a loaded
model, so that a backfill worker gets exactly the replies the HTTP service would give,
without a server, a socket or a second copy of the model per worker.
"""
from __future__ import annotations

import json
import time
from typing import Any

from graphcast_api.service import model_card
from graphcast_api.service.app import (
    ServiceLimits,
    describe_limits,
    forecast_entries,
    render_reply,
)
from graphcast_api.service.binary_body import decode_binary_body
from graphcast_api.service.model_card import Forecaster
from graphcast_api.service.request_parsing import (
    DecodedRequest,
    RequestError,
    decode_forecast_request,
)
from graphcast_contract.errors import ApiError
from graphcast_contract.wire import BinaryBody


class InProcessClient:
    """A `ModelApiClient` stand-in answering from `model` in this process (same JSON)."""

    def __init__(self, model: Forecaster, limits: ServiceLimits | None = None) -> None:
        self.model = model
        self.limits = limits or ServiceLimits()  # the service's defaults

    def model_info(self) -> dict[str, Any]:
        """What `GET /v1/model` answers for this model."""
        limits = describe_limits(self.limits, self.limits.body_bytes_for(self.model))
        return json.loads(model_card.describe(self.model, limits).model_dump_json())

    def forecast(self, body: bytes | BinaryBody) -> dict[str, Any]:
        """What `POST /v1/forecast` answers for `body` (JSON bytes or the binary body, as
        the HTTP client takes them); ApiError where the service would answer an error."""
        started = time.perf_counter()
        try:
            decoded = self._decode(body)
        except RequestError as error:
            raise ApiError(f"in-process model refused the request (HTTP {error.status} "
                           f"as a service): {error.message}") from None
        decode_s = time.perf_counter() - started
        try:
            entries, inference_s, interpolate_s = forecast_entries(self.model, decoded)
        except Exception as exc:  # the model failed: the service's 500
            raise ApiError(f"in-process model failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        timings = {"decode_s": decode_s, "inference_s": inference_s,
                   "interpolate_s": interpolate_s, "total_s": time.perf_counter() - started}
        return json.loads(render_reply(self.model, decoded, entries, timings))

    def _decode(self, body: bytes | BinaryBody) -> DecodedRequest:
        if isinstance(body, BinaryBody):
            return decode_binary_body(body, self.model, self.limits.caps(),
                                      self.limits.header_bytes())
        return decode_forecast_request(body, self.model, self.limits.caps())
