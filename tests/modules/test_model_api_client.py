"""The client's reading of a Retry-After header (the retry loop itself: test_batch_failures)."""
from __future__ import annotations

import time
from email.utils import formatdate

import pytest
import requests

from modules.model_api_client import _retry_after_s


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
