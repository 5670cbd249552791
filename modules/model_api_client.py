"""HTTP client of the GraphCast API (docs/api.md): `GET /v1/model`, `POST /v1/forecast`.

Retries with exponential backoff on connection errors, read timeouts and 5xx answers
come from urllib3's `Retry` mounted on a requests `Session`.
"""
from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from graphcast_contract.errors import ApiError, InvalidReplyError

RETRY_STATUSES = (500, 502, 503, 504)


class ModelApiClient:
    """Talks to the GraphCast API at `base_url`; every failure becomes an ApiError or
    InvalidReplyError with a message naming the problem."""

    def __init__(self, base_url: str, *, token: str | None, connect_timeout_s: float,
                 read_timeout_s: float, retries: int, backoff_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                      other=0, backoff_factor=backoff_s, status_forcelist=RETRY_STATUSES,
                      allowed_methods=None, raise_on_status=False,
                      respect_retry_after_header=True)
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def model_info(self) -> dict[str, Any]:
        """`GET /v1/model`: what the model needs and produces."""
        return self._call("GET", "/v1/model")

    def forecast(self, body: bytes) -> dict[str, Any]:
        """`POST /v1/forecast` with a JSON `body` already encoded."""
        return self._call("POST", "/v1/forecast", data=body,
                          headers={"Content-Type": "application/json"})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.ConnectTimeout:
            raise ApiError(f"GraphCast API at {self.base_url} unreachable: connection timed out"
                           ) from None
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
            if "timed out" in str(exc).lower():
                raise ApiError(f"GraphCast API {method} {path} timed out after "
                               f"{self.timeout[1]:g} s (and every retry)") from None
            raise ApiError(f"GraphCast API at {self.base_url} unreachable "
                           f"({type(exc).__name__}); is the service running?") from None
        except requests.exceptions.RequestException as exc:
            raise ApiError(f"GraphCast API {method} {path} failed: {exc}") from None
        if response.status_code == 401:
            raise ApiError(f"GraphCast API {method} {path} refused authentication (HTTP 401: "
                           f"{_detail(response)}); check GRAPHCAST_API_TOKEN")
        if response.status_code != 200:
            raise ApiError(f"GraphCast API {method} {path} answered HTTP "
                           f"{response.status_code}: {_detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise InvalidReplyError(f"GraphCast API {method} {path} reply is not valid JSON "
                                    f"(starts {response.text[:60]!r})") from None


def _detail(response: requests.Response) -> str:
    try:
        return str(response.json()["detail"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300] or response.reason
