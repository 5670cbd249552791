"""What one forecast may ask for (sites, site names, values per reply, init_time range) and
the body limit sized from the model: 413/422 naming the limit, before any model work."""
from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator

import pytest
import requests

from graphcast_api.service import model_card
from graphcast_api.service.app import ServiceLimits
from graphcast_api.service.request_parsing import RequestError, decode_forecast_request
from graphcast_contract.wire import BINARY_CONTENT_TYPE
from tests.graphcast_api.service.helpers import (
    SlowPersistence,
    reference_binary_body,
    reference_request,
    serve_in_thread,
)

ALL_VARIABLES = ([{"name": name} for name in ("2m_temperature", "mean_sea_level_pressure")]
                 + [{"name": "temperature", "level": level} for level in (500, 850)])
LIMITS = ServiceLimits(max_sites=5, max_site_name_chars=20, max_values=40)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, SlowPersistence]]:
    """A stand-in model served with small caps; yields (url, model) to count model calls."""
    model = SlowPersistence(seconds=0)
    with serve_in_thread(model, LIMITS) as url:
        yield url, model


def sites(count: int, name: str = "site") -> list[dict]:
    return [{"name": f"{name}{i}", "latitude": 10.0, "longitude": float(i)}
            for i in range(count)]


@pytest.mark.parametrize("change, words", [
    ({"init_time": "2300-01-01T00:00:00Z"},
     ["init_time", "2300-01-01", "1900-01-01 to 2200-01-01"]),
    ({"init_time": "9999-12-31T18:00:00Z"}, ["init_time", "9999-12-31", "outside"]),
    ({"init_time": "1850-06-01T00:00:00Z"}, ["init_time", "1850-06-01", "outside"]),
    # in UTC, before year 1 and after year 9999: outside what a datetime holds
    ({"init_time": "0001-01-01T00:00:00+01:00"}, ["init_time", "0001-01-01", "outside"]),
    ({"init_time": "9999-12-31T23:59:59-01:00"}, ["init_time", "9999-12-31", "outside"]),
    ({"sites": sites(6)}, ["sites: 6 sites", "limit of 5", "GRAPHCAST_API_MAX_SITES"]),
    ({"sites": [{"name": "x" * 21, "latitude": 0, "longitude": 0}]},
     ["sites.0.name: 21 characters", "limit of 20", "GRAPHCAST_API_MAX_SITE_NAME_CHARS"]),
    ({"sites": [{"name": "ok", "latitude": 0, "longitude": 0},
                {"name": "bad\nname", "latitude": 0, "longitude": 0}]},
     ["sites.1.name", "non-printable"]),
    ({"sites": [{"name": "Le\u00a0Mans", "latitude": 0, "longitude": 0}]},
     ["sites.0.name", "non-printable"]),
    ({"sites": sites(3), "variables": ALL_VARIABLES, "lead_hours": [6, 12, 18, 24]},
     ["48 values", "limit of 40", "GRAPHCAST_API_MAX_VALUES"]),
])
def test_over_a_cap_is_422_naming_it_before_the_model_runs(
        served: tuple[str, SlowPersistence], change: dict, words: list[str]) -> None:
    url, model = served
    calls = len(model.calls)
    response = requests.post(f"{url}/v1/forecast", timeout=60,
                             json={**reference_request(lead_hours=[6]), **change})
    assert response.status_code == 422, response.text
    for word in words:
        assert word in response.json()["detail"]
    assert len(model.calls) == calls  # refused before any model work
    assert len(response.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize("chunked", [False, True])
def test_binary_body_with_init_time_beyond_a_datetime_is_422_after_its_drain(
        served: tuple[str, SlowPersistence], chunked: bool) -> None:
    """Checked from the header, before the data; the data is then drained, so that the client,
    still sending, reads the 422 (with or without a Content-Length)."""
    url, model = served
    calls = len(model.calls)
    body = reference_binary_body({**reference_request(lead_hours=[6]),
                                  "init_time": "0001-01-01T00:00:00+01:00"})
    response = requests.post(f"{url}/v1/forecast", timeout=60,
                             data=iter(body) if chunked else b"".join(body),
                             headers={"Content-Type": BINARY_CONTENT_TYPE})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("init_time: 0001-01-01T00:00:00+01:00 is outside")
    assert len(model.calls) == calls


# What a refusal from the count of commas and brackets before parsing says (LIMITS).
FAR_OVER = "commas and brackets, more than the limit of 10120 that 5 sites of 20 characters allow"


@pytest.mark.parametrize("binary", [False, True])
def test_far_over_the_site_cap_is_422_naming_it_before_parsing(
        served: tuple[str, SlowPersistence], binary: bool) -> None:
    """12,000 sites (a binary header within its byte limit) are refused from the count of
    their commas and brackets, with the status and variables of the sites cap."""
    url, model = served
    calls = len(model.calls)
    request = {**reference_request(lead_hours=[6]), "sites": sites(12_000)}
    if binary:
        response = requests.post(f"{url}/v1/forecast", timeout=60,
                                 data=b"".join(reference_binary_body(request)),
                                 headers={"Content-Type": BINARY_CONTENT_TYPE})
    else:
        response = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("binary header: " if binary else "body: ")
    assert FAR_OVER in detail and "\n" not in detail
    assert "(GRAPHCAST_API_MAX_SITES, GRAPHCAST_API_MAX_SITE_NAME_CHARS)" in detail
    assert len(model.calls) == calls


def test_far_over_the_site_cap_is_refused_without_building_the_request() -> None:
    """Before, 500,000 sites in 20 MB were parsed (380 MB, 19x the body) and then refused;
    now no site is built: the Python heap's peak stays a small share of the body."""
    model = SlowPersistence(seconds=0)
    body = json.dumps({**reference_request(lead_hours=[6]), "sites": sites(100_000)}).encode()
    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as refused:
            decode_forecast_request(body, model, LIMITS.caps())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(body) > 6_000_000 and peak < len(body) / 20
    assert refused.value.status == 422 and FAR_OVER in refused.value.message


@pytest.mark.parametrize("name", ["s" * 19, ",[{" * 6 + ","])
def test_at_the_caps_is_answered(served: tuple[str, SlowPersistence], name: str) -> None:
    """Also with names all commas and brackets, which the count before parsing allows."""
    url, _ = served
    request = reference_request(sites=sites(5, name=name), variables=ALL_VARIABLES[:4],
                                lead_hours=[6, 12])
    request["init_time"] = "2199-12-31T18:00:00Z"
    response = requests.post(f"{url}/v1/forecast", json=request, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.json()["forecasts"]) == 40
    assert response.json()["forecasts"][0]["valid_time"] == "2200-01-01T00:00:00Z"


def test_model_card_lists_the_limits_and_the_body_limit_fits_the_model(
        served: tuple[str, SlowPersistence]) -> None:
    url, model = served
    limits = requests.get(f"{url}/v1/model", timeout=10).json()["limits"]
    arrays = model_card.full_request_base64_bytes(model)
    assert limits == {"max_body_bytes": LIMITS.body_bytes_for(model), "max_sites": 5,
                      "max_site_name_chars": 20, "max_values": 40,
                      "init_time_min": "1900-01-01T00:00:00Z",
                      "init_time_max": "2200-01-01T00:00:00Z"}
    full = json.dumps(reference_request(lead_hours=[6])).encode()
    assert arrays < len(full) < limits["max_body_bytes"] < arrays * 1.05 + 2 * 1024**2
    padded = b'{"padding": "' + b"x" * limits["max_body_bytes"] + b'"}'
    response = requests.post(f"{url}/v1/forecast", data=padded, timeout=60)
    assert response.status_code == 413
    assert f"limit of {limits['max_body_bytes']} bytes" in response.json()["detail"]
