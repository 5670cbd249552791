"""The client's reading of a Retry-After header (the retry loop itself: test_batch_failures);
its use of the environment's proxy (never for a loopback service)."""
from __future__ import annotations

import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from graphcast_contract.errors import ApiError
from modules.model_api_client import ModelApiClient, _retry_after_s
from tests.loopback import LoopbackServer
from tests.modules.contract_api_server import ContractApi

TOKEN = "proxy-test-token-0123456789"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                   "all_proxy", "NO_PROXY", "no_proxy")


def answer(retry_after: str | None) -> requests.Response:
    response = requests.Response()
    response.status_code = 503
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


@pytest.mark.parametrize("value, seconds", [
    ("2", 2.0), (" 3 ", 3.0), ("0", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date already past: no wait
    (None, None), ("", None), ("soon", None), ("-5", None), ("1.5", None), ("²", None),
    ("Mon, 01 Jan 99999 00:00:00 GMT", None),  # a year out of range
])
def test_retry_after_in_seconds_or_none_when_absent_or_unreadable(
        value: str | None, seconds: float | None) -> None:
    assert _retry_after_s(answer(value)) == seconds


def test_retry_after_as_an_http_date() -> None:
    seconds = _retry_after_s(answer(formatdate(time.time() + 30, usegmt=True)))
    assert seconds is not None and 28 <= seconds <= 30


class RecordingProxy(LoopbackServer):
    """An HTTP proxy on loopback that records each request line and its Authorization header
    and answers 502 (it forwards nothing)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str | None]] = []
        self.url = self._listen(self._handler())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.received.append((self.requestline, self.headers.get("Authorization")))
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

        return Handler


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> RecordingProxy:
    """A RecordingProxy, named by HTTP_PROXY (and http_proxy); NO_PROXY unset."""
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    with RecordingProxy() as recording:
        monkeypatch.setenv("HTTP_PROXY", recording.url)
        monkeypatch.setenv("http_proxy", recording.url)
        yield recording


def client(url: str) -> ModelApiClient:
    return ModelApiClient(url, token=TOKEN, connect_timeout_s=5, read_timeout_s=10, retries=0,
                          backoff_s=0)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_service_is_called_without_the_proxy(proxy: RecordingProxy, api: ContractApi,
                                                        host: str) -> None:
    url = api.url.replace("127.0.0.1", host)
    assert client(url).model_info()["model"] == "GraphCast_test"
    assert proxy.received == []


def test_a_remote_service_is_called_through_the_proxy(proxy: RecordingProxy) -> None:
    """The environment's proxy still applies beyond this machine (the answer is the
    proxy's 502)."""
    with pytest.raises(ApiError, match="HTTP 502"):
        client("http://graphcast.example.invalid").model_info()
    assert proxy.received == [("GET http://graphcast.example.invalid/v1/model HTTP/1.1",
                               f"Bearer {TOKEN}")]
