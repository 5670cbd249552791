"""Shared fixtures for the engine tests: the reference set (10° grid, mesh 2, latent 32)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "graphcast_reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Directory of the official reference files."""
    return REFERENCE


@pytest.fixture(scope="session")
def stats_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference statistics under their official names (`stats/<name>.nc`)."""
    directory = tmp_path_factory.mktemp("stats")
    for name in ("mean_by_level", "stddev_by_level", "diffs_stddev_by_level"):
        shutil.copy(REFERENCE / f"stats_{name}.nc", directory / f"{name}.nc")
    return directory
