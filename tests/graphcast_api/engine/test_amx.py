"""The AMX edge kernel (amx.py, amx_edge_mlp.c) against the unfused processor step.

The kernel itself runs only where the CPU has AMX; the packing, the argument checks and the
fallback when it cannot be built are checked on every host.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
import torch._inductor.config as inductor_config
import torch.nn.functional as F

from graphcast_api.engine import amx
from graphcast_api.engine.configs import PUBLISHED_MODELS
from graphcast_api.engine.network import (
    Mlp,
    _edge_stage,
    _node_stage,
    decode,
    default_products,
    encoder_chunks,
    mesh_blocks,
    process,
)

# On a CPU with AMX the kernel must build and load: a failure there fails these tests.
needs_amx = pytest.mark.skipif(not amx.cpu_has_amx(), reason="this CPU has no AMX")


def test_pack_puts_each_pair_of_rows_side_by_side_per_16_columns() -> None:
    weight = torch.arange(64 * 48, dtype=torch.float32).reshape(64, 48)
    packed = amx.pack(weight)
    assert packed.shape == (3, 32, 16, 2) and packed.dtype == torch.bfloat16
    for block, pair, column, half in [(0, 0, 0, 1), (2, 31, 15, 0), (1, 7, 3, 1)]:
        assert packed[block, pair, column, half] == \
            weight[2 * pair + half, 16 * block + column].bfloat16()


def test_fused_form_needs_two_layers_and_widths_of_32() -> None:
    norm = (torch.ones(48), torch.zeros(48))
    with pytest.raises(ValueError, match="divisible by 32"):
        amx.fused_edge_mlp(torch.ones(48, 48), (torch.ones(48, 48),) * 2,
                           (torch.zeros(48),) * 2, norm)
    with pytest.raises(ValueError, match="two-layer"):
        amx.fused_edge_mlp(torch.ones(64, 64), (torch.ones(64, 64),) * 3,
                           (torch.zeros(64),) * 3, norm)


def test_the_kernel_refuses_tensors_of_other_types_before_running() -> None:
    edge = torch.zeros(4, 1, 32, dtype=torch.bfloat16)
    index = torch.zeros(4, dtype=torch.int64)
    vector = torch.zeros(32)
    weight = amx.pack(torch.zeros(32, 32))
    sums = torch.zeros(2, 1, 32)
    with pytest.raises(ValueError, match="int64 indices"):
        amx.edge_mlp(edge, sums, index, [edge, edge], [index.int(), index], weight, vector,
                     weight, vector, vector, vector)
    with pytest.raises(ValueError, match="divisible by 32"):  # a width the tiles do not take
        wide = torch.zeros(48)
        amx.edge_mlp(None, torch.zeros(2, 1, 48), index, [], [], None, wide,
                     amx.pack(torch.zeros(48, 48)), wide, wide, wide)
    with pytest.raises(ValueError, match="at most three terms"):
        amx.edge_mlp(None, sums, index, [edge] * 4, [None] * 4, None, vector, weight, vector,
                     vector, vector)


def test_without_amx_or_a_compiler_the_library_is_none(monkeypatch, caplog) -> None:
    """No AMX: None, nothing built. AMX but no compiler: None and a warning (the network then
    keeps oneDNN's path)."""
    monkeypatch.setattr(amx, "cpu_has_amx", lambda: False)
    amx.library.cache_clear()
    try:
        assert amx.library() is None
        monkeypatch.setattr(amx, "cpu_has_amx", lambda: True)
        monkeypatch.setattr(inductor_config.cpp, "cxx", ("no-such-compiler-here",))
        amx.library.cache_clear()
        with caplog.at_level(logging.WARNING):
            assert amx.library() is None
        assert "could not be built" in caplog.text
    finally:
        monkeypatch.undo()
        amx.library.cache_clear()


def _problem(edges_per_receiver: np.ndarray, batch: int, latent: int, seed: int = 0,
             by_degree: bool = True):
    """A random processor step: edges sorted by receiver, receivers numbered by in-degree
    (as the network numbers mesh nodes, see mesh_blocks) unless not by_degree, bf16 latents
    and weights."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    nodes = len(edges_per_receiver)
    if by_degree:
        edges_per_receiver = np.sort(edges_per_receiver)
    receivers = np.repeat(np.arange(nodes), edges_per_receiver)
    senders = rng.integers(0, nodes, len(receivers))

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=generator)

    mlp = Mlp((randn(3 * latent, latent, scale=latent ** -0.5),
               randn(latent, latent, scale=latent ** -0.5)),
              (randn(latent, scale=0.1), randn(latent, scale=0.1)),
              (1 + randn(latent, scale=0.1), randn(latent, scale=0.1)))
    stage = _edge_stage(mlp, latent, torch.bfloat16)
    edge = randn(len(receivers), batch, latent).bfloat16()
    mesh = randn(nodes, batch, latent).bfloat16()
    return (edge, mesh, stage, torch.from_numpy(senders), torch.from_numpy(receivers),
            mesh_blocks(receivers, nodes)[1])


def _unfused(edge, mesh, stage, senders, receivers) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's edge update and per-receiver sums in float32 from the same bf16 values."""
    first = (edge.float() @ stage.w_edge.float() + (mesh.float() @ stage.w_send.float())[senders]
             + (mesh.float() @ stage.w_recv.float())[receivers] + stage.mlp.biases[0].float())
    hidden = F.silu(first).bfloat16().float()
    out = hidden @ stage.mlp.weights[1].float() + stage.mlp.biases[1].float()
    messages = F.layer_norm(out, out.shape[-1:], *(t.float() for t in stage.mlp.norm),
                            1e-5).bfloat16().float()
    sums = torch.zeros(mesh.shape).index_add_(0, receivers, messages)
    return edge.float() + messages, sums


def _fused(edge, mesh, stage, senders, receivers,
           sums_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    edge = edge.clone()
    sums = torch.full(mesh.shape, float("nan")).to(sums_dtype)  # bf16: every row written
    if sums_dtype == torch.float32:
        sums.zero_()
    send = (mesh.float() @ stage.w_send.float()).bfloat16()
    recv = (mesh.float() @ stage.w_recv.float()).bfloat16()
    amx.edge_mlp(edge, sums, receivers, [send, recv], [senders, receivers],
                 *amx.fused_edge_mlp(stage.w_edge, *stage.mlp))
    return edge, sums


@needs_amx
@pytest.mark.parametrize("batch, latent", [(1, 32), (2, 64), (1, 512)])
def test_the_kernel_gives_the_unfused_step(batch: int, latent: int) -> None:
    """Within bf16 rounding of the unfused step, for partial blocks of 32 rows (the edge
    count is not a multiple of 32), batches and the widths GraphCast uses."""
    degrees = np.random.default_rng(1).choice([0, 1, 6, 12, 30], size=97)
    edge, mesh, stage, senders, receivers, _ = _problem(degrees, batch, latent)
    assert len(edge) % 32
    expected_edge, expected_sums = _unfused(edge, mesh, stage, senders, receivers)
    got_edge, got_sums = _fused(edge, mesh, stage, senders, receivers)
    assert got_edge.dtype == torch.bfloat16
    step = 2 ** -6 * (expected_edge.abs() + 1)  # two bf16 roundings (the message, the sum)
    assert ((got_edge.float() - expected_edge).abs() <= step).float().mean() > 0.999
    assert (got_edge.float() - expected_edge).abs().max() <= 0.1
    assert torch.allclose(got_sums, expected_sums, atol=0.05 * expected_sums.std().item())
    assert not got_sums[:(degrees == 0).sum()].any()  # no edges, no messages


@needs_amx
@pytest.mark.parametrize("threads", [1, 2, 5])
def test_bf16_sums_are_written_for_every_receiver(threads: int) -> None:
    """bf16 sums: every row overwritten with its receiver's float32 sums rounded once, rows
    of receivers without edges (first, between, last) with zeros, on any thread count."""
    degrees = np.random.default_rng(6).choice([0, 3, 7], size=60)
    degrees[[0, 1, 30, 58, 59]] = 0
    problem = _problem(degrees, 2, 64, by_degree=False)[:5]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        edge32, sums32 = _fused(*problem)
        edge16, sums16 = _fused(*problem, sums_dtype=torch.bfloat16)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(edge16, edge32)
    assert torch.equal(sums16, sums32.bfloat16())
    assert not sums16[torch.from_numpy(degrees == 0)].any()
    assert sums16[torch.from_numpy(degrees > 0)].abs().sum(-1).min() > 0


@needs_amx
def test_the_kernel_is_the_same_on_any_number_of_threads() -> None:
    """Threads split the edges at receiver boundaries: each receiver's sums are added by one
    thread in edge order, so the results do not depend on the thread count."""
    degrees = np.random.default_rng(2).choice([6, 12], size=400)
    problem = _problem(degrees, 1, 64)[:5]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _fused(*problem)
        torch.set_num_threads(3)
        three = _fused(*problem)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], three[0]) and torch.equal(one[1], three[1])


