"""Where the working copy is, and which release it is: defaults such as `.env`, `logs/`,
`.pgdata/`, `weights/` and `data/` resolve against the root, whatever the current directory."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project's release: the packaging metadata (pyproject.toml) reads it from here, and every
# forecast run records it (forecast_runs.project_version) so that stored values can be traced
# to the code that made them. Raise it with each release.
VERSION = "1.0.0"
