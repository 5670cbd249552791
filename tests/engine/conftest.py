"""Shared fixtures for the engine tests: the reference set (10° grid, mesh 2, latent 32)."""
from __future__ import annotations

from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "graphcast_reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Directory of the official reference files."""
    return REFERENCE