@needs_amx
@pytest.mark.parametrize("compile", [False, True])
def test_the_network_step_with_the_kernel_gives_the_unfused_step(compile: bool) -> None:
    """network.process with `fused` weights against the same step without them."""
    degrees = np.random.default_rng(3).choice([6, 12], size=300)
    edge, mesh, stage, senders, receivers, blocks = _problem(degrees, 1, 64)
    node_stage = _node_stage(Mlp((torch.randn(2 * 64, 64) / 11, torch.randn(64, 64) / 8),
                                 (torch.zeros(64),) * 2, (torch.ones(64), torch.zeros(64))),
                             64, torch.bfloat16)
    fused = amx.fused_edge_mlp(stage.w_edge, *stage.mlp)
    step = torch.compile(process, dynamic=False) if compile else process
    plain_edge, fused_edge = edge.clone(), edge.clone()
    with torch.inference_mode():
        plain_mesh = process(plain_edge, mesh, stage, node_stage, senders, receivers, blocks)
        fused_mesh = step(fused_edge, mesh, stage, node_stage, senders, receivers, blocks,
                          False, fused)
    assert (fused_edge.float() - plain_edge.float()).abs().max() <= 0.1
    assert (fused_mesh.float() - plain_mesh.float()).abs().max() <= 0.1
    assert not torch.equal(fused_edge, edge)  # updated in place


