"""Where the tests' data lives (the reference files of DeepMind's official code)."""
from __future__ import annotations

from graphcast_contract.project import PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "tests" / "data"
REFERENCE_DIR = DATA_DIR / "graphcast_reference"
