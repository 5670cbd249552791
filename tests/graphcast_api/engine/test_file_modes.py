"""Files the project writes get the permissions the user's umask gives (0644 under 022),
not mkstemp's 0600: the atomic writes (the prediction file of `predict`, NetCDF) and the graph
cache; an atomic write that fails leaves no file behind."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from graphcast_api.engine.checkpoint import load_checkpoint
from graphcast_api.engine.graph import load_or_build_graphs
from graphcast_contract.files import new_temporary_file, write_atomically

LAT, LON = np.arange(-90, 91, 10.0), np.arange(0, 360, 10.0)  # the reference grid

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")


@pytest.fixture(params=[0o022, 0o077], ids=["umask-022", "umask-077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_temporary_files_follow_the_umask(umask: int, tmp_path: Path) -> None:
    path = new_temporary_file(tmp_path, ".tmp")
    assert path.parent == tmp_path and path.stat().st_size == 0
    assert mode(path) == 0o666 & ~umask
    assert new_temporary_file(tmp_path, ".tmp") != path


def test_atomic_writes_follow_the_umask(umask: int, tmp_path: Path) -> None:
    out = tmp_path / "out" / "pred.nc"
    with write_atomically(out, ".nc.tmp") as temporary:
        xr.Dataset({"x": ("t", np.arange(3, dtype=np.float32))}).to_netcdf(temporary)
    assert mode(out) == 0o666 & ~umask
    assert [p.name for p in out.parent.iterdir()] == ["pred.nc"]


def test_a_failed_atomic_write_keeps_the_previous_file(tmp_path: Path) -> None:
    out = tmp_path / "MANIFEST.sha256"
    out.write_text("previous")
    with pytest.raises(RuntimeError), write_atomically(out) as temporary:
        temporary.write_text("half written")
        raise RuntimeError("interrupted")
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert out.read_text() == "previous"


def test_graph_cache_follows_the_umask(umask: int, reference_dir: Path, tmp_path: Path) -> None:
    model_config = load_checkpoint(reference_dir / "params.npz").model_config
    load_or_build_graphs(model_config, LAT, LON, tmp_path)
    (cached,) = tmp_path.iterdir()
    assert cached.suffix == ".npz" and mode(cached) == 0o666 & ~umask
