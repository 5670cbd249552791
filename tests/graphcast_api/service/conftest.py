"""Fixtures of the API service tests: the real service serving the reference checkpoint, or
a random-weights checkpoint with GraphCast_operational's task on a coarse grid."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from graphcast_api.engine.checkpoint import random_checkpoint, save_checkpoint
from graphcast_api.engine.configs import PUBLISHED_MODELS
from tests.graphcast_api.service.helpers import (
    COARSE_OPERATIONAL,
    REFERENCE_DIR,
    operational_serve_args,
    serve_command,
)


@pytest.fixture(scope="session")
def reference_server(stats_dir: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[str]:
    """URL of the real service serving the reference checkpoint in fp32 (its output in a
    file: it answers many requests)."""
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir),
            "--precision", "fp32", "--device", "cpu", "--queue-wait-s", "120"]
    output = tmp_path_factory.mktemp("reference-server") / "output.log"
    with serve_command(args, output=output) as (url, _):
        yield url


@pytest.fixture(scope="session")
def operational_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights with GraphCast_operational's task (no precipitation input) on a
    10-degree grid, mesh 2, in the official format (the engine's save_checkpoint)."""
    task = PUBLISHED_MODELS["GraphCast_operational"][1]
    path = tmp_path_factory.mktemp("weights") / "GraphCast_operational - coarse test.npz"
    save_checkpoint(random_checkpoint(model_config=COARSE_OPERATIONAL, task_config=task), path)
    return path


@pytest.fixture(scope="session")
def operational_server(operational_checkpoint: Path, stats_dir: Path,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the real service serving `operational_checkpoint` in fp32 (its output in a
    file: it answers many requests)."""
    output = tmp_path_factory.mktemp("operational-server") / "output.log"
    with serve_command(operational_serve_args(operational_checkpoint, stats_dir),
                       output=output) as (url, _):
        yield url
