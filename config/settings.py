"""Settings of the batch job, read from the environment and an optional `.env` file.

Every setting has a default that works on the embedded set-up; see `.env.example` and the
README's configuration table.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv
from psycopg2 import ProgrammingError
from psycopg2.extensions import parse_dsn

from graphcast_contract import project
from graphcast_contract.project import PROJECT_ROOT, within
from graphcast_contract.sources import DEFAULT_SOURCE, ECMWF_OPENDATA_URL, InputSource
from graphcast_contract.wire import bearer_token_problem


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Each default here is the one a variable left unset gets (see
    ENVIRONMENT). `database_url` is None when the embedded server is used."""

    database_url: str | None = None
    embedded_pg_dir: Path = PROJECT_ROOT / ".pgdata"
    api_url: str = "http://127.0.0.1:8001"  # the service forecasting from ERA5 (GraphCast_small)
    log_dir: Path = PROJECT_ROOT / "logs"
    ifs_api_url: str = "http://127.0.0.1:8002"  # the service for IFS open data (operational)
    source: InputSource = DEFAULT_SOURCE
    ifs_opendata_url: str = ECMWF_OPENDATA_URL  # or a mirror with the same layout
    ifs_opendata_cache_dir: Path = PROJECT_ROOT / "data" / "ifs-opendata"
    api_token: str | None = None
    api_connect_timeout_s: float = 10.0
    api_timeout_s: float = 900.0
    api_retries: int = 3
    api_backoff_s: float = 2.0
    forecast_lag_days: int = 6
    lead_hours: tuple[int, ...] = (6, 12, 18, 24)
    variables: tuple[tuple[str, int], ...] = (("2m_temperature", 0),)
    sites_file: Path = PROJECT_ROOT / "config" / "sites.csv"
    log_level: str = "INFO"
    era5_min_grid_step: float = 0.1

    def api_url_for(self, source: InputSource) -> str:
        """The address of the service that forecasts from `source`'s initial conditions."""
        return self.ifs_api_url if source is InputSource.IFS_OPENDATA else self.api_url

    def secrets(self) -> tuple[str, ...]:
        """The secret values to mask in logs and ledger reasons: the database password
        (when DATABASE_URL has one) and the API token."""
        password = parse_dsn(self.database_url).get("password") if self.database_url else None
        return tuple(value for value in (password, self.api_token) if value)


# A parser turns the text of the variable `name` into a setting, or raises SettingsError.
Parser = Callable[[str, str], object]


def _path(name: str, text: str) -> Path:
    """A relative path is the project's (graphcast_contract.project.project_path); an empty
    one is refused, as it would name the project folder itself."""
    if not text.strip():
        raise SettingsError(f"{name} is empty: give a path, or unset it for the default")
    return project.project_path(text)


