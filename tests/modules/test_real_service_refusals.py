"""The real service's refusals (422, 503 with Retry-After, 401) reaching the real job.

The service is the real app (`create_app`) with a stand-in model of the reference grid
(persistence, tests/api/api_helpers.py), served by uvicorn on loopback. A recording wrapper
around the app sees every answer the job got, so the tests know how many requests reached
the service and can act between them (swap the model, free the queue).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import requests

from graphcast_api.service.app import ServiceLimits, create_app, set_model
from tests.graphcast_api.service.helpers import SlowPersistence, reference_request, serve_asgi
from tests.modules.job_helpers import JobRunner, ledger, predictions

INIT = "2022-01-01T06:00"
T0 = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    at: float  # time.monotonic() when the answer started


@dataclass
class Recorder:
    """ASGI wrapper recording each answer's status and headers; `on_answer` runs as each
    answer starts, inside the server's event loop."""

    app: Callable
    on_answer: Callable[[Answer], None] = lambda answer: None
    answers: list[Answer] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def recording_send(message) -> None:
            if message["type"] == "http.response.start":
                answer = Answer(scope["method"], scope["path"], message["status"],
                                {k.decode("latin-1").lower(): v.decode("latin-1")
                                 for k, v in message.get("headers", [])},
                                time.monotonic())
                self.answers.append(answer)
                self.on_answer(answer)
            await send(message)

        await self.app(scope, receive, recording_send)

    def forecasts(self) -> list[Answer]:
        return [a for a in self.answers if (a.method, a.path) == ("POST", "/v1/forecast")]


@contextmanager
def real_service(model, limits: ServiceLimits | None = None,
                 on_answer: Callable[[Answer], None] | None = None
                 ) -> Iterator[tuple[str, Recorder]]:
    app = create_app(limits or ServiceLimits(), model)
    recorder = Recorder(app, on_answer or (lambda answer: None))
    with serve_asgi(recorder) as url:
        recorder.answers.clear()  # the readiness polls
        yield url, recorder


def job_for(url: str, era5_db: str, tmp_path) -> JobRunner:
    return JobRunner(era5_db, url, tmp_path / "logs")


def test_a_422_is_not_retried_and_names_the_problem(era5_db: str, tmp_path) -> None:
    """The model is swapped for one on another grid between the job's GET /v1/model and its
    POST (a service restarted with another checkpoint): the request is refused."""
    served = SlowPersistence(0)
    other = SlowPersistence(0)
    other.latitudes = np.linspace(-90.0, 90.0, 37)
    other.longitudes = np.arange(0.0, 360.0, 5.0)
    app_holder: list = []

    def swap_after_model_card(answer: Answer) -> None:
        if (answer.path, answer.status) == ("/v1/model", 200):
            set_model(app_holder[0], other)

    with real_service(served, on_answer=swap_after_model_card) as (url, recorder):
        app_holder.append(recorder.app)
        result = job_for(url, era5_db, tmp_path)("--init-time", INIT)
    assert result.returncode == 4, result.output
    assert [a.status for a in recorder.forecasts()] == [422]  # exactly one POST: no retry
    assert "POST /v1/forecast answered HTTP 422: grid: " in result.output
    assert "is not the model's grid" in result.output
    assert other.calls == [] and served.calls == []
    assert predictions(era5_db) == []
    runs = ledger(era5_db)
    assert [(r[0], r[1], r[3], r[4]) for r in runs] == [(T0, "failed", 4, 0)]
    assert "HTTP 422: grid: " in runs[0][2]


def test_a_busy_service_is_retried_after_retry_after(era5_db: str, tmp_path) -> None:
    """Another client's forecast holds the model; the job's POST waits past the queue limit,
    gets 503 with Retry-After: 1, and its retry succeeds once the model is free.

    A first quick forecast sets the service's estimate of a forecast's duration, from which
    Retry-After is computed (1 s: the shortest it says).
    """
    model = BlockingPersistence()
    limits = ServiceLimits(queue_wait_s=0.5)

    def free_the_model_after_a_503(answer: Answer) -> None:
        if answer.status == 503:
            model.release.set()

    with real_service(model, limits, free_the_model_after_a_503) as (url, recorder):
        warm_up = requests.post(f"{url}/v1/forecast", json=reference_request(), timeout=60)
        assert warm_up.status_code == 200, warm_up.text
        recorder.answers.clear()
        model.hold_next = True
        other = threading.Thread(
            target=lambda: model.answers.append(
                requests.post(f"{url}/v1/forecast", json=reference_request(), timeout=60)))
        other.start()
        assert model.started.wait(30), "the other client's forecast did not start"
        result = job_for(url, era5_db, tmp_path)("--init-time", INIT)
        other.join(30)
    assert result.returncode == 0, result.output
    busy = [a for a in recorder.forecasts() if a.status == 503]
    assert len(busy) == 1 and busy[0].headers["retry-after"] == "1"
    assert sorted(a.status for a in recorder.forecasts()) == [200, 200, 503]
    retried = recorder.forecasts()[-1]
    assert retried.status == 200 and retried.at - busy[0].at >= 0.9  # Retry-After honoured
    assert [r.status_code for r in model.answers] == [200]
    assert len(predictions(era5_db)) == 80
    assert [(r[0], r[1], r[3], r[4]) for r in ledger(era5_db)] == [(T0, "succeeded", 0, 80)]


def test_a_wrong_token_fails_naming_authentication(era5_db: str, tmp_path) -> None:
    model = SlowPersistence(0)
    with real_service(model, ServiceLimits(token="the-right-token")) as (url, recorder):
        result = job_for(url, era5_db, tmp_path)("--init-time", INIT,
                                                 GRAPHCAST_API_TOKEN="a-wrong-token")
    assert result.returncode == 4, result.output
    assert ("GET /v1/model refused authentication (HTTP 401: wrong bearer token"
            in result.output)
    assert "check GRAPHCAST_API_TOKEN" in result.output
    assert "a-wrong-token" not in result.output and "the-right-token" not in result.output
    assert [(a.path, a.status) for a in recorder.answers] == [("/v1/model", 401)]
    assert model.calls == [] and predictions(era5_db) == []
    runs = ledger(era5_db)
    assert [(r[0], r[1], r[3], r[4]) for r in runs] == [(T0, "failed", 4, 0)]
    assert "refused authentication" in runs[0][2]


class BlockingPersistence(SlowPersistence):
    """Persistence whose next forecast after `hold_next` is set holds the model until
    `release` is set."""

    def __init__(self) -> None:
        super().__init__(0)
        self.hold_next = False
        self.started, self.release = threading.Event(), threading.Event()
        self.answers: list[requests.Response] = []

    def rollout(self, inputs, steps, forcings=None, *, overwrite_inputs=False):
        if self.hold_next:
            self.hold_next = False
            self.started.set()
            if not self.release.wait(60):
                raise TimeoutError("the blocking forecast was never released")
        return super().rollout(inputs, steps, forcings, overwrite_inputs=overwrite_inputs)
