"""Where the working copy is: defaults such as `.env`, `logs/`, `.pgdata/`, `weights/` and
`data/` resolve against it, whatever the current directory."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
