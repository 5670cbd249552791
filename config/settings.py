"""Settings of the batch job, read from the environment and an optional `.env` file.

Every setting has a default that works on the embedded set-up; see `.env.example` and the
README's configuration table.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv
from psycopg2 import ProgrammingError
from psycopg2.extensions import parse_dsn

from graphcast_contract import project
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import DEFAULT_SOURCE, ECMWF_OPENDATA_URL, InputSource


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. `database_url` is None when the embedded server is used."""

    database_url: str | None
    embedded_pg_dir: Path
    api_url: str  # the service forecasting from ERA5 (GraphCast_small, port 8001)
    log_dir: Path
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


_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what a header can carry


def _number(name: str, default: str, kind: type, minimum: float) -> float | int:
    text = os.environ.get(name, default)
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a valid {kind.__name__}") from None
    if value < minimum:
        raise SettingsError(f"{name}={text!r} must be at least {minimum}")
    return value


def _lead_hours(text: str) -> tuple[int, ...]:
    try:
        hours = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"FORECAST_LEAD_HOURS={text!r} is not a comma-separated "
                            "list of hours") from None
    if not hours or any(h <= 0 for h in hours) or len(set(hours)) != len(hours):
        raise SettingsError(f"FORECAST_LEAD_HOURS={text!r} must list distinct positive hours")
    return hours


def _variables(text: str) -> tuple[tuple[str, int], ...]:
    """`2m_temperature,temperature@850` -> (("2m_temperature", 0), ("temperature", 850))."""
    variables = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, level = part.partition("@")
        if not name or (level and not level.isdigit()):
            raise SettingsError(f"FORECAST_VARIABLES entry {part!r} is not NAME or NAME@LEVEL")
        variables.append((name, int(level or 0)))
    if not variables:
        raise SettingsError("FORECAST_VARIABLES is empty")
    return tuple(variables)


def _source(text: str) -> InputSource:
    try:
        return InputSource.parse(text)
    except ValueError as exc:
        raise SettingsError(f"FORECAST_SOURCE: {exc}") from None


def _database_url(text: str | None) -> str | None:
    """The DATABASE_URL if libpq can parse it. Its text is never echoed: libpq's own
    message quotes the part it fails on, which may be the password."""
    if not text:
        return None
    try:
        parse_dsn(text)
    except ProgrammingError:
        raise SettingsError("DATABASE_URL malformed (not a valid PostgreSQL URL or key=value "
                            "string; percent-encode special characters of the password, "
                            "e.g. % as %25, @ as %40, : as %3A)") from None
    return text


def _api_token(text: str | None) -> str | None:
    """The bearer token if every character is printable ASCII without whitespace."""
    if not text:
        return None
    if not _TOKEN.fullmatch(text):
        raise SettingsError("GRAPHCAST_API_TOKEN contains whitespace, control or non-ASCII "
                            "characters (value not shown)")
    return text


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
    env_file = env_file or env_file_path()
    if env_file is not None:
        load_dotenv(env_file, override=False)
    return Settings(
        database_url=_database_url(os.environ.get("DATABASE_URL")),
        embedded_pg_dir=Path(os.environ.get("EMBEDDED_PG_DIR", PROJECT_ROOT / ".pgdata")),
        api_url=os.environ.get("GRAPHCAST_API_URL", "http://127.0.0.1:8001"),
        log_dir=Path(os.environ.get("LOG_DIR", PROJECT_ROOT / "logs")),
        ifs_api_url=os.environ.get("GRAPHCAST_API_URL_IFS_OPENDATA", "http://127.0.0.1:8002"),
        source=_source(os.environ.get("FORECAST_SOURCE", DEFAULT_SOURCE.value)),
        ifs_opendata_url=os.environ.get("IFS_OPENDATA_URL", ECMWF_OPENDATA_URL),
        ifs_opendata_cache_dir=Path(os.environ.get("IFS_OPENDATA_CACHE_DIR",
                                                   PROJECT_ROOT / "data" / "ifs-opendata")),
        api_token=_api_token(os.environ.get("GRAPHCAST_API_TOKEN")),
        api_connect_timeout_s=_number("GRAPHCAST_API_CONNECT_TIMEOUT_S", "10", float, 0.01),
        api_timeout_s=_number("GRAPHCAST_API_TIMEOUT_S", "900", float, 0.01),
        api_retries=_number("GRAPHCAST_API_RETRIES", "3", int, 0),
        api_backoff_s=_number("GRAPHCAST_API_BACKOFF_S", "2", float, 0),
        forecast_lag_days=_number("FORECAST_LAG_DAYS", "6", int, 0),
        lead_hours=_lead_hours(os.environ.get("FORECAST_LEAD_HOURS", "6,12,18,24")),
        variables=_variables(os.environ.get("FORECAST_VARIABLES", "2m_temperature")),
        sites_file=Path(os.environ.get("SITES_FILE", PROJECT_ROOT / "config" / "sites.csv")),
        log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        era5_min_grid_step=_number("ERA5_MIN_GRID_STEP", "0.1", float, 0.001),
    )
