"""Where the tests' data lives (the reference files of DeepMind's official code), and where
tests keep what they make outside pytest's temporary root."""
from __future__ import annotations

import tempfile
from pathlib import Path

from graphcast_contract.project import PROJECT_ROOT

DATA_DIR = PROJECT_ROOT / "tests" / "data"
REFERENCE_DIR = DATA_DIR / "graphcast_reference"


def private_folder(purpose: str) -> Path:
    """A new folder outside pytest's temporary root (which concurrent pytest sessions prune
    and reset to owner-only); the caller removes it."""
    return Path(tempfile.mkdtemp(prefix=f"graphcast-test-{purpose}-"))
