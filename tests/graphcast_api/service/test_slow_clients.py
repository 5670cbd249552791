"""Clients that stall, trickle or leave while sending their body free their queue slot: 408
past the body's time limits, 499 (one INFO line, no traceback) for a client that left.

One slot (queue_slots=0) and a 30 s queue wait: a slot held by such a client for good would
give the next forecast 503, not 200. The tests wait on the service's queue (QueueWatch), not
on the clock; the reply's status and the log say which limit was reached.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from graphcast_api.service.app import ServiceLimits
from tests.graphcast_api.service.helpers import (
    SlowPersistence,
    reference_request,
    serve_watched,
    wait_until,
)

REQUEST = reference_request(lead_hours=[6])
BODY = json.dumps(REQUEST).encode()
LIMITS = ServiceLimits(queue_wait_s=30, queue_slots=0, body_idle_s=0.5, body_timeout_s=2)
REPLY_TIMEOUT_S = 20  # a reply to a stalled client: its body's time limits are 0.5 and 2 s


@contextmanager
def partial_upload(url: str, sent_bytes: int) -> Iterator[socket.socket]:
    """A raw client that sends the headers of a POST of BODY and its first `sent_bytes`, then
    nothing more; yields its socket."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT_S) as sock:
        sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
                     + BODY[:sent_bytes])
        yield sock


def forecast_status(url: str) -> int:
    """The status of a good forecast request."""
    return requests.post(f"{url}/v1/forecast", json=REQUEST, timeout=60).status_code


def reply_status(sock: socket.socket) -> bytes:
    """The status line the server sent on `sock` (within REPLY_TIMEOUT_S)."""
    return sock.makefile("rb").readline().strip()


def test_a_stalled_body_gets_408_and_frees_its_slot(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), \
            serve_watched(SlowPersistence(0), LIMITS) as (url, watch):
        with partial_upload(url, 1000) as stalled:
            wait_until(lambda: watch.admitted == 1, "the stalled client holds the slot")
            status = forecast_status(url)
            assert reply_status(stalled) == b"HTTP/1.1 408 Request Timeout"
    assert status == 200 and watch.admitted == 2  # the slot was freed
    assert "no body bytes for 0.5 s" in caplog.text  # by the idle limit


def test_a_trickled_body_gets_408_at_the_body_time_limit(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), \
            serve_watched(SlowPersistence(0), LIMITS) as (url, watch):
        with partial_upload(url, 1000) as trickling:
            wait_until(lambda: watch.admitted == 1, "the trickling client holds the slot")
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
                status = forecast_status(url)
                assert reply_status(trickling) == b"HTTP/1.1 408 Request Timeout"
            finally:
                stop.set()
                sender.join()
    assert status == 200 and watch.admitted == 2  # the slot was freed
    assert "body not received within 2 s" in caplog.text  # by the body time limit


def test_a_body_drained_after_a_queue_timeout_is_bounded_too(
        caplog: pytest.LogCaptureFixture) -> None:
    """A request refused by the queue has its body drained (so that it reads the 503): a
    client that stalls there gets 408 too, rather than holding its connection."""
    limits = ServiceLimits(queue_wait_s=0.2, queue_slots=0, body_idle_s=0.5, body_timeout_s=2)
    gate = threading.Event()
    model = SlowPersistence(0, gate=gate)
    with caplog.at_level(logging.INFO), serve_watched(model, limits) as (url, watch):
        busy = threading.Thread(target=forecast_status, args=(url,))
        busy.start()
        try:
            wait_until(lambda: len(model.calls) == 1, "the busy forecast runs")
            with partial_upload(url, 1000) as stalled:
                assert reply_status(stalled) == b"HTTP/1.1 408 Request Timeout"
            assert watch.admitted == 1  # the stalled client never had a slot: it was drained
        finally:
            gate.set()
            busy.join()
    assert "no body bytes for 0.5 s" in caplog.text


def test_a_client_leaving_mid_body_is_499_on_one_info_line(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), \
            serve_watched(SlowPersistence(0), LIMITS) as (url, watch):
        with partial_upload(url, 1000):
            wait_until(lambda: watch.admitted == 1, "the leaving client holds the slot")
        status = forecast_status(url)  # the client left mid-body
    assert status == 200 and watch.admitted == 2  # the slot was freed
    assert "client left while sending its body" in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert all(r.exc_info is None for r in caplog.records)
