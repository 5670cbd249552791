"""Graphs and structural features against the official ones (graph_structure.npz)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphcast_api.engine import graph
from graphcast_api.engine.checkpoint import load_checkpoint
from graphcast_api.engine.graph import build_graphs, load_or_build_graphs

LAT, LON = np.arange(-90, 91, 10.0), np.arange(0, 360, 10.0)


@pytest.fixture(scope="module")
def official(reference_dir: Path):
    with np.load(reference_dir / "graph_structure.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def model_config(reference_dir: Path):
    return load_checkpoint(reference_dir / "params.npz").model_config


@pytest.fixture(scope="module")
def graphs(model_config):
    return build_graphs(model_config, LAT, LON)


def test_sizes_and_radius(graphs, reference_dir: Path) -> None:
    import json
    facts = json.loads((reference_dir / "facts.json").read_text())["graph"]
    assert len(graphs.grid_node_features) == facts["num_grid_nodes"]
    assert len(graphs.mesh_node_features) == facts["num_mesh_nodes"]
    assert len(graphs.mesh.senders) == facts["num_mesh_edges"]
    assert len(graphs.grid2mesh.senders) == facts["num_grid2mesh_edges"]
    assert len(graphs.mesh2grid.senders) == facts["num_mesh2grid_edges"]
    assert graphs.query_radius == pytest.approx(facts["query_radius"], rel=1e-12)


@pytest.mark.parametrize("name", ["grid2mesh", "mesh", "mesh2grid"])
def test_edges_and_edge_features_match_official(graphs, official, name: str) -> None:
    edges = getattr(graphs, name)
    np.testing.assert_array_equal(edges.senders, official[f"{name}_senders"])
    np.testing.assert_array_equal(edges.receivers, official[f"{name}_receivers"])
    np.testing.assert_allclose(edges.features, official[f"{name}_edge_features"], atol=1e-6)


def test_node_features_and_positions_match_official(graphs, official) -> None:
    np.testing.assert_array_equal(graphs.mesh_lat, official["mesh_nodes_lat"])
    np.testing.assert_array_equal(graphs.mesh_lon, official["mesh_nodes_lon"])
    np.testing.assert_allclose(graphs.grid_node_features,
                               official["grid2mesh_grid_node_features"], atol=1e-7)
    np.testing.assert_allclose(graphs.mesh_node_features, official["mesh_node_features"],
                               atol=1e-6)


def test_graph_cache_round_trip(model_config, graphs, tmp_path: Path) -> None:
    first = load_or_build_graphs(model_config, LAT, LON, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = load_or_build_graphs(model_config, LAT, LON, tmp_path)
    np.testing.assert_array_equal(again.mesh2grid.senders, graphs.mesh2grid.senders)
    np.testing.assert_array_equal(again.grid2mesh.features, first.grid2mesh.features)
    assert again.query_radius == graphs.query_radius
    other = load_or_build_graphs(model_config, LAT[1:-1], LON, tmp_path)
    assert len(other.grid_node_features) == 17 * 36
    assert len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.slow  # GraphCast_small scale: the 1° grid's full graphs
def test_graphcast_small_graph_sizes_at_native_grid(reference_dir: Path) -> None:
    """Sizes at 1.0° and mesh 5 equal those the official code reports for GraphCast_small."""
    import json

    from graphcast_api.engine.configs import PUBLISHED_MODELS
    from graphcast_contract.model_spec import global_grid

    manifest = json.loads((reference_dir / "param_manifests.json").read_text())
    expected = manifest["models"]["GraphCast_small"]["graph_at_native_grid"]
    model_config, _ = PUBLISHED_MODELS["GraphCast_small"]
    grid = global_grid(model_config.resolution)
    graphs = build_graphs(model_config, grid.latitudes(), grid.longitudes())
    assert len(graphs.grid_node_features) == expected["num_grid_nodes"]
    assert len(graphs.mesh_node_features) == expected["num_mesh_nodes"]
    assert len(graphs.mesh.senders) == expected["num_mesh_edges"]
    assert len(graphs.grid2mesh.senders) == expected["num_grid2mesh_edges"]
    assert len(graphs.mesh2grid.senders) == expected["num_mesh2grid_edges"]


def test_failed_cache_write_leaves_no_temporary_file(model_config, graphs, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(file, **arrays) -> None:
        file.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    built = load_or_build_graphs(model_config, LAT, LON, tmp_path)
    assert len(built.grid_node_features) == len(graphs.grid_node_features)
    assert list(tmp_path.iterdir()) == []


def _arrays_equal(a, b) -> None:
    for name in ("grid2mesh", "mesh", "mesh2grid"):
        for part in ("senders", "receivers", "features"):
            np.testing.assert_array_equal(getattr(getattr(a, name), part),
                                          getattr(getattr(b, name), part))
    np.testing.assert_array_equal(a.grid_node_features, b.grid_node_features)
    np.testing.assert_array_equal(a.mesh_node_features, b.mesh_node_features)


def test_cached_graphs_equal_freshly_built_ones(model_config, graphs, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    load_or_build_graphs(model_config, LAT, LON, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def no_building(*args: object) -> None:
        raise AssertionError("the cached graphs were built again instead of read")

    monkeypatch.setattr(graph, "build_graphs", no_building)
    _arrays_equal(load_or_build_graphs(model_config, LAT, LON, tmp_path), graphs)


def _corrupt_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _corrupt_foreign(path: Path) -> None:
    """Another grid's (valid) graphs under this grid's name."""
    path.unlink()
    other = next(iter(path.parent.glob("*.npz")))
    other.rename(path)


def _corrupt_indices(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["mesh2grid_senders"] = arrays["mesh2grid_senders"] + 10 ** 6
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_foreign, _corrupt_indices])
def test_unusable_cache_file_is_rebuilt_not_trusted(model_config, graphs, tmp_path: Path,
                                                     corrupt, caplog) -> None:
    load_or_build_graphs(model_config, LAT[1:-1], LON, tmp_path)  # a second, other file
    load_or_build_graphs(model_config, LAT, LON, tmp_path)
    path = next(p for p in tmp_path.glob("*.npz") if f"{len(LAT)}x{len(LON)}" in p.name)
    corrupt(path)
    with caplog.at_level("WARNING", logger="graphcast_api.engine.graph"):
        rebuilt = load_or_build_graphs(model_config, LAT, LON, tmp_path)
    assert "rebuilding the graphs: unusable graph cache" in caplog.text
    _arrays_equal(rebuilt, graphs)
    caplog.clear()
    _arrays_equal(load_or_build_graphs(model_config, LAT, LON, tmp_path), graphs)
    assert "unusable" not in caplog.text  # the rebuilt file replaced the bad one
