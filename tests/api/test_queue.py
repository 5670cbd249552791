"""One forecast at a time, in arrival order; a request that waits too long gets 503.

The model here is a slow stand-in (persistence plus a sleep): only the queueing is tested.
"""
from __future__ import annotations

import threading
import time

import requests
from api_helpers import SlowPersistence, reference_request, serve_in_thread

from graphcast_api.service.app import ServiceLimits

REQUEST = reference_request(lead_hours=[6])


def post_later(url: str, delay_s: float, results: dict, key: int) -> threading.Thread:
    """Post REQUEST with init day `key + 1` after `delay_s` in a thread; the response lands
    in results[key]."""
    request = {**REQUEST, "init_time": f"2022-01-{key + 1:02d}T06:00:00Z"}

    def post() -> None:
        time.sleep(delay_s)
        results[key] = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_forecasts_run_one_at_a_time_in_arrival_order() -> None:
    model = SlowPersistence(seconds=0.4)
    results: dict = {}
    with serve_in_thread(model, ServiceLimits(queue_wait_s=30)) as url:
        threads = [post_later(url, 0.1 * i, results, i) for i in range(4)]
        for thread in threads:
            thread.join()
    assert [results[i].status_code for i in range(4)] == [200] * 4
    starts = [start for start, _ in model.calls]
    assert all(b - a >= 0.39 for a, b in zip(starts, starts[1:])), starts  # never overlapping
    served = [str(init)[:10] for _, init in model.calls]
    assert served == [f"2022-01-{day:02d}" for day in (1, 2, 3, 4)]  # in arrival order


def test_request_waiting_past_the_limit_gets_503_with_retry_after() -> None:
    model = SlowPersistence(seconds=1.5)
    results: dict = {}
    with serve_in_thread(model, ServiceLimits(queue_wait_s=0.3)) as url:
        first = post_later(url, 0.0, results, 0)
        second = post_later(url, 0.3, results, 1)
        first.join()
        second.join()
        assert results[0].status_code == 200
        assert results[1].status_code == 503
        assert "queue" in results[1].json()["detail"]
        assert int(results[1].headers["Retry-After"]) >= 1
        after = requests.post(f"{url}/v1/forecast", json=REQUEST, timeout=60)
        assert after.status_code == 200
    assert len(model.calls) == 2  # the refused request never ran