@needs_amx
@pytest.mark.parametrize("stored, compile", [(True, False), (False, False), (True, True)])
def test_the_decoder_with_the_kernel_gives_the_unfused_decoder(stored: bool,
                                                               compile: bool) -> None:
    """network.decode with `fused` weights against the same chunk without them, the static
    terms stored once per orbit (a table and each edge's row) or one row per edge."""
    latent, nodes, mesh_nodes, batch = 64, 70, 40, 1
    generator = torch.Generator().manual_seed(4)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) / shape[0] ** 0.5

    def mlp(sizes: list[int], norm: bool = True) -> Mlp:
        return Mlp(tuple(randn(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)),
                   tuple(randn(b) for b in sizes[1:]),
                   (1 + randn(sizes[-1]), randn(sizes[-1])) if norm else None)

    edge_stage = _edge_stage(mlp([3 * latent, latent, latent]), latent, torch.bfloat16)
    grid_node = _node_stage(mlp([2 * latent, latent, latent]), latent, torch.bfloat16)
    decoder = mlp([latent, latent, 5], norm=False).cast(torch.bfloat16)
    grid = torch.randn(nodes, batch, latent, generator=generator).bfloat16()
    mesh_send = torch.randn(mesh_nodes, batch, latent, generator=generator).bfloat16()
    senders = torch.randint(0, mesh_nodes, (3 * nodes,), generator=generator)
    if stored:
        terms = torch.randn(50, 1, latent, generator=generator).bfloat16()
        index = torch.randint(0, 50, (3 * nodes,), generator=generator)
    else:
        terms, index = torch.randn(3 * nodes, 1, latent, generator=generator).bfloat16(), None
    receivers = torch.arange(nodes + 5).repeat_interleave(3)  # a chunk may be shorter
    fused = amx.fused_edge_mlp(None, *edge_stage.mlp)
    step = torch.compile(decode, dynamic=False) if compile else decode
    plain, ours = torch.empty(batch, 5, nodes), torch.full((batch, 5, nodes), torch.nan)
    with torch.inference_mode():
        decode(plain, grid, mesh_send, terms, index, edge_stage, senders, grid_node, decoder)
        step(ours, grid, mesh_send, terms, index, edge_stage, senders, grid_node, decoder,
             False, fused, receivers)
    assert (ours - plain).abs().max() <= 0.05 * plain.abs().max()


def test_encoder_chunks_sorted_by_receiver_are_the_same_edges() -> None:
    """For the AMX kernel each encoder chunk's edges come sorted by receiver: the same
    (sender, receiver) pairs, `order` giving each one's place in the chunk's window."""
    rng = np.random.default_rng(5)
    senders = np.sort(rng.integers(0, 500, 3000))
    receivers = rng.integers(0, 40, 3000)
    plain = encoder_chunks(senders, receivers, 500, 40, 128)
    sorted_ = encoder_chunks(senders, receivers, 500, 40, 128, by_receiver=True)
    assert plain.order is None and sorted_.order.shape == plain.receivers.shape
    for c in range(len(plain.node_starts)):
        assert (np.diff(sorted_.receivers[c].numpy()) >= 0).all()
        order = sorted_.order[c]
        assert torch.equal(plain.receivers[c][order], sorted_.receivers[c])
        assert torch.equal(plain.local_senders[c][order], sorted_.local_senders[c])


def test_the_amx_default_is_only_for_models_the_kernel_takes(monkeypatch) -> None:
    """bf16 on an AMX CPU picks the kernel for GraphCast's shapes; a deeper MLP or a latent
    width the tiles do not divide keeps oneDNN instead of failing to load."""
    monkeypatch.setattr(amx, "library", lambda: object())  # as if the kernel were built
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    config = PUBLISHED_MODELS["GraphCast_small"][0]
    assert default_products(cpu, bf16, config) == "amx"
    assert default_products(cpu, torch.float32, config) == "onednn"
    assert default_products(cpu, bf16, dataclasses.replace(config, hidden_layers=2)) == "onednn"
    assert default_products(cpu, bf16, dataclasses.replace(config, latent_size=48)) == "onednn"
