"""Where the working copy is, and which release it is: defaults such as `.env`, `logs/`,
`.pgdata/`, `weights/` and `data/` resolve against the root, whatever the current directory."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project's release: the packaging metadata (pyproject.toml) reads it from here, and every
# forecast run records it (forecast_runs.project_version) so that stored values can be traced
# to the code that made them. Raise it with each release.
VERSION = "1.0.0"


def env_file_path() -> Path | None:
    """The `.env` file both sides read: `ENV_FILE` when set (empty: none, so that tests and
    other callers with an explicit environment never pick up a working copy's `.env`), else
    the project's `.env`. ValueError when `ENV_FILE` names no file."""
    chosen = os.environ.get("ENV_FILE")
    if chosen is None:
        return PROJECT_ROOT / ".env"
    if not chosen.strip():
        return None
    path = Path(chosen).expanduser()
    if not path.is_file():
        raise ValueError(f"ENV_FILE={chosen!r} is not a file")
    return path


def project_path(text: str) -> Path:
    """A path setting read from the environment or `.env`, as both sides resolve it: a
    leading ~ is the home folder, and a relative path is the project's, whatever the current
    directory (cron starts a program in $HOME, Task Scheduler in System32)."""
    return PROJECT_ROOT / Path(text).expanduser()
