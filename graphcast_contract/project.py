"""Where the working copy is, and which release it is: defaults such as `.env`, `logs/`,
`.pgdata/`, `weights/` and `data/` resolve against the root, whatever the current directory.
Also what the job's and the service's settings share: the `.env` file and the rule of a
number setting."""
from __future__ import annotations

import math
import os
from pathlib import Path

from graphcast_contract.files import read_utf8_text

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


def read_env_file(env_file: Path | None = None) -> str:
    """The text of the `.env` file both sides read: `env_file`, else `env_file_path()`; ''
    when there is no such file (the project's `.env` is optional). ValueError naming the file
    when it cannot be read or is not UTF-8 text (saved as UTF-16 or Windows-1252): every
    program then stops with that one line instead of a traceback."""
    path = env_file or env_file_path()
    if path is None or not path.exists():  # a folder or a file without read access: named
        return ""
    return read_utf8_text(path)


def within(number: float, minimum: float, maximum: float) -> bool:
    """Whether `number` is finite and from `minimum` to `maximum`: the rule of every number
    setting on both sides. float() takes 'nan', 'inf' and '1e400' (inf), and nan fails every
    comparison, so a bare `number < minimum` check lets it through to fail later, where the
    number is used."""
    return minimum <= number <= maximum and math.isfinite(number)


def project_path(text: str) -> Path:
    """A path setting read from the environment or `.env`, as both sides resolve it: a
    leading ~ is the home folder, and a relative path is the project's, whatever the current
    directory (cron starts a program in $HOME, Task Scheduler in System32)."""
    return PROJECT_ROOT / Path(text).expanduser()
