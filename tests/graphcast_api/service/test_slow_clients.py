"""Clients that stall, trickle or leave while sending their body free their queue slot: 408
past the body's time limits, 499 (one INFO line, no traceback) for a client that left.

One slot (queue_slots=0) and a 5 s queue wait: a slot held by such a client for good would
give the next forecast 503 after 5 s.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from graphcast_api.service.app import ServiceLimits
from tests.graphcast_api.service.helpers import SlowPersistence, reference_request, serve_in_thread

REQUEST = reference_request(lead_hours=[6])
BODY = json.dumps(REQUEST).encode()
LIMITS = ServiceLimits(queue_wait_s=5, queue_slots=0, body_idle_s=0.5, body_timeout_s=2)
ADMITTED_S = 0.3  # time for the server to admit a request that sent its headers


@contextmanager
def partial_upload(url: str, sent_bytes: int) -> Iterator[socket.socket]:
    """A raw client that sends the headers of a POST of BODY and its first `sent_bytes`, then
    nothing more; yields its socket once the server has admitted it."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
                     + BODY[:sent_bytes])
        time.sleep(ADMITTED_S)
        yield sock


def timed_forecast(url: str) -> tuple[int, float]:
    """(status, seconds) of a good forecast request."""
    started = time.monotonic()
    response = requests.post(f"{url}/v1/forecast", json=REQUEST, timeout=30)
    return response.status_code, time.monotonic() - started


def reply_status(sock: socket.socket) -> bytes:
    """The status line the server sent on `sock`."""
    return sock.makefile("rb").readline().strip()


def test_a_stalled_body_gets_408_and_frees_its_slot(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), serve_in_thread(SlowPersistence(0), LIMITS) as url:
        with partial_upload(url, 1000) as stalled:
            status, waited = timed_forecast(url)
            assert reply_status(stalled) == b"HTTP/1.1 408 Request Timeout"
    assert status == 200
    assert waited < 0.5 + 1.5  # the idle limit, not the queue wait
    assert "no body bytes for 0.5 s" in caplog.text


def test_a_trickled_body_gets_408_at_the_body_time_limit() -> None:
    with serve_in_thread(SlowPersistence(0), LIMITS) as url:
        with partial_upload(url, 1000) as trickling:
            stop = threading.Event()

            def trickle() -> None:  # a byte every 0.1 s: never idle for 0.5 s
                for byte in BODY[1000:]:
                    if stop.wait(0.1):
                        return
                    try:
                        trickling.sendall(bytes([byte]))
                    except OSError:  # the server closed the connection
                        return
            sender = threading.Thread(target=trickle)
            sender.start()
            try:
                status, waited = timed_forecast(url)
                assert reply_status(trickling) == b"HTTP/1.1 408 Request Timeout"
            finally:
                stop.set()
                sender.join()
    assert status == 200
    assert waited < 2 + 1.5  # the body time limit, not the queue wait


def test_a_body_drained_after_a_queue_timeout_is_bounded_too() -> None:
    """A request refused by the queue has its body drained (so that it reads the 503): a
    client that stalls there gets 408 too, rather than holding its connection."""
    limits = ServiceLimits(queue_wait_s=0.2, queue_slots=0, body_idle_s=0.5, body_timeout_s=2)
    with serve_in_thread(SlowPersistence(2), limits) as url:
        busy = threading.Thread(target=timed_forecast, args=(url,))
        busy.start()
        time.sleep(ADMITTED_S)  # the model runs for 2 s
        try:
            with partial_upload(url, 1000) as stalled:
                started = time.monotonic()
                assert reply_status(stalled) == b"HTTP/1.1 408 Request Timeout"
                assert time.monotonic() - started < 1.5
        finally:
            busy.join()


def test_a_client_leaving_mid_body_is_499_on_one_info_line(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), serve_in_thread(SlowPersistence(0), LIMITS) as url:
        with partial_upload(url, 1000):
            pass  # closed mid-body
        status, waited = timed_forecast(url)
    assert status == 200 and waited < 1.5
    assert "client left while sending its body" in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert all(r.exc_info is None for r in caplog.records)
