"""The forecast reply of docs/api.md, checked against what was asked."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from graphcast_contract.cycles import iso_utc
from graphcast_contract.errors import InvalidReplyError
from graphcast_contract.model_spec import ModelSpec, Provenance
from graphcast_contract.request import ForecastContext, Site
from graphcast_contract.variables import NON_NEGATIVE, plausibility_problem


@dataclass(frozen=True)
class Forecast:
    """One forecast value at a site, ready for the predictions table."""

    site: str
    latitude: float
    longitude: float
    variable: str
    level: int
    unit: str
    lead_hours: int
    forecast_time: datetime
    value: float


@dataclass(frozen=True)
class CycleForecast:
    """Every value of one cycle's reply, ordered by lead time, site, variable and level.

    `clamped` counts the small negative values of non-negative variables stored as 0.
    """

    model: str
    init_time: datetime
    values: tuple[Forecast, ...]
    clamped: int = 0
    provenance: Provenance = field(default_factory=Provenance)


def parse_forecast_reply(reply: Any, spec: ModelSpec, context: ForecastContext
                         ) -> CycleForecast:
    """Check the reply holds exactly one finite, plausible value per site x variable x lead
    time for this model and init time; InvalidReplyError names the first problem."""
    if not isinstance(reply, dict) or not isinstance(reply.get("forecasts"), list):
        raise InvalidReplyError("forecast reply has no 'forecasts' list")
    init = iso_utc(context.init_time)
    if reply.get("model") != spec.model or reply.get("init_time") != init:
        raise InvalidReplyError(f"forecast reply is for {reply.get('model')!r} at "
                                f"{reply.get('init_time')!r}, not {spec.model} at {init}")
    by_site = {site.name: site for site in context.sites}
    wanted = context.wanted()
    forecasts: dict[tuple[str, str, int, int], Forecast] = {}
    for entry in reply["forecasts"]:
        forecast = _parse_entry(entry, spec, context, by_site)
        key = (forecast.site, forecast.variable, forecast.level, forecast.lead_hours)
        if key not in wanted or key in forecasts:
            raise InvalidReplyError(f"forecast reply has an unexpected or duplicate entry {key}")
        forecasts[key] = forecast
    missing = sorted(wanted - forecasts.keys())
    if missing:
        raise InvalidReplyError(f"forecast reply lacks {len(missing)} of {len(wanted)} values, "
                                f"e.g. {missing[0]}")
    order = sorted(forecasts, key=lambda k: (k[3], k[0], k[1], k[2]))
    values = tuple(_clamp(forecasts[k]) for k in order)
    clamped = sum(1 for k, value in zip(order, values, strict=True)
                  if value.value != forecasts[k].value)
    provenance = Provenance.from_reply(reply, "forecast reply")
    return CycleForecast(spec.model, context.init_time, values, clamped, provenance)


def _clamp(forecast: Forecast) -> Forecast:
    """A non-negative quantity's small negative (plausible, so above the catalogue's lower
    bound) is numerical noise of the model's output: store it as the physical 0."""
    if forecast.variable in NON_NEGATIVE and forecast.value < 0:
        return replace(forecast, value=0.0)
    return forecast


def _integer(value: Any, name: str) -> int:
    """A JSON integer as it is: int() would truncate a lead time of 6.5 to 6 h."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return value


def _parse_entry(entry: Any, spec: ModelSpec, context: ForecastContext,
                 by_site: dict[str, Site]) -> Forecast:
    try:
        site = by_site[entry["site"]]
        variable, level = str(entry["variable"]), _integer(entry.get("level") or 0, "level")
        lead, value = _integer(entry["lead_hours"], "lead_hours"), entry["value"]
        label = f"{site.name} {variable}{f'@{level}' if level else ''} +{lead} h"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidReplyError(f"forecast value for {label} is not a number: {value!r}")
        if not math.isfinite(value):
            raise InvalidReplyError(f"forecast value for {label} is not finite: {value}")
        issue = plausibility_problem(variable, [value])
        if issue:
            raise InvalidReplyError(f"forecast value for {label}: {issue}")
        unit = str(entry["unit"])
        target = spec.targets.get(variable)
        if target is not None and unit != target.unit:
            raise InvalidReplyError(f"forecast unit for {label} is {unit!r}, "
                                    f"the model declares {target.unit!r}")
        valid_time = context.valid_time(lead)
        if entry["valid_time"] != iso_utc(valid_time):
            raise InvalidReplyError(f"forecast valid_time for {label} is "
                                    f"{entry['valid_time']!r}, expected {iso_utc(valid_time)}")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:  # 1e400 as JSON int
        raise InvalidReplyError(f"forecast entry {json.dumps(entry)[:200]} is malformed "
                                f"({type(exc).__name__}: {exc})") from None
    return Forecast(site.name, site.latitude, site.longitude, variable, level, unit, lead,
                    valid_time, float(value))
