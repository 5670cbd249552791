"""Where the working copy is: defaults such as `.env`, `logs/`, `.pgdata/`, `weights/` and
`data/` resolve against it, whatever the current directory."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The project's version: packaging metadata (pyproject.toml) reads it from here.
VERSION = "0.9.0"
