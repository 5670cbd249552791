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


def test_the_tests_keep_the_engine_cache_out_of_the_home_folder(engine_cache_dir: Path) -> None:
    """tests/conftest.py's session folder is the engine's default and the subprocesses'."""
    from graphcast_api.engine import graph
    from tests.subprocess_env import clean_environment

    assert graph.default_cache_dir() == engine_cache_dir
    assert Path.home() not in engine_cache_dir.parents
    assert clean_environment()["GRAPHCAST_CACHE_DIR"] == str(engine_cache_dir)
