"""HTTP client of the GraphCast API (docs/api.md) and validation of its forecast reply.

Retries with exponential backoff on connection errors, read timeouts and 5xx answers
come from urllib3's `Retry` mounted on a requests `Session`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from modules import plausibility
from modules.data_preparator import ModelSpec, iso_utc
from modules.job_errors import ApiError, InvalidReplyError
from modules.sites import Site

RETRY_STATUSES = (500, 502, 503, 504)


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


class ModelApiClient:
    """Talks to the GraphCast API at `base_url`; every failure becomes an ApiError or
    InvalidReplyError with a message naming the problem."""

    def __init__(self, base_url: str, *, token: str | None, connect_timeout_s: float,
                 read_timeout_s: float, retries: int, backoff_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout_s, read_timeout_s)
        retry = Retry(total=retries, connect=retries, read=retries, status=retries,
                      other=0, backoff_factor=backoff_s, status_forcelist=RETRY_STATUSES,
                      allowed_methods=None, raise_on_status=False,
                      respect_retry_after_header=True)
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def model_info(self) -> dict[str, Any]:
        """`GET /v1/model`: what the model needs and produces."""
        return self._call("GET", "/v1/model")

    def forecast(self, body: bytes) -> dict[str, Any]:
        """`POST /v1/forecast` with a JSON `body` already encoded."""
        return self._call("POST", "/v1/forecast", data=body,
                          headers={"Content-Type": "application/json"})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.exceptions.ConnectTimeout:
            raise ApiError(f"GraphCast API at {self.base_url} unreachable: connection timed out"
                           ) from None
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
            if "timed out" in str(exc).lower():
                raise ApiError(f"GraphCast API {method} {path} timed out after "
                               f"{self.timeout[1]:g} s (and every retry)") from None
            raise ApiError(f"GraphCast API at {self.base_url} unreachable "
                           f"({type(exc).__name__}); is the service running?") from None
        except requests.exceptions.RequestException as exc:
            raise ApiError(f"GraphCast API {method} {path} failed: {exc}") from None
        if response.status_code != 200:
            raise ApiError(f"GraphCast API {method} {path} answered HTTP "
                           f"{response.status_code}: {_detail(response)}")
        try:
            return response.json()
        except ValueError:
            raise InvalidReplyError(f"GraphCast API {method} {path} reply is not valid JSON "
                                    f"(starts {response.text[:60]!r})") from None


def _detail(response: requests.Response) -> str:
    try:
        return str(response.json()["detail"])[:300]
    except (ValueError, KeyError, TypeError):
        return response.text[:300] or response.reason


def parse_forecast_reply(reply: Any, spec: ModelSpec, init_time: datetime, sites: list[Site],
                         variables: tuple[tuple[str, int], ...],
                         lead_hours: tuple[int, ...]) -> list[Forecast]:
    """Check the reply holds exactly one finite, plausible value per site x variable x lead
    time for this model and init time; InvalidReplyError names the first problem."""
    if not isinstance(reply, dict) or not isinstance(reply.get("forecasts"), list):
        raise InvalidReplyError("forecast reply has no 'forecasts' list")
    if reply.get("model") != spec.model or reply.get("init_time") != iso_utc(init_time):
        raise InvalidReplyError(f"forecast reply is for {reply.get('model')!r} at "
                                f"{reply.get('init_time')!r}, not {spec.model} at "
                                f"{iso_utc(init_time)}")
    by_site = {site.name: site for site in sites}
    wanted = {(s.name, v, lev, h) for s in sites for v, lev in variables for h in lead_hours}
    forecasts: dict[tuple[str, str, int, int], Forecast] = {}
    for entry in reply["forecasts"]:
        forecast = _parse_entry(entry, spec, init_time, by_site)
        key = (forecast.site, forecast.variable, forecast.level, forecast.lead_hours)
        if key not in wanted or key in forecasts:
            raise InvalidReplyError(f"forecast reply has an unexpected or duplicate entry {key}")
        forecasts[key] = forecast
    missing = sorted(wanted - forecasts.keys())
    if missing:
        raise InvalidReplyError(f"forecast reply lacks {len(missing)} of {len(wanted)} values, "
                                f"e.g. {missing[0]}")
    return [forecasts[key] for key in sorted(forecasts, key=lambda k: (k[3], k[0], k[1], k[2]))]


def _parse_entry(entry: Any, spec: ModelSpec, init_time: datetime,
                 by_site: dict[str, Site]) -> Forecast:
    try:
        site = by_site[entry["site"]]
        variable, level = str(entry["variable"]), int(entry.get("level") or 0)
        lead, value = int(entry["lead_hours"]), entry["value"]
        label = f"{site.name} {variable}{f'@{level}' if level else ''} +{lead} h"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidReplyError(f"forecast value for {label} is not a number: {value!r}")
        if not math.isfinite(value):
            raise InvalidReplyError(f"forecast value for {label} is not finite: {value}")
        issue = plausibility.problem(variable, [value])
        if issue:
            raise InvalidReplyError(f"forecast value for {label}: {issue}")
        unit = str(entry["unit"])
        target = spec.targets.get(variable)
        if target is not None and unit != target.unit:
            raise InvalidReplyError(f"forecast unit for {label} is {unit!r}, "
                                    f"the model declares {target.unit!r}")
        valid_time = init_time + timedelta(hours=lead)
        if entry["valid_time"] != iso_utc(valid_time):
            raise InvalidReplyError(f"forecast valid_time for {label} is "
                                    f"{entry['valid_time']!r}, expected {iso_utc(valid_time)}")
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidReplyError(f"forecast entry {json.dumps(entry)[:200]} is malformed "
                                f"({type(exc).__name__}: {exc})") from None
    return Forecast(site.name, site.latitude, site.longitude, variable, level, unit, lead,
                    valid_time, float(value))
