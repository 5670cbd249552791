"""The engine takes its switches as arguments and reads no environment
(graphcast_api/settings.py resolves GRAPHCAST_COMPILE and GRAPHCAST_CACHE_DIR)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from graphcast_api.engine import Forecaster, network
from graphcast_api.settings import PRECISIONS
from graphcast_contract.project import PROJECT_ROOT


def test_engine_source_reads_no_environment() -> None:
    readers = re.compile(r"os\.environ|getenv|dotenv")
    for path in sorted((PROJECT_ROOT / "graphcast_api" / "engine").glob("*.py")):
        assert not readers.search(path.read_text()), f"{path.name} reads the environment"


def test_every_precision_names_a_torch_dtype() -> None:
    for name, dtype in PRECISIONS.items():
        assert isinstance(getattr(torch, dtype, None), torch.dtype), name


def test_compile_and_cache_dir_follow_the_arguments_not_the_environment(
        reference_dir: Path, stats_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from_env, given = tmp_path / "from-env", tmp_path / "given"
    monkeypatch.setenv("GRAPHCAST_CACHE_DIR", str(from_env))
    monkeypatch.setenv("GRAPHCAST_COMPILE", "1")
    forecaster = Forecaster.from_files(reference_dir / "params.npz", stats_dir,
                                       precision="fp32", device="cpu", cache_dir=given,
                                       compile=False)
    assert forecaster.network._stages["encode"] is network.encode  # not compiled
    assert len(list(given.glob("*.npz"))) == 1
    assert not from_env.exists()
