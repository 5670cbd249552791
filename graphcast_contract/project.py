"""Where the working copy is: defaults such as `.env`, `logs/`, `.pgdata/`, `weights/` and
`data/` resolve against it, whatever the current directory."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project's release, recorded with every forecast run (forecast_runs.project_version) so
# that stored values can be traced to the code that made them. Raise it with each release.
VERSION = "1.0.0"