# the levels LOG_LEVEL may name (README, configuration table)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(name: str, text: str) -> str:
    """One of LOG_LEVELS, in any case."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"{name}={text!r} must be one of {', '.join(LOG_LEVELS)}")
    return level


# Upper bounds of the number settings: beyond them a value is a typo, and would overflow
# (a date FORECAST_LAG_DAYS back, the backoff 2^retries) or wait forever.
MAX_WAIT_S = 86_400.0     # timeouts and backoff factor: a day
MAX_RETRIES = 100
MAX_LAG_DAYS = 36_500     # a century
MAX_GRID_STEP = 90.0      # degrees: the coarsest global grid (3 latitudes)
_KINDS = {int: "whole number", float: "finite number"}


def _number(kind: type[int] | type[float], minimum: float, maximum: float) -> Parser:
    """A parser of a finite `kind` number from `minimum` to `maximum` (project.within: nan,
    inf and 1e400 are refused here, not found where the number is used)."""
    def parse(name: str, text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise SettingsError(f"{name}={text!r} is not a valid {kind.__name__}") from None
        if not within(value, minimum, maximum):
            raise SettingsError(f"{name}={text!r} must be a {_KINDS[kind]} from {minimum:g} "
                                f"to {maximum:g}")
        return value
    return parse


def _url(name: str, text: str) -> str:
    """An http(s) URL with a host (and a port from 1 to 65535 if it names one): without its
    scheme or with a typo in the port, the URL would fail every run as an unreachable
    service, recorded as a failed forecast, without naming the setting."""
    try:
        parts = urlsplit(text)
        usable = (parts.scheme in ("http", "https") and bool(parts.hostname)
                  and parts.port != 0)  # .port: ValueError if not a number or above 65535
    except ValueError:  # that, or an unclosed [IPv6 address]
        usable = False
    if not usable:
        raise SettingsError(f"{name}={text!r} is not an http:// or https:// URL with a host "
                            "and a valid port, if any (e.g. http://127.0.0.1:8001)")
    return text


def _lead_hours(name: str, text: str) -> tuple[int, ...]:
    try:
        hours = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a comma-separated list of hours") from None
    if not hours or any(h <= 0 for h in hours) or len(set(hours)) != len(hours):
        raise SettingsError(f"{name}={text!r} must list distinct positive hours")
    return hours


def _variables(name: str, text: str) -> tuple[tuple[str, int], ...]:
    """`2m_temperature,temperature@850` -> (("2m_temperature", 0), ("temperature", 850))."""
    variables = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        variable, _, level = part.partition("@")
        if not variable or (level and not level.isdecimal()):  # isdigit() takes '²'
            raise SettingsError(f"{name} entry {part!r} is not NAME or NAME@LEVEL")
        variables.append((variable, int(level or 0)))
    if not variables:
        raise SettingsError(f"{name} is empty")
    return tuple(variables)


def _source(name: str, text: str) -> InputSource:
    try:
        return InputSource.parse(text)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def _database_url(name: str, text: str) -> str | None:
    """The URL if libpq can parse it; empty: None. Its text is never echoed: libpq's own
    message quotes the part it fails on, which may be the password."""
    if not text:
        return None
    if not _libpq_parses(text) or _stray_at_sign(text):
        raise SettingsError(f"{name} malformed (not a valid PostgreSQL URL or key=value "
                            "string; percent-encode special characters of the password, "
                            "e.g. % as %25, @ as %40, : as %3A, / as %2F)")
    return text


def _libpq_parses(text: str) -> bool:
    try:
        parse_dsn(text)
    except ProgrammingError:
        return False
    return True


def _stray_at_sign(text: str) -> bool:
    """A URL whose '@' is not the one that ends its user-info: a password with an unencoded
    '/', '?', '#' or '@', which libpq parses as some other part (its error then quotes a piece
    of the password as a port or host name)."""
    _, separator, rest = text.partition("://")
    if not separator:
        return False  # key=value form
    authority = rest
    for end in "/?#":
        authority = authority.split(end, 1)[0]
    return authority.count("@") > 1 or "@" in rest[len(authority):]


def _api_token(name: str, text: str) -> str | None:
    """The bearer token if a client can send it (wire.bearer_token_problem); empty: None."""
    if not text:
        return None
    problem = bearer_token_problem(text)
    if problem:
        raise SettingsError(f"{name} {problem}")
    return text


# environment variable -> (Settings field, parser); an unset variable leaves the field's
# default. In this order, so that an error names the first unusable setting.
ENVIRONMENT: dict[str, tuple[str, Parser]] = {
    "DATABASE_URL": ("database_url", _database_url),
    "EMBEDDED_PG_DIR": ("embedded_pg_dir", _path),
    "GRAPHCAST_API_URL": ("api_url", _url),
    "LOG_DIR": ("log_dir", _path),
    "GRAPHCAST_API_URL_IFS_OPENDATA": ("ifs_api_url", _url),
    "FORECAST_SOURCE": ("source", _source),
    "IFS_OPENDATA_URL": ("ifs_opendata_url", _url),
    "IFS_OPENDATA_CACHE_DIR": ("ifs_opendata_cache_dir", _path),
    "GRAPHCAST_API_TOKEN": ("api_token", _api_token),
    "GRAPHCAST_API_CONNECT_TIMEOUT_S": ("api_connect_timeout_s",
                                        _number(float, 0.01, MAX_WAIT_S)),
    "GRAPHCAST_API_TIMEOUT_S": ("api_timeout_s", _number(float, 0.01, MAX_WAIT_S)),
    "GRAPHCAST_API_RETRIES": ("api_retries", _number(int, 0, MAX_RETRIES)),
    "GRAPHCAST_API_BACKOFF_S": ("api_backoff_s", _number(float, 0, MAX_WAIT_S)),
    "FORECAST_LAG_DAYS": ("forecast_lag_days", _number(int, 0, MAX_LAG_DAYS)),
    "FORECAST_LEAD_HOURS": ("lead_hours", _lead_hours),
    "FORECAST_VARIABLES": ("variables", _variables),
    "SITES_FILE": ("sites_file", _path),
    "LOG_LEVEL": ("log_level", _log_level),
    "ERA5_MIN_GRID_STEP": ("era5_min_grid_step", _number(float, 0.001, MAX_GRID_STEP)),
}


def env_file_path() -> Path | None:
    """The `.env` file to read (see `graphcast_contract.project.env_file_path`)."""
    try:
        return project.env_file_path()
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def load_settings(env_file: Path | None = None) -> Settings:
    """Read settings; values already in the environment win over the `.env` file
    (`env_file`, else `env_file_path()`).

    Raises SettingsError naming the first setting with an unusable value.
    """
    try:
        text = project.read_env_file(env_file)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    load_dotenv(stream=io.StringIO(text), override=False)
    return Settings(**{field: parse(name, os.environ[name])
                       for name, (field, parse) in ENVIRONMENT.items() if name in os.environ})
