"""One forecast at a time, in arrival order; a request that waits too long gets 503.

The model here is a slow stand-in (persistence plus a sleep): only the queueing is tested.
"""
from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from graphcast_api.service.app import ServiceLimits
from tests.graphcast_api.service.helpers import (
    SlowPersistence,
    encode,
    reference_request,
    serve_in_thread,
    serve_watched,
    wait_until,
)

REQUEST = reference_request(lead_hours=[6])


def post_in_thread(url: str, results: dict, key: int) -> threading.Thread:
    """Post REQUEST with init day `key + 1` in a thread; the response lands in results[key]."""
    request = {**REQUEST, "init_time": f"2022-01-{key + 1:02d}T06:00:00Z"}

    def post() -> None:
        results[key] = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_forecasts_run_one_at_a_time_in_arrival_order() -> None:
    model = SlowPersistence(seconds=0.4)
    results: dict = {}
    with serve_watched(model, ServiceLimits(queue_wait_s=30)) as (url, watch):
        threads: list[threading.Thread] = []
        for day in range(4):  # each arrives once the one before waits for the model
            threads.append(post_in_thread(url, results, day))
            wait_until(lambda: watch.waiting_for_model == len(threads),
                       f"forecast {len(threads)} waits for the model")
        for thread in threads:
            thread.join()
    assert [results[i].status_code for i in range(4)] == [200] * 4
    starts = [start for start, _ in model.calls]
    # never overlapping
    assert all(b - a >= 0.39 for a, b in itertools.pairwise(starts)), starts
    served = [str(init)[:10] for _, init in model.calls]
    assert served == [f"2022-01-{day:02d}" for day in (1, 2, 3, 4)]  # in arrival order


def test_request_waiting_past_the_limit_gets_503_with_retry_after() -> None:
    gate = threading.Event()
    model = SlowPersistence(seconds=0, gate=gate)
    results: dict = {}
    with serve_watched(model, ServiceLimits(queue_wait_s=0.3)) as (url, _):
        first = post_in_thread(url, results, 0)
        wait_until(lambda: len(model.calls) == 1, "the first forecast runs")
        post_in_thread(url, results, 1).join()  # while the first one runs
        gate.set()
        first.join()
        assert results[0].status_code == 200
        assert results[1].status_code == 503
        assert "queue" in results[1].json()["detail"]
        assert int(results[1].headers["Retry-After"]) >= 1
        after = requests.post(f"{url}/v1/forecast", json=REQUEST, timeout=60)
        assert after.status_code == 200
    assert len(model.calls) == 2  # the refused request never ran


def test_client_that_left_before_its_turn_is_never_run() -> None:
    gate = threading.Event()
    model = SlowPersistence(seconds=0, gate=gate)
    results: dict = {}
    with serve_watched(model, ServiceLimits(queue_wait_s=30)) as (url, watch):
        first = post_in_thread(url, results, 0)
        wait_until(lambda: len(model.calls) == 1, "the first forecast runs")
        body = json.dumps({**REQUEST, "init_time": "2022-01-02T06:00:00Z"}).encode()
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as leaving:
            leaving.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/json\r\n"
                            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            wait_until(lambda: watch.waiting_for_model == 2,
                       "the second forecast, read and decoded, waits for the model")
        gate.set()  # the client has left: the first forecast ends
        first.join()
        third = post_in_thread(url, results, 2)
        third.join()
    assert (results[0].status_code, results[2].status_code) == (200, 200)
    served = [str(init)[:10] for _, init in model.calls]
    assert served == ["2022-01-01", "2022-01-03"]  # the second one never ran


class WideGridPersistence(SlowPersistence):
    """The stand-in on a 2-degree grid (91 x 180): a full request is about 15 MB of JSON."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.latitudes = np.linspace(-90.0, 90.0, 91, dtype=np.float32)
        self.longitudes = np.arange(0.0, 360.0, 2.0, dtype=np.float32)


def wide_request(model: WideGridPersistence) -> bytes:
    """A full request for `model` (constant fields), as JSON bytes."""
    grid = (model.latitudes.size, model.longitudes.size)
    levels = len(model.task_config.pressure_levels)
    request = reference_request(lead_hours=[6])
    request["grid"] = {"n_lat": grid[0], "n_lon": grid[1], "lat_first": -90.0,
                       "lat_step": 2.0, "lon_first": 0.0, "lon_step": 2.0}
    request["inputs"] = {name: encode(np.full((2, levels, *grid) if len(value["shape"]) == 4
                                              else (2, *grid), 1.0, np.float32))
                         for name, value in request["inputs"].items()}
    request["static"] = {name: encode(np.zeros(grid, np.float32)) for name in request["static"]}
    return json.dumps(request).encode()


def rss_bytes() -> int:
    """This process's resident memory (VmRSS), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def peak_rss_growth(body: bytes, model: WideGridPersistence, limits: ServiceLimits,
                    clients: int) -> tuple[int, list[requests.Response]]:
    """Peak growth of this process's RSS (the server's: the clients share one body) while
    `clients` threads post `body` at once; and their responses."""
    responses: list[requests.Response] = []
    peak = 0
    with serve_in_thread(model, limits) as url:
        warm_up = requests.post(f"{url}/v1/forecast", data=body, timeout=120,
                                headers={"Content-Type": "application/json"})
        assert warm_up.status_code == 200, warm_up.text  # first-use allocations done
        model.calls.clear()
        baseline = rss_bytes()
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_bytes() - baseline)
                time.sleep(0.005)

        def post() -> None:
            responses.append(requests.post(f"{url}/v1/forecast", data=body, timeout=120,
                                           headers={"Content-Type": "application/json"}))
        sampler = threading.Thread(target=sample)
        sampler.start()
        threads = [threading.Thread(target=post) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        sampler.join()
    return peak, responses


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("wait_s", [60.0, 1.0])
def test_memory_is_bounded_by_the_slots_under_many_clients(wait_s: float) -> None:
    model = WideGridPersistence(seconds=0.3)
    body = wide_request(model)
    limits = ServiceLimits(queue_wait_s=wait_s, queue_slots=1)  # 2 slots: 1 runs, 1 waits
    peak, responses = peak_rss_growth(body, model, limits, clients=8)
    # Each admitted request holds at most its body (a growing buffer), its parsed text and its
    # arrays (2.75x to 3.5x the body) at once; 64 MiB for the rest (threads, the stand-in's
    # forecasts, allocator slack). Without the slots, 8 requests reach about 290 MB here.
    bound = 2 * 3.5 * len(body) + 64 * 1024**2
    statuses = sorted(r.status_code for r in responses)
    print(f"body {len(body) / 1e6:.1f} MB, 8 clients, 2 slots: peak RSS growth "
          f"{peak / 1e6:.0f} MB (bound {bound / 1e6:.0f} MB), statuses {statuses}")
    assert peak < bound
    assert len(responses) == 8 and set(statuses) <= {200, 503}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 503)
    if wait_s > 10:
        assert statuses == [200] * 8
    else:
        assert 503 in statuses  # 8 x 0.3 s of model work cannot fit a 1 s wait
