"""Orbits of the polar turn: which edges share their static terms."""
from __future__ import annotations

import numpy as np
import pytest

from graphcast_api.engine.checkpoint import load_checkpoint
from graphcast_api.engine.graph import build_graphs
from graphcast_api.engine.symmetry import edge_orbits, node_turn

LAT = np.arange(-90, 91, 10.0)


@pytest.fixture(scope="module")
def model_config(reference_dir):
    return load_checkpoint(reference_dir / "params.npz").model_config


def _orbits(graphs, name: str) -> np.ndarray:
    edges = getattr(graphs, name)
    grid, mesh = graphs.grid_node_features, graphs.mesh_node_features
    sender_nodes, receiver_nodes = {"grid2mesh": (grid, mesh), "mesh2grid": (mesh, grid),
                                    "mesh": (mesh, mesh)}[name]
    return edge_orbits(edges.senders, edges.receivers, edges.features,
                       node_turn(sender_nodes), node_turn(receiver_nodes))


def test_node_turn_maps_each_grid_column_a_third_of_the_way_round() -> None:
    lon = np.arange(0, 360, 10.0)
    lat2d, lon2d = np.meshgrid(LAT, lon, indexing="ij")
    from graphcast_api.engine.graph import node_features
    turn = node_turn(node_features(lat2d.ravel(), lon2d.ravel()))
    columns = np.arange(lat2d.size) % len(lon)
    assert turn is not None
    np.testing.assert_array_equal(turn % len(lon), (columns + 12) % len(lon))
    np.testing.assert_array_equal(turn // len(lon), np.arange(lat2d.size) // len(lon))


@pytest.mark.parametrize("name", ["grid2mesh", "mesh2grid", "mesh"])
def test_symmetric_graphs_share_a_row_between_three_edges(model_config, name: str) -> None:
    """10° grid (36 columns): most edges have two images with their own features (some
    grid points on mesh edges are given other faces than their images)."""
    graphs = build_graphs(model_config, LAT, np.arange(0, 360, 10.0))
    orbits = _orbits(graphs, name)
    features = getattr(graphs, name).features
    assert len(np.unique(orbits)) < 0.35 * len(orbits)
    np.testing.assert_allclose(features[orbits], features, atol=2e-4, rtol=0)
    np.testing.assert_array_equal(orbits[orbits], orbits)  # representatives stand for themselves


def test_a_grid_without_the_symmetry_keeps_a_row_per_edge(model_config) -> None:
    """40 columns of 9° are not a multiple of three: no grid node has an image."""
    graphs = build_graphs(model_config, LAT, np.arange(0, 360, 9.0))
    for name in ("grid2mesh", "mesh2grid"):
        np.testing.assert_array_equal(_orbits(graphs, name), np.arange(
            len(getattr(graphs, name).senders)))
    assert len(np.unique(_orbits(graphs, "mesh"))) == len(graphs.mesh.senders) // 3


def test_edges_whose_images_differ_keep_their_own_row(model_config) -> None:
    """An edge whose rotated image has other features (here: one edge's features moved)
    is not merged with it."""
    graphs = build_graphs(model_config, LAT, np.arange(0, 360, 10.0))
    edges = graphs.mesh2grid
    moved = edges.features.copy()
    moved[5] += 0.01
    orbits = edge_orbits(edges.senders, edges.receivers, moved,
                         node_turn(graphs.mesh_node_features),
                         node_turn(graphs.grid_node_features))
    assert orbits[5] == 5 and np.sum(orbits == 5) == 1
