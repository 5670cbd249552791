"""HTTP client of the GraphCast API (docs/api.md): `GET /v1/model`, `POST /v1/forecast`.

Retries are limited to what cannot duplicate work: a request that never reached the
service (connection refused, connect timeout) and an answer 502/503/504 (the service or a
reverse proxy saying it is busy or away). A read timeout or a 500 is never retried: the
service may still be computing that forecast, and a second POST would queue another one.
Backoff is exponential; `Retry-After` is honoured up to RETRY_AFTER_CAP_S, and all the
waits together stay within the read timeout (GRAPHCAST_API_TIMEOUT_S).

A service on this machine (a loopback host) is called directly: the environment's proxy
settings (HTTP_PROXY, ...) would otherwise route the token and the request through the proxy.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import ConnectTimeoutError, InvalidHeader
from urllib3.util import Retry

from graphcast_contract.errors import ApiError, InvalidReplyError
from graphcast_contract.urls import is_loopback_host
from graphcast_contract.wire import (
    BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    REQUEST_ID_HEADER,
    BinaryBody,
)
from modules.job.logs import escape

RETRY_STATUSES = (502, 503, 504)
RETRY_AFTER_CAP_S = 60.0


class ModelApiClient:
    """Talks to the GraphCast API at `base_url`; every failure becomes an ApiError or
    InvalidReplyError with a message naming the problem."""

    def __init__(self, base_url: str, *, token: str | None, connect_timeout_s: float,
                 read_timeout_s: float, retries: int, backoff_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.retries = retries
        self.backoff_s = backoff_s
        self.session = requests.Session()
        # requests' environment settings (proxies, .netrc, REQUESTS_CA_BUNDLE) only for a
        # remote service: a proxy would see the token of a call that never leaves this host.
        self.session.trust_env = not is_loopback_host(urlsplit(self.base_url).hostname or "")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def model_info(self) -> dict[str, Any]:
        """`GET /v1/model`: what the model needs and produces."""
        return self._call("GET", "/v1/model")

    def forecast(self, body: BinaryBody | bytes) -> dict[str, Any]:
        """`POST /v1/forecast` with `body`: the binary encoding (the job's: streamed from the
        arrays, resent from the start on a retry) or JSON bytes already encoded."""
        content_type = BINARY_CONTENT_TYPE if isinstance(body, BinaryBody) else JSON_CONTENT_TYPE
        return self._call("POST", "/v1/forecast", data=body,
                          headers={"Content-Type": content_type})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send_with_retries(method, path, **kwargs)
        if response.status_code == 401:
            raise ApiError(f"GraphCast API {method} {path} refused authentication (HTTP 401: "
                           f"{_detail(response)}); check GRAPHCAST_API_TOKEN")
        if response.status_code != 200:
            raise ApiError(f"GraphCast API {method} {path} answered HTTP "
                           f"{response.status_code}: {_detail(response)}"
                           f"{_request_id(response)}")
        try:
            return response.json()
        except ValueError:
            raise InvalidReplyError(f"GraphCast API {method} {path} reply is not valid JSON "
                                    f"(starts {response.text[:60]!r})") from None

    def _send_with_retries(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The first answer that is not worth retrying, or the last one."""
        waited = 0.0
        for attempt in range(self.retries + 1):
            response = None
            try:
                response = self.session.request(method, self.base_url + path,
                                                timeout=self.timeout, **kwargs)
            except requests.exceptions.RequestException as exc:
                if not _never_sent(exc):
                    raise self._failure(method, path, exc) from None
                failure = self._failure(method, path, exc)
            if response is not None and response.status_code not in RETRY_STATUSES:
                return response
            wait = self._wait_s(attempt, response)
            if attempt == self.retries or waited + wait > self.timeout[1]:
                break
            time.sleep(wait)
            waited += wait
        if response is None:
            raise failure
        return response

    def _wait_s(self, attempt: int, response: requests.Response | None) -> float:
        """Backoff before the next try: the server's Retry-After (capped), else exponential."""
        retry_after = _retry_after_s(response) if response is not None else None
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP_S)
        return self.backoff_s * 2 ** attempt

    def _failure(self, method: str, path: str, exc: requests.exceptions.RequestException
                 ) -> ApiError:
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return ApiError(f"GraphCast API at {self.base_url} unreachable: connection timed out")
        if isinstance(exc, requests.exceptions.ReadTimeout) or "timed out" in str(exc).lower():
            return ApiError(f"GraphCast API {method} {path} timed out after "
                            f"{self.timeout[1]:g} s (not retried: the service may still be "
                            "working on it)")
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _never_sent(exc):
                return ApiError(f"GraphCast API at {self.base_url} unreachable "
                                f"({type(exc).__name__}); is the service running?")
            return ApiError(f"GraphCast API {method} {path}: connection lost before the "
                            "answer (not retried)")
        return ApiError(f"GraphCast API {method} {path} failed: {escape(str(exc))}")


def _never_sent(exc: requests.exceptions.RequestException) -> bool:
    """Whether the request failed before any of it reached the server (safe to retry)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too


def _retry_after_s(response: requests.Response) -> float | None:
    """The Retry-After header in seconds (delta-seconds or an HTTP date, 0 once past), None
    if absent or unreadable."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(Retry().parse_retry_after(value))
    except (InvalidHeader, ValueError, OverflowError):  # ValueError: a year out of range
        return None


def _request_id(response: requests.Response) -> str:
    """` (request id ...)` when the service named the request (X-Request-ID), so that a failed
    cycle's ledger reason and log line match the service's log; else empty."""
    request_id = response.headers.get(REQUEST_ID_HEADER, "")
    return f" (request id {escape(request_id[:64])})" if request_id else ""


def _detail(response: requests.Response) -> str:
    """The error's `detail` (or body) shortened and with control characters escaped: it is
    text from the network that ends up in the log and the ledger."""
    try:
        text = str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        text = response.text or response.reason
    return escape(text[:300])
