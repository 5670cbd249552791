"""The `/v1/model` reply guards (`ModelSpec.from_reply`) and the wanted-variable checks
(`ModelSpec.check_wanted`), each with its own message."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from graphcast_contract.errors import ConfigError, ExitCode, InvalidReplyError
from graphcast_contract.model_spec import ModelSpec, Provenance
from tests.graphcast_contract.small_model import PROVENANCE, model_info


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda info: info.pop(key)


def _with(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda info: info.update({key: value})


MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "no-model": (_without("model"), "(KeyError: 'model')"),
    "no-grid": (_without("grid"), "(KeyError: 'grid')"),
    "no-targets": (_without("targets"), "(KeyError: 'targets')"),
    "no-step": (_without("step_hours"), "(KeyError: 'step_hours')"),
    "grid-lacks-n-lat": (lambda i: i["grid"].pop("n_lat"), "(KeyError: 'n_lat')"),
    "target-lacks-unit": (lambda i: i["targets"][0].pop("unit"), "(KeyError: 'unit')"),
    "model-not-a-string": (_with("model", 7), "model is int 7, expected str"),
    "inputs-a-string": (_with("surface_inputs", "2m_temperature"),
                        "surface_inputs is str '2m_temperature', expected list of str"),
    "levels-strings": (_with("pressure_levels", ["850"]),
                       "pressure_levels is list ['850'], expected list of int"),
    "step-a-string": (_with("step_hours", "6"), "step_hours is str '6', expected int"),
    "step-a-bool": (_with("step_hours", True), "step_hours is bool True, expected int"),
    "grid-a-list": (_with("grid", [19, 36]), "grid is list [19, 36], expected dict"),
    "grid-step-text": (lambda i: i["grid"].update(lat_step="10"),
                       "lat_step is str '10', expected int or float"),
    "atmospheric-not-bool": (lambda i: i["targets"][0].update(atmospheric="no"),
                             "atmospheric is str 'no', expected bool"),
    "targets-not-objects": (_with("targets", ["2m_temperature"]),
                            "targets is list ['2m_temperature'], expected list of dict"),
    "provenance-not-object": (_with("provenance", "fp32"),
                              "/v1/model: provenance is not an object"),
    "input-times-12h": (_with("input_times_hours", [-12, 0]),
                        "/v1/model: input_times_hours is not [-6, 0]"),
    "input-times-three": (_with("input_times_hours", [-12, -6, 0]),
                          "/v1/model: input_times_hours is not [-6, 0]"),
    "input-times-text": (_with("input_times_hours", "-6,0"),
                         "input_times_hours is str '-6,0', expected list of int"),
}


def test_a_valid_reply_is_read_with_its_provenance() -> None:
    spec = ModelSpec.from_reply(model_info())
    assert spec.model == "GraphCast_test" and spec.pressure_levels == (500, 850)
    assert spec.grid.shape == (19, 36) and spec.step_hours == 6
    assert spec.provenance == Provenance(**PROVENANCE)


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_model_reply_is_refused(case: str) -> None:
    alter, message = MALFORMED[case]
    info = model_info()
    alter(info)
    with pytest.raises(InvalidReplyError) as refused:
        ModelSpec.from_reply(info)
    assert message in str(refused.value)
    assert refused.value.exit_code == ExitCode.INVALID_REPLY


@pytest.mark.parametrize("variables, leads, message", [
    ((("geopotential", 500),), (6,), "variable 'geopotential' is not a target of "
     "GraphCast_test (targets: 2m_temperature, total_precipitation_6hr, specific_humidity)"),
    ((("specific_humidity", 700),), (6,),
     "variable 'specific_humidity' needs a level among [500, 850] (write specific_humidity@850)"),
    ((("specific_humidity", 0),), (6,), "variable 'specific_humidity' needs a level among"),
    ((("2m_temperature", 850),), (6,), "variable '2m_temperature' is single-level; drop '@850'"),
    ((("2m_temperature", 0),), (6, 9), "lead time 9 h is not a multiple of 6 h up to 240 h"),
    ((("2m_temperature", 0),), (246,), "lead time 246 h is not a multiple of 6 h up to 240 h"),
], ids=["not-a-target", "level-lacking", "level-missing", "level-on-surface",
        "lead-not-multiple", "lead-too-long"])
def test_unwanted_variables_and_leads_are_refused(variables, leads, message: str) -> None:
    spec = ModelSpec.from_reply(model_info())
    with pytest.raises(ConfigError) as refused:
        spec.check_wanted(variables, leads)
    assert message in str(refused.value)
    assert refused.value.exit_code == ExitCode.USAGE


def test_wanted_variables_the_model_has_are_accepted() -> None:
    spec = ModelSpec.from_reply(model_info())
    spec.check_wanted((("2m_temperature", 0), ("specific_humidity", 850)), (6, 240))
