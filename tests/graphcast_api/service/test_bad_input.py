"""Bad requests get a 4xx naming the problem, and the real service answers the next good one."""
from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable

import numpy as np
import pytest
import requests

from tests.graphcast_api.service.helpers import encode, reference_request

GOOD = reference_request(lead_hours=[6])


def mutated(change: Callable[[dict], object]) -> bytes:
    """GOOD with `change` applied, as JSON bytes."""
    body = copy.deepcopy(GOOD)
    change(body)
    return json.dumps(body).encode()


def set_path(path: str, value: object) -> Callable[[dict], None]:
    """A change that sets the dotted `path` (list indices as numbers) to `value`."""
    *parents, last = path.split(".")

    def change(body: dict) -> None:
        node = body
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return change


def with_value(name: str, value: float) -> Callable[[dict], None]:
    """A change that puts `value` into input `name`'s array."""
    def change(body: dict) -> None:
        array = np.frombuffer(base64.b64decode(body["inputs"][name]["data"]), "<f4").copy()
        array[len(array) // 2] = value
        body["inputs"][name] = encode(array.reshape(body["inputs"][name]["shape"]))
    return change


CASES = {  # id -> (body, status, words the message must contain)
    "malformed JSON": (b'{"init_time": "2022-01-01T06:00:00Z",', 400, ["not valid JSON"]),
    "not an object": (b"[1, 2]", 422, ["body"]),
    "missing field": (mutated(lambda b: b.pop("init_time")), 422, ["init_time", "required"]),
    "bad init_time": (mutated(set_path("init_time", "yesterday")), 422, ["init_time"]),
    "missing variable": (mutated(lambda b: b["inputs"].pop("temperature")), 422,
                         ["inputs", "missing", "temperature"]),
    "missing static": (mutated(lambda b: b["static"].pop("land_sea_mask")), 422,
                       ["static", "missing", "land_sea_mask"]),
    "unknown input": (mutated(set_path("inputs.snow", GOOD["inputs"]["2m_temperature"])), 422,
                      ["inputs", "unknown", "snow"]),
    "missing level": (mutated(lambda b: b["pressure_levels"].pop()), 422,
                      ["pressure_levels", "1000"]),
    "wrong grid": (mutated(set_path("grid.lat_step", 5.0)), 422, ["grid"]),
    "wrong shape": (mutated(set_path("inputs.temperature.shape", [2, 13, 36, 19])), 422,
                    ["inputs.temperature.shape", "[2, 13, 19, 36]"]),
    "wrong dtype": (mutated(set_path("inputs.temperature.dtype", "float64")), 422,
                    ["inputs.temperature.dtype", "float32"]),
    "undecodable base64": (mutated(set_path("static.land_sea_mask.data", "@@not base64@@")),
                           422, ["static.land_sea_mask.data", "base64"]),
    "truncated array": (mutated(set_path("static.land_sea_mask.data", "AAAAAA==")), 422,
                        ["static.land_sea_mask.data", "bytes"]),
    "NaN value": (mutated(with_value("temperature", np.nan)), 422,
                  ["inputs.temperature.data", "NaN"]),
    "inf value": (mutated(with_value("2m_temperature", np.inf)), 422,
                  ["inputs.2m_temperature.data", "infinite"]),
    "lead not multiple of 6": (mutated(set_path("lead_hours", [6, 9])), 422,
                               ["lead_hours.1", "9"]),
    "lead beyond maximum": (mutated(set_path("lead_hours", [246])), 422,
                            ["lead_hours.0", "240"]),
    "lead zero": (mutated(set_path("lead_hours", [0])), 422, ["lead_hours.0"]),
    "duplicate lead": (mutated(set_path("lead_hours", [6, 6])), 422, ["lead_hours", "dupl"]),
    "latitude above 90": (mutated(set_path("sites.0.latitude", 91.0)), 422,
                          ["sites.0.latitude", "90"]),
    "latitude below -90": (mutated(set_path("sites.0.latitude", -90.5)), 422,
                           ["sites.0.latitude"]),
    "empty site list": (mutated(set_path("sites", [])), 422, ["sites", "at least 1"]),
    "unknown variable": (mutated(set_path("variables", [{"name": "snow_depth"}])), 422,
                         ["variables.0.name", "snow_depth"]),
    "atmospheric without level": (mutated(set_path("variables", [{"name": "temperature"}])),
                                  422, ["variables.0.level", "temperature"]),
    "level not in model": (mutated(set_path("variables", [{"name": "temperature",
                                                           "level": 800}])),
                           422, ["variables.0.level", "800"]),
    "surface with level": (mutated(set_path("variables", [{"name": "2m_temperature",
                                                           "level": 850}])),
                           422, ["variables.0.level", "single-level"]),
}


@pytest.mark.parametrize("body, status, words", CASES.values(), ids=CASES.keys())
def test_bad_request_is_refused_then_service_answers(
    reference_server: str, body: bytes, status: int, words: list[str]
) -> None:
    response = requests.post(f"{reference_server}/v1/forecast", data=body,
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word in detail, detail
    good = requests.post(f"{reference_server}/v1/forecast", json=GOOD, timeout=60)
    assert good.status_code == 200, good.text
    assert len(good.json()["forecasts"]) == 2
