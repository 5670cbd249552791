"""Fixtures of the API service tests: the real service serving the reference checkpoint."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.graphcast_api.service.helpers import REFERENCE_DIR, serve_command


@pytest.fixture(scope="session")
def reference_server(stats_dir: Path) -> Iterator[str]:
    """URL of the real service serving the reference checkpoint in fp32."""
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir),
            "--precision", "fp32", "--device", "cpu", "--queue-wait-s", "120"]
    with serve_command(args) as (url, _):
        yield url
