"""Settings of the batch job, read from the environment and an optional `.env` file.

Every setting has a default that works on the embedded set-up; see `.env.example`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. `database_url` is None when the embedded server is used."""

    database_url: str | None
    embedded_pg_dir: Path
    api_url: str
    log_dir: Path


def load_settings(env_file: Path | None = None) -> Settings:
    """Read settings; values already in the environment win over the `.env` file."""
    load_dotenv(env_file or PROJECT_ROOT / ".env", override=False)
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or None,
        embedded_pg_dir=Path(os.environ.get("EMBEDDED_PG_DIR", PROJECT_ROOT / ".pgdata")),
        api_url=os.environ.get("GRAPHCAST_API_URL", "http://127.0.0.1:8001"),
        log_dir=Path(os.environ.get("LOG_DIR", PROJECT_ROOT / "logs")),
    )
