"""Fixtures of the backfill tests: the example frames, and a runner of the backfill as a real
subprocess on a local Ray instance that leaves no Ray process behind."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backfill.helpers import BackfillRunner
from tests.modules.job_helpers import ExampleFrames, read_example_frames


@pytest.fixture(scope="session")
def example_frames() -> ExampleFrames:
    return read_example_frames()


@pytest.fixture
def backfill(clean_db: str, stats_dir: Path, tmp_path: Path) -> Iterator[BackfillRunner]:
    runner = BackfillRunner(clean_db, stats_dir, tmp_path)
    yield runner
    runner.stop_leftovers()
