"""The encoder's chunk plan: equal shapes, every grid2mesh edge sent exactly once."""
from __future__ import annotations

import numpy as np
import pytest

from graphcast_api.engine.network import encoder_chunks


@pytest.mark.parametrize("chunk_nodes", [1, 7, 40, 100, 1_000])
def test_every_edge_is_owned_by_exactly_one_chunk(chunk_nodes: int) -> None:
    rng = np.random.default_rng(chunk_nodes)
    num_grid, num_mesh = 100, 30
    senders = np.sort(rng.integers(0, num_grid, 250))
    receivers = rng.integers(0, num_mesh, 250)
    plan = encoder_chunks(senders, receivers, num_grid, num_mesh, chunk_nodes)
    assert plan.nodes == min(chunk_nodes, num_grid)
    assert plan.local_senders.shape == plan.receivers.shape == (len(plan.node_starts),
                                                                  plan.edges)
    sent = []
    starts = zip(plan.node_starts, plan.edge_starts, strict=True)
    for c, (node_start, edge_start) in enumerate(starts):
        assert 0 <= node_start <= num_grid - plan.nodes
        assert 0 <= edge_start <= len(senders) - plan.edges
        local = plan.local_senders[c].numpy()
        assert local.min() >= 0 and local.max() < plan.nodes
        owned = plan.receivers[c].numpy() < num_mesh
        window = np.arange(edge_start, edge_start + plan.edges)[owned]
        np.testing.assert_array_equal(local[owned] + node_start, senders[window])
        np.testing.assert_array_equal(plan.receivers[c].numpy()[owned], receivers[window])
        sent.extend(window)
    assert sorted(sent) == list(range(len(senders)))
