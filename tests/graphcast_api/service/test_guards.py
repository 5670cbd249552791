"""Token check (401), body size limit (413), configured through the environment only."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.graphcast_api.service.helpers import REFERENCE_DIR, reference_request, serve_command

TOKEN = "s3cret-token"
GOOD = reference_request(lead_hours=[6])


@pytest.fixture(scope="module")
def guarded_server(stats_dir: Path) -> Iterator[str]:
    """The real service with a token and a 1 MiB body limit, all set by environment."""
    env = {"GRAPHCAST_API_CHECKPOINT": str(REFERENCE_DIR / "params.npz"),
           "GRAPHCAST_API_STATS_DIR": str(stats_dir), "GRAPHCAST_API_TOKEN": TOKEN,
           "GRAPHCAST_API_MAX_BODY_MB": "1", "GRAPHCAST_API_PRECISION": "fp32"}
    with serve_command([], env=env) as (url, _):
        yield url


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_is_open_and_everything_else_needs_the_token(guarded_server: str) -> None:
    assert requests.get(f"{guarded_server}/health", timeout=10).status_code == 200
    for headers, problem in (({}, "missing"), (auth("wrong"), "wrong"),
                             ({"Authorization": TOKEN}, "wrong")):
        for response in (requests.get(f"{guarded_server}/v1/model", headers=headers, timeout=10),
                         requests.post(f"{guarded_server}/v1/forecast", json=GOOD,
                                       headers=headers, timeout=10),
                         requests.get(f"{guarded_server}/docs", headers=headers, timeout=10)):
            assert response.status_code == 401
            assert problem in response.json()["detail"]
            assert len(response.headers["X-Request-ID"]) == 32  # refusals have an id too
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert requests.get(f"{guarded_server}/v1/model", headers=auth(), timeout=10).status_code == 200
    response = requests.post(f"{guarded_server}/v1/forecast", json=GOOD, headers=auth(), timeout=60)
    assert response.status_code == 200, response.text


def test_body_over_the_limit_gets_413_then_service_answers(guarded_server: str) -> None:
    too_big = b'{"padding": "' + b"x" * (1024**2) + b'"}'
    response = requests.post(f"{guarded_server}/v1/forecast", data=too_big, headers=auth(),
                             timeout=60)
    assert response.status_code == 413
    assert "larger than the limit of 1048576 bytes" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is counted as it arrives
        yield too_big[: len(too_big) // 2]
        yield too_big[len(too_big) // 2:]

    response = requests.post(f"{guarded_server}/v1/forecast", data=chunks(), timeout=60,
                             headers={**auth(), "Content-Type": "application/json"})
    assert response.status_code == 413
    response = requests.post(f"{guarded_server}/v1/forecast", json=GOOD, headers=auth(), timeout=60)
    assert response.status_code == 200, response.text
