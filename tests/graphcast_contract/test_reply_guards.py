"""Every guard of the forecast reply parser, each refused with its own message, and the
clamping of small negatives of non-negative variables (both sides of the bound)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from graphcast_contract.cycles import iso_utc
from graphcast_contract.errors import ExitCode, InvalidReplyError
from graphcast_contract.model_spec import ModelSpec, Provenance
from graphcast_contract.reply import parse_forecast_reply
from graphcast_contract.request import ForecastContext, Site
from graphcast_contract.variables import NON_NEGATIVE, PLAUSIBLE_RANGES, UNITS
from tests.graphcast_contract.small_model import PROVENANCE, VARIABLES, model_info

INIT = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)
SITES = (Site("Paris", 48.8566, 2.3522), Site("Oslo", 59.9139, 10.7522))
LEADS = (6, 12)
VALUES = {"2m_temperature": 280.0, "total_precipitation_6hr": 0.002, "specific_humidity": 0.004}
SPEC = ModelSpec.from_reply(model_info())
CONTEXT = ForecastContext(INIT, SITES, VARIABLES, LEADS)


def reply() -> dict[str, Any]:
    """A valid forecast reply for CONTEXT."""
    entries = [{"site": site.name, "latitude": site.latitude, "longitude": site.longitude,
                "variable": name, "level": level, "unit": UNITS[name], "lead_hours": lead,
                "valid_time": iso_utc(INIT + timedelta(hours=lead)), "value": VALUES[name]}
               for lead in LEADS for site in SITES for name, level in VARIABLES]
    return {"model": "GraphCast_test", "init_time": iso_utc(INIT), "forecasts": entries,
            "timings": {"total_s": 0.1}, "provenance": dict(PROVENANCE)}


def parse(body: dict[str, Any]):
    return parse_forecast_reply(body, SPEC, CONTEXT)


def test_a_valid_reply_is_accepted_in_order() -> None:
    forecast = parse(reply())
    assert len(forecast.values) == 12 and forecast.clamped == 0
    assert [(f.lead_hours, f.site) for f in forecast.values][:3] == [
        (6, "Oslo"), (6, "Oslo"), (6, "Oslo")]
    assert forecast.provenance == Provenance(**PROVENANCE)


def _set(index: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def alter(body: dict[str, Any]) -> None:
        body["forecasts"][index][key] = value
    return alter


def _drop_key(key: str) -> Callable[[dict[str, Any]], None]:
    def alter(body: dict[str, Any]) -> None:
        del body["forecasts"][0][key]
    return alter


def _duplicate(body: dict[str, Any]) -> None:
    body["forecasts"].append(copy.deepcopy(body["forecasts"][0]))


def _unexpected_level(body: dict[str, Any]) -> None:
    extra = copy.deepcopy(body["forecasts"][2])  # specific_humidity@850 at Paris +6 h
    extra["level"] = 500
    body["forecasts"].append(extra)


def _unexpected_lead(body: dict[str, Any]) -> None:
    extra = copy.deepcopy(body["forecasts"][0])
    extra["lead_hours"], extra["valid_time"] = 18, iso_utc(INIT + timedelta(hours=18))
    body["forecasts"].append(extra)


# Each guard: how the reply is altered, and the message that names the problem.
GUARDS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "wrong-model": (lambda b: b.update(model="GraphCast_other"),
                    "forecast reply is for 'GraphCast_other' at '2022-01-01T06:00:00Z', "
                    "not GraphCast_test at 2022-01-01T06:00:00Z"),
    "wrong-init-time": (lambda b: b.update(init_time="2022-01-01T00:00:00Z"),
                        "forecast reply is for 'GraphCast_test' at '2022-01-01T00:00:00Z'"),
    "no-forecasts-list": (lambda b: b.update(forecasts={"a": 1}),
                          "forecast reply has no 'forecasts' list"),
    "unexpected-level": (_unexpected_level, "forecast reply has an unexpected or duplicate "
                         "entry ('Paris', 'specific_humidity', 500, 6)"),
    "unexpected-lead": (_unexpected_lead, "forecast reply has an unexpected or duplicate "
                        "entry ('Paris', '2m_temperature', 0, 18)"),
    "duplicate": (_duplicate, "forecast reply has an unexpected or duplicate entry "
                  "('Paris', '2m_temperature', 0, 6)"),
    "missing": (lambda b: b["forecasts"].pop(), "forecast reply lacks 1 of 12 values, "
                "e.g. ('Oslo', 'specific_humidity', 850, 12)"),
    "string-value": (_set(0, "value", "280.0"),
                     "forecast value for Paris 2m_temperature +6 h is not a number: '280.0'"),
    "bool-value": (_set(0, "value", True),
                   "forecast value for Paris 2m_temperature +6 h is not a number: True"),
    "null-value": (_set(0, "value", None),
                   "forecast value for Paris 2m_temperature +6 h is not a number: None"),
    "infinite-value": (_set(0, "value", float("inf")),
                       "forecast value for Paris 2m_temperature +6 h is not finite: inf"),
    "implausible-value": (_set(0, "value", 2800.0),
                          "forecast value for Paris 2m_temperature +6 h: values 2800..2800 "
                          "outside the plausible range 170..350"),
    "below-bound": (_set(1, "value", -0.0011),
                    "forecast value for Paris total_precipitation_6hr +6 h: values "
                    "-0.0011..-0.0011 outside the plausible range -0.001..0.5"),
    "wrong-unit": (_set(0, "unit", "degC"), "forecast unit for Paris 2m_temperature +6 h is "
                   "'degC', the model declares 'K'"),
    "wrong-valid-time": (_set(0, "valid_time", "2022-01-01T18:00:00Z"),
                         "forecast valid_time for Paris 2m_temperature +6 h is "
                         "'2022-01-01T18:00:00Z', expected 2022-01-01T12:00:00Z"),
    "unknown-site": (_set(0, "site", "Atlantis"), "is malformed (KeyError: 'Atlantis')"),
    "missing-unit": (_drop_key("unit"), "is malformed (KeyError: 'unit')"),
    "huge-integer": (_set(0, "value", 10**400),
                     "is malformed (OverflowError: int too large to convert to float)"),
    "lead-not-a-number": (_set(0, "lead_hours", "six"),
                          "is malformed (TypeError: lead_hours must be an integer, got 'six')"),
    "fractional-lead": (_set(0, "lead_hours", 6.5),  # int() made it 6 h
                        "is malformed (TypeError: lead_hours must be an integer, got 6.5)"),
    "fractional-level": (_set(2, "level", 850.5),
                         "is malformed (TypeError: level must be an integer, got 850.5)"),
    "entry-not-an-object": (_set(0, "site", ["Paris"]), "is malformed (TypeError:"),
    "provenance-not-strings": (lambda b: b["provenance"].update(precision=32),
                               "forecast reply: provenance precision is not a string: 32"),
}


@pytest.mark.parametrize("guard", GUARDS)
def test_each_guard_refuses_with_its_own_message(guard: str) -> None:
    alter, message = GUARDS[guard]
    body = reply()
    alter(body)
    with pytest.raises(InvalidReplyError) as refused:
        parse(body)
    assert message in str(refused.value)
    assert refused.value.exit_code == ExitCode.INVALID_REPLY == 5


def test_guard_messages_are_distinct() -> None:
    messages = []
    for alter, _ in GUARDS.values():
        body = reply()
        alter(body)
        with pytest.raises(InvalidReplyError) as refused:
            parse(body)
        messages.append(str(refused.value))
    assert len(set(messages)) == len(messages)


def test_non_negative_is_a_fact_of_the_catalogue() -> None:
    assert NON_NEGATIVE == {"total_precipitation_6hr", "specific_humidity"}
    for name in NON_NEGATIVE:
        assert PLAUSIBLE_RANGES[name][0] < 0  # the bound below which values are refused


@pytest.mark.parametrize("value, stored", [
    (-1e-3, 0.0),       # exactly the documented lower bound: still plausible, clamped
    (-2.5e-5, 0.0),
    (-0.0, -0.0),       # not below 0: nothing to clamp
    (0.0, 0.0),
    (3e-4, 3e-4),
])
def test_small_negatives_of_non_negative_variables_are_stored_as_zero(
        value: float, stored: float) -> None:
    body = reply()
    body["forecasts"][1]["value"] = value    # Paris total_precipitation_6hr +6 h
    body["forecasts"][8]["value"] = value    # Paris specific_humidity@850 +12 h
    forecast = parse(body)
    by_key = {(f.site, f.variable, f.lead_hours): f.value for f in forecast.values}
    assert by_key[("Paris", "total_precipitation_6hr", 6)] == stored
    assert by_key[("Paris", "specific_humidity", 12)] == stored
    assert forecast.clamped == (2 if value < 0 else 0)


def test_negative_values_of_signed_variables_are_kept() -> None:
    spec = ModelSpec.from_reply({**model_info(), "targets": [
        {"name": "10m_u_component_of_wind", "unit": UNITS["10m_u_component_of_wind"],
         "atmospheric": False}]})
    context = ForecastContext(INIT, SITES[:1], (("10m_u_component_of_wind", 0),), (6,))
    body = {"model": "GraphCast_test", "init_time": iso_utc(INIT), "forecasts": [{
        "site": "Paris", "latitude": 48.8566, "longitude": 2.3522,
        "variable": "10m_u_component_of_wind", "level": 0, "unit": "m s-1", "lead_hours": 6,
        "valid_time": iso_utc(INIT + timedelta(hours=6)), "value": -0.0004}]}
    forecast = parse_forecast_reply(body, spec, context)
    assert forecast.values[0].value == -0.0004 and forecast.clamped == 0
    assert forecast.provenance == Provenance()  # an older service without provenance
