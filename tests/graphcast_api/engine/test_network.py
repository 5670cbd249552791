"""The encoder's chunk plan (equal shapes, every grid2mesh edge sent exactly once), the
processor's per-node sums over mesh nodes numbered by in-degree, the static edge terms' table,
and the one-pass LayerNorm."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graphcast_api.engine import heap
from graphcast_api.engine.network import (
    GraphCastNetwork,
    StaticEdgeTerms,
    add_by_receiver,
    default_edge_terms,
    encoder_chunks,
    layer_norm,
    mesh_blocks,
    sum_by_blocks,
)
from graphcast_api.settings import DeviceUnavailable


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


@pytest.mark.parametrize("seed", range(3))
def test_sums_by_degree_blocks_equal_a_scatter_sum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_mesh = 40
    degree = rng.choice([3, 6, 12], num_mesh)
    receivers = rng.permutation(np.repeat(np.arange(num_mesh), degree))
    messages = torch.randn(len(receivers), 2, 8)

    order, blocks = mesh_blocks(receivers, num_mesh)
    assert sorted(order) == list(range(num_mesh))
    assert [d for _, d in blocks] == sorted({int(d) for d in degree})
    assert sum(n * d for n, d in blocks) == len(receivers)
    new = np.argsort(order)[receivers]           # renumbered receivers
    by_receiver = np.argsort(new, kind="stable")
    sums = sum_by_blocks(messages[torch.from_numpy(by_receiver)], blocks)

    expected = torch.zeros((num_mesh,) + messages.shape[1:])
    add_by_receiver(expected, messages, torch.from_numpy(receivers))
    torch.testing.assert_close(sums, expected[torch.from_numpy(order)])
    assert sums.dtype == torch.float32


@pytest.mark.parametrize("compiled", [False, True])
def test_messages_are_added_to_their_receivers_sums_in_place(compiled: bool) -> None:
    """The encoder's chunks add bf16 messages into one float32 buffer in place, also when
    called from a compiled stage (where the add is an opaque op)."""
    rng = np.random.default_rng(0)
    receivers = torch.from_numpy(rng.integers(0, 30, 200))
    chunks = [torch.randn(200, 2, 8).to(torch.bfloat16) for _ in range(2)]
    start = torch.randn(30, 2, 8)
    expected = start.clone()
    for messages in chunks:
        for edge, node in enumerate(receivers.tolist()):
            expected[node] += messages[edge].float()

    def add_twice(sums: torch.Tensor) -> torch.Tensor:
        for messages in chunks:  # "* 1": the messages are made inside the stage, as there
            add_by_receiver(sums, messages * 1, receivers)
        return sums.sum()  # a compiled stage needs an output besides the mutation

    sums = start.clone()
    (torch.compile(add_twice, dynamic=False) if compiled else add_twice)(sums)
    torch.testing.assert_close(sums, expected, rtol=1e-5, atol=1e-5)


def test_block_sums_are_float32_for_bf16_messages() -> None:
    messages = torch.full((3 * 1000, 1, 4), 1 / 3, dtype=torch.bfloat16)
    sums = sum_by_blocks(messages, ((3, 1000),))
    assert sums.dtype == torch.float32
    expected = 1000 * float(torch.tensor(1 / 3, dtype=torch.bfloat16))
    assert torch.allclose(sums, torch.full_like(sums, expected), rtol=1e-6)


def test_static_edge_terms_are_kept_while_their_table_fits_two_gib() -> None:
    """0.25°: one row per orbit is 1.5 GiB in bf16 (kept), 3 GiB in fp32 or 4.5 GiB in bf16
    without the symmetry (recomputed); 1.0° is kept in both precisions."""
    orbits_025, edges_025, orbits_1 = 539_608 + 1_038_904, 1_618_818 + 3_114_720, 99_111
    assert default_edge_terms(orbits_025, 512, torch.bfloat16) == "stored"
    assert default_edge_terms(orbits_025, 512, torch.float32) == "recomputed"
    assert default_edge_terms(edges_025, 512, torch.bfloat16) == "recomputed"
    assert default_edge_terms(orbits_1, 512, torch.float32) == "stored"


def test_static_edge_terms_table_is_built_in_blocks_reusing_freed_memory() -> None:
    """One row per orbit, computed block by block under the heap rule (page-faulting each
    block's temporaries in afresh made the 0.25° table take twice as long), released after."""
    held = []

    def terms(features: torch.Tensor) -> torch.Tensor:
        held.append(heap.active())
        return features[:, None, :] * 10

    features = torch.arange(40.0).reshape(10, 4)
    orbits = np.arange(10) // 2 * 2  # edges 0-1 share a row, 2-3 another, ...
    table = StaticEdgeTerms(terms, features, orbits, rows=2)
    assert table.stored_rows == 5
    assert held == [heap._LIBC is not None] * 3  # blocks of 2, 2 and 1 rows
    assert not heap.active()
    rows, index = table[3:9]
    torch.testing.assert_close(rows[index][:, 0], features[orbits[3:9]] * 10)


@pytest.mark.parametrize("offset", [0.0, 30.0])
def test_layer_norm_is_torch_s_in_fp32_and_one_pass_in_bf16(offset: float) -> None:
    """float32: torch's LayerNorm itself; bf16: E[x²] - E[x]² for the variance, within one
    bf16 step of torch's (a few values), also for rows whose mean is 30 spreads from zero."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2_000, 1, 512, generator=generator) + offset
    scale = torch.rand(512, generator=generator) + 0.5
    shift = torch.randn(512, generator=generator)
    expected = torch.nn.functional.layer_norm(x, (512,), scale, shift, 1e-5)
    assert torch.equal(layer_norm(x, scale, shift), expected)
    x, scale, shift = x.bfloat16(), scale.bfloat16(), shift.bfloat16()
    ours = layer_norm(x, scale, shift)
    assert ours.dtype == torch.bfloat16
    ours = ours.float()
    theirs = torch.nn.functional.layer_norm(x, (512,), scale, shift, 1e-5).float()
    assert ((ours - theirs).abs() <= (theirs.abs() + 1) * 2 ** -7).all()  # one bf16 step
    assert (ours != theirs).float().mean() < 0.01  # a few rounding flips, not a new formula


@pytest.mark.parametrize("products", ["onednn", "amx"])
def test_cpu_product_back_ends_off_the_cpu_are_an_unavailable_device(products: str) -> None:
    """predict and bench exit DEVICE_UNAVAILABLE for it (checked before any weight is read)."""
    with pytest.raises(DeviceUnavailable, match=f"{products} product back end needs a CPU"):
        GraphCastNetwork({}, None, None, torch.bfloat16, "cuda", products=products)


def test_the_amx_back_end_in_fp32_is_an_unavailable_device() -> None:
    with pytest.raises(DeviceUnavailable, match="amx product back end needs bf16"):
        GraphCastNetwork({}, None, None, torch.float32, "cpu", products="amx")
