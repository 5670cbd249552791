"""The GraphCast encoder-processor-decoder graph network in PyTorch.

Works on normalised, stacked grid-node features [num_grid, batch, channels] and returns the
normalised outputs [num_grid, batch, outputs]. Parameter names are the official haiku ones.

Speed-ups that leave the mathematics unchanged:
- everything that depends only on the graphs (edge embeddings, mesh-node embeddings, their
  products with the first processor layers) is computed once, at construction;
- the first layer of every edge MLP, applied to concat(edge, sender, receiver), is split into
  three products: node latents are projected once per node and gathered per edge;
- node MLPs take concat(node, aggregated messages) as two products, without the concatenation;
- mesh nodes are renumbered by their number of incoming mesh edges (the multi-mesh has a
  handful of in-degrees: 6, 12, ..., 6 × refinements) and mesh edges ordered by receiver, so
  the processor's sum over each node's edges is a reshape and a sum per degree (MeshBlocks):
  contiguous, parallel, with no scatter (torch.compile turns index_add_ into atomic adds,
  which cost more than the products around them on CPU); mesh latents never leave the
  network, so the renumbering changes nothing outside it, and each node's edges keep their
  order;
- an edge and its images under a third of a turn about the polar axis have the same
  structural features (symmetry.py), so the grid2mesh and mesh2grid static terms are stored
  once per orbit, a third of the rows; the images' features differ from their orbit's
  by float32 rounding only (outputs within 1e-4 of their RMS);
- the encoder (grid2mesh) and the decoder (mesh2grid) run over chunks of grid nodes, so
  that no per-edge temporary spans the 0.25° grid's 1.6 M / 3.1 M edges; the encoder's
  chunks all have one shape (see EncoderChunks), so one compiled encoder serves them, and
  they add their messages straight into one float32 buffer of per-receiver sums (a buffer
  per chunk, zeroed and added up, was 0.34 GB of memory traffic per chunk at 0.25°), with
  ATen's index_add_ rather than Inductor's per-element atomic adds (add_by_receiver); the
  mesh latents' mesh2grid sender projection is made once per step, not once per decoder
  chunk (at 0.25°, 63 products of 40,962 rows fewer);
- the processor adds each step's messages to the edge latents in place, so a step holds
  one edge-latent tensor, not two (gathered from the embedded mesh edges, kept once per
  orbit too);
- while the network runs, and while its static tables are built, freed temporaries are
  reused instead of unmapped and faulted in again, and kept between the steps of a forecast
  (see heap.py); the numbers are the same;
- the grid inputs may come, and the outputs go, channel-major ([B, channels, G] viewed as
  [G, B, channels]), the layout of the rollout's variables: the compiled encoder's first
  kernel and the decoder's last one transpose tile by tile, at no measurable cost, so the
  host does not (its stacking and unstacking took 1.8 s a 0.25° step, now 0.8 s); each
  encoder and decoder chunk's compiled stage stores its rows straight into the grid's
  latents and the outputs (copying them after each chunk moved 2 GB a step at 0.25° and
  37 levels);
- on CPU the three stages (encoder, one processor step, decoder) are compiled with
  torch.compile, which fuses the element-wise work around the matrix products (Inductor
  keeps the compiled kernels on disk; settings.use_kernel_cache puts them under the cache
  folder, so a new process or restarted service loads them instead of compiling; Inductor's
  per-process probe of the CPU's vector instruction sets runs at construction, so the first
  forecast does not pay it);
- on CPU the dense products go through oneDNN's linear with each weight prepacked once at
  construction (`products="onednn"`), about twice MKL's fp32 rate on AMD EPYC; the same
  products in the same precision (fp32 stays fp32, no reduced-precision shortcut), so only
  the summation order inside a product changes (fp32 within the reference tolerance, checked
  for every back end by the tests). `products="matmul"` keeps torch's own `@`.
- in bf16, LayerNorm takes its variance as E[x²] - E[x]² (layer_norm), equal to haiku's
  E[(x - E[x])²] but for rounding: one pass over each row instead of two;
- in bf16 on CPUs with AMX (`products="amx"`), every edge MLP (the processor's, the
  encoder's, the decoder's) runs as one hand-written kernel (amx.py): the products, the
  gathered terms, swish, LayerNorm, the per-receiver sums and the processor's residual edge
  update over a block of 32 edges while it is in cache, instead of passes over edge-sized
  tensors; the same mathematics, the products accumulating in float32 as oneDNN's, the
  messages summed in float32 before any bf16 rounding (within the bf16 tolerance, checked by
  the tests where the CPU has AMX); each encoder chunk's edges are sorted by receiver for it.
bf16 keeps the aggregation sums and LayerNorm statistics in float32, as the official code does.
"""
from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from graphcast_api.engine import amx, heap
from graphcast_api.engine.configs import PRODUCTS, ModelConfig
from graphcast_api.engine.graph import EdgeSet, GraphCastGraphs
from graphcast_api.engine.symmetry import edge_orbits, node_turn
from graphcast_api.settings import DeviceUnavailable

_LOG = logging.getLogger(__name__)
_LAYER_NORM_EPS = 1e-5  # haiku's default
_COMPILE_MIN_MESH_EDGES = 50_000
DECODE_CHUNK_NODES = 16_384  # grid nodes decoded at a time: bounds the edge temporaries
ENCODE_CHUNK_NODES = 16_384  # grid nodes encoded at a time (0.25°: 64 chunks; 1.0°: 4)
ROW_BLOCK = 32_768  # edges per block when the static edge terms are computed at construction
EDGE_TERMS = ("stored", "recomputed")  # grid2mesh/mesh2grid static edge terms: kept or per step
STORED_TERMS_MAX_BYTES = 2 * 2**30  # see default_edge_terms


def default_products(device: torch.device, dtype: torch.dtype = torch.float32,
                     model_config: ModelConfig | None = None) -> str:
    """The product back end when the caller does not say: on CPU, oneDNN where PyTorch has
    it, and in bf16 on AMX CPUs also the edge MLPs as one kernel (amx.py) for the models it
    takes (one hidden layer per MLP, a latent width divisible by 32: every published one).

    `matmul` sends fp32 products to MKL, which runs at about half oneDNN's rate on AMD CPUs;
    oneDNN with prepacked weights is at least as fast in both precisions on the CPUs measured
    (the bench prints both rates, so the rule can be checked on any host).
    """
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return "matmul"
    fits = model_config is None or (model_config.hidden_layers == 1
                                    and model_config.latent_size % 32 == 0)
    return "amx" if dtype == torch.bfloat16 and fits and amx.library() is not None else "onednn"


# oneDNN needs its weights in a packed layout that torch.compile cannot take as a graph input.
# The network registers each weight [in, out] with its packed copy; the custom op below takes
# the plain weight (so compiled graphs see an ordinary tensor and are shared by all layers of
# the same shape) and looks the packed copy up by storage address.
# Keyed by address, shape and strides, as a weight block may share storage with its MLP's
# whole first weight.
_PACKED: dict[tuple, tuple[weakref.ref, torch.Tensor]] = {}


def _weight_key(weight: torch.Tensor) -> tuple:
    return weight.data_ptr(), tuple(weight.shape), weight.stride()


def pack_weight(weight: torch.Tensor) -> None:
    """Register a oneDNN-packed copy of `weight` [in, out]; dropped when `weight` is freed."""
    key = _weight_key(weight)
    _PACKED[key] = (weakref.ref(weight),
                    torch.ops.mkldnn._reorder_linear_weight(weight.t().contiguous()))
    weakref.finalize(weight, _PACKED.pop, key, None)


@torch.library.custom_op("graphcast::onednn_linear", mutates_args=())
def onednn_linear(x: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight (+ bias) through oneDNN with the weight's packed copy (see pack_weight)."""
    entry = _PACKED.get(_weight_key(weight))
    if entry is None or entry[0]() is None:
        raise RuntimeError("weight was not packed for oneDNN (pack_weight)")
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), entry[1], bias, "none", [], "")


@onednn_linear.register_fake
def _onednn_linear_shape(x: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(x.shape[:-1] + weight.shape[-1:])


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
          onednn: bool = False) -> torch.Tensor:
    """x @ weight (+ bias) through the chosen back end (oneDNN: weight must be packed)."""
    if onednn:
        return onednn_linear(x, weight, bias)
    product = x @ weight
    return product if bias is None else product + bias


class Mlp(NamedTuple):
    """A haiku MLP (swish between layers) and its optional LayerNorm (scale, offset)."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    norm: tuple[torch.Tensor, torch.Tensor] | None

    def cast(self, dtype: torch.dtype) -> "Mlp":
        return Mlp(tuple(w.to(dtype) for w in self.weights),
                   tuple(b.to(dtype) for b in self.biases),
                   None if self.norm is None else (self.norm[0].to(dtype),
                                                   self.norm[1].to(dtype)))

    def split_first(self, sizes: list[int]) -> list[torch.Tensor]:
        """The first weight matrix split by input rows into blocks of `sizes`."""
        return [b.contiguous() for b in torch.split(self.weights[0], sizes, dim=0)]


def mlp_rest(mlp: Mlp, first: torch.Tensor, onednn: bool = False) -> torch.Tensor:
    """The MLP after its first product: `first` = input @ weights[0] (no bias) [..., L]."""
    x = first + mlp.biases[0]
    for w, b in zip(mlp.weights[1:], mlp.biases[1:], strict=True):
        x = dense(F.silu(x), w, b, onednn)
    if mlp.norm is not None:
        x = layer_norm(x, *mlp.norm)
    return x


def layer_norm(x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """haiku's LayerNorm over the last axis, its statistics in float32.

    bf16 takes the variance as E[x²] - E[x]² from one pass over each row: compiled, Inductor
    then reads an edge tensor once for both sums instead of once per sum (a GraphCast_small
    processor layer ~10 % faster on 2 cores). The cancellation it risks stays far below bf16's
    own rounding (2^-8) until a row's mean is hundreds of its spreads; float32 keeps torch's
    two-pass statistics, which the reference tolerance needs when the mean is large.
    """
    if x.dtype != torch.bfloat16:
        return F.layer_norm(x, x.shape[-1:], scale, offset, _LAYER_NORM_EPS)
    x32 = x.float()
    mean = x32.mean(-1, keepdim=True)
    variance = ((x32 * x32).mean(-1, keepdim=True) - mean * mean).clamp_min(0)
    normalised = (x32 - mean) * torch.rsqrt(variance + _LAYER_NORM_EPS)
    return (normalised * scale + offset).to(x.dtype)


def mlp_apply(mlp: Mlp, x: torch.Tensor, onednn: bool = False) -> torch.Tensor:
    """The whole MLP on x [..., in]."""
    return mlp_rest(mlp, dense(x, mlp.weights[0], None, onednn), onednn)


@torch.library.custom_op("graphcast::add_by_receiver", mutates_args=("sums",))
def add_by_receiver(sums: torch.Tensor, messages: torch.Tensor,
                    receivers: torch.Tensor) -> None:
    """Add edge messages [E, B, L] to their receiving nodes' float32 sums [N, B, L], in place.

    An opaque op, so that compiled stages call ATen's index_add_: Inductor would generate
    one atomic add per element instead (a 0.25° encoder chunk's sums 43 against 10.5 ms on
    2 cores; the encoder 8–18 % slower).
    """
    sums.index_add_(0, receivers, messages.float())


@add_by_receiver.register_fake
def _add_by_receiver_shape(sums: torch.Tensor, messages: torch.Tensor,
                           receivers: torch.Tensor) -> None:
    return None


MeshBlocks = tuple[tuple[int, int], ...]  # (nodes, in-degree) per run of equal in-degree


def sum_by_blocks(messages: torch.Tensor, blocks: MeshBlocks) -> torch.Tensor:
    """Float32 sum of edge messages [E, B, L] per receiver → [nodes, B, L], for edges
    ordered by receiver and receivers numbered so that in-degrees come in `blocks`."""
    sums, start = [], 0
    for nodes, degree in blocks:
        end = start + nodes * degree
        sums.append(messages[start:end].unflatten(0, (nodes, degree))
                    .sum(1, dtype=torch.float32))
        start = end
    return torch.cat(sums)


def mesh_blocks(receivers: np.ndarray, num_mesh: int) -> tuple[np.ndarray, MeshBlocks]:
    """(old number of each new mesh node, blocks): nodes renumbered by in-degree (stable), so
    that edges ordered by new receiver come in runs of equal in-degree (see sum_by_blocks)."""
    degree = np.bincount(receivers, minlength=num_mesh)
    order = np.argsort(degree, kind="stable")
    degrees, counts = np.unique(degree[order], return_counts=True)
    return order, tuple((int(c), int(d)) for d, c in zip(degrees, counts, strict=True))


class EdgeStage(NamedTuple):
    """First-layer weight blocks of an edge MLP (edge, sender, receiver) and the MLP."""

    w_edge: torch.Tensor
    w_send: torch.Tensor
    w_recv: torch.Tensor
    mlp: Mlp


class NodeStage(NamedTuple):
    """First-layer weight blocks of a node MLP (node, aggregated messages) and the MLP."""

    w_node: torch.Tensor
    w_messages: torch.Tensor
    mlp: Mlp


def static_terms(terms: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """A chunk's static edge terms: `terms` itself, or its rows `index` (see StaticEdgeTerms);
    inside a compiled stage the gather fuses with what uses it."""
    return terms if index is None else terms[index]


def encode(out: torch.Tensor, sums: torch.Tensor, grid_inputs: torch.Tensor,
           grid_struct: torch.Tensor, embed: Mlp, g2m_terms: torch.Tensor,
           g2m_index: torch.Tensor | None, mesh_recv: torch.Tensor, g2m_send: torch.Tensor,
           g2m_mlp: Mlp, local_senders: torch.Tensor, receivers: torch.Tensor, grid_node: Mlp,
           onednn: bool = False, fused: amx.FusedEdgeMlp | None = None) -> None:
    """One encoder chunk: embed its grid nodes, add their grid2mesh messages to `sums`,
    write their updated latents into `out` [N, B, L] (its rows of the grid's latents: the
    compiled stage stores them there, no copy after).

    sums [M + 1, B, L] (float32) accumulates every chunk's messages per receiver, in place;
    grid_inputs [N, B, C] are the chunk's nodes; local_senders index them; g2m_terms and
    g2m_index give the edges' static terms (static_terms); mesh_recv [M + 1, 1, L] is the
    receivers' static first-layer term. `fused`: the edge MLP's weights for the AMX kernel
    (the chunk's edges then sorted by receiver, see encoder_chunks).
    """
    dtype = g2m_terms.dtype
    batch = grid_inputs.shape[1]
    struct = grid_struct[:, None, :].expand(-1, batch, -1)
    grid = mlp_apply(embed, torch.cat([grid_inputs, struct], dim=-1).to(dtype), onednn)
    send = dense(grid, g2m_send, None, onednn)
    if fused is None:
        first = static_terms(g2m_terms, g2m_index) + mesh_recv[receivers] + send[local_senders]
        add_by_receiver(sums, mlp_rest(g2m_mlp, first, onednn), receivers)
    else:
        amx.edge_mlp(None, sums, receivers, [g2m_terms, mesh_recv, send],
                     [g2m_index, receivers, local_senders], *fused)
    out.copy_(grid + mlp_apply(grid_node, grid, onednn))


def encode_mesh(aggregated: torch.Tensor, mesh0: torch.Tensor, mesh_node: NodeStage,
                onednn: bool = False) -> torch.Tensor:
    """The grid2mesh update of the mesh nodes from their summed messages [M, B, L]."""
    aggregated = aggregated.to(mesh0.dtype)
    mesh0 = mesh0.expand(-1, aggregated.shape[1], -1)
    return mesh0 + mlp_rest(mesh_node.mlp, dense(mesh0, mesh_node.w_node, None, onednn)
                            + dense(aggregated, mesh_node.w_messages, None, onednn), onednn)


def process(edge: torch.Tensor, mesh: torch.Tensor, edge_stage: EdgeStage,
            node_stage: NodeStage, senders: torch.Tensor, receivers: torch.Tensor,
            blocks: MeshBlocks, onednn: bool = False,
            fused: amx.FusedEdgeMlp | None = None) -> torch.Tensor:
    """One message-passing step on the multi-mesh: the residual edge update in place (no
    second edge tensor per step), the node update returned; edges ordered by receiver, mesh
    nodes by in-degree (see mesh_blocks). `fused`: the edge MLP's weights for the AMX kernel,
    which then does the edge MLP, the edge update and the sums in one pass."""
    send = dense(mesh, edge_stage.w_send, None, onednn)
    recv = dense(mesh, edge_stage.w_recv, None, onednn)
    if fused is None:
        first = dense(edge, edge_stage.w_edge, None, onednn) + send[senders] + recv[receivers]
        messages = mlp_rest(edge_stage.mlp, first, onednn)
        aggregated = sum_by_blocks(messages, blocks).to(mesh.dtype)
    else:
        aggregated = torch.empty_like(mesh)  # every row written by the kernel
        amx.edge_mlp(edge, aggregated, receivers, [send, recv], [senders, receivers], *fused)
    mesh = mesh + mlp_rest(node_stage.mlp, dense(mesh, node_stage.w_node, None, onednn)
                           + dense(aggregated, node_stage.w_messages, None, onednn), onednn)
    if fused is None:
        edge.add_(messages)
    return mesh


def decode(out: torch.Tensor, grid: torch.Tensor, mesh_send: torch.Tensor,
           m2g_terms: torch.Tensor, m2g_index: torch.Tensor | None, edge_stage: EdgeStage,
           senders: torch.Tensor, grid_node: NodeStage, decoder: Mlp, onednn: bool = False,
           fused: amx.FusedEdgeMlp | None = None,
           receivers: torch.Tensor | None = None) -> None:
    """mesh2grid (each grid node receives 3 consecutive edges) and the output MLP for one
    chunk of grid nodes, written into `out`: float32 [B, outputs, nodes], the chunk's columns
    of the channel-major outputs the rollout unstacks (stored there by the compiled stage, no
    copy after); mesh_send: the mesh latents' sender projection [M, B, L], made once for all
    chunks; m2g_terms and m2g_index: the edges' static terms (static_terms). `fused`: the edge MLP's
    weights for the AMX kernel, which then does the edge MLP and the sums in one pass;
    receivers: at least the chunk's edges' receivers, 0, 0, 0, 1, 1, 1, ..."""
    per_grid = dense(grid, edge_stage.w_recv, None, onednn)
    if fused is None:
        first = ((static_terms(m2g_terms, m2g_index) + mesh_send[senders])
                 .unflatten(0, (grid.shape[0], 3)) + per_grid[:, None])
        messages = mlp_rest(edge_stage.mlp, first, onednn)
        aggregated = messages.float().sum(dim=1).to(grid.dtype)
    else:
        receivers = receivers[:len(senders)]
        aggregated = torch.empty_like(per_grid)  # every row written by the kernel
        amx.edge_mlp(None, aggregated, receivers, [m2g_terms, mesh_send, per_grid],
                     [m2g_index, senders, receivers], *fused)
    grid = grid + mlp_rest(grid_node.mlp, dense(grid, grid_node.w_node, None, onednn)
                           + dense(aggregated, grid_node.w_messages, None, onednn), onednn)
    out.copy_(mlp_apply(decoder, grid, onednn).float().permute(1, 2, 0))


class EncoderChunks(NamedTuple):
    """Equal-sized encoder chunks, so that one compiled encoder serves them all.

    Chunk c computes grid nodes [node_starts[c], + nodes) and the grid2mesh edges (sorted
    by sender) [edge_starts[c], + edges); it owns the senders of its share of the grid, and
    edges of other chunks inside its window go to the spare receiver `num_mesh` (discarded).
    The last chunk is moved back to end at the last node or edge, overlapping its neighbour.
    """

    node_starts: list[int]
    edge_starts: list[int]
    local_senders: torch.Tensor  # [chunks, edges]: sender - node start (0 where not owned)
    receivers: torch.Tensor      # [chunks, edges]: mesh receiver, or num_mesh if not owned
    nodes: int
    edges: int
    order: torch.Tensor | None = None  # [chunks, edges]: each edge's place in the window,
                                       # when sorted by receiver (for the AMX kernel)


def encoder_chunks(senders: np.ndarray, receivers: np.ndarray, num_grid: int, num_mesh: int,
                   chunk_nodes: int, by_receiver: bool = False) -> EncoderChunks:
    """Plan the encoder's chunks over grid2mesh edges sorted by sender (see EncoderChunks);
    by_receiver: each chunk's edges then sorted by receiver, as the AMX kernel needs them."""
    nodes = min(chunk_nodes, num_grid)
    owned = [(a, min(a + nodes, num_grid)) for a in range(0, num_grid, nodes)]
    bounds = np.searchsorted(senders, [a for a, _ in owned] + [num_grid])
    edges = max(1, int(np.diff(bounds).max()))
    node_starts, edge_starts, local, receiving = [], [], [], []
    for c, (first, last) in enumerate(owned):
        node_start, edge_start = min(first, num_grid - nodes), min(int(bounds[c]),
                                                                   len(senders) - edges)
        window = slice(edge_start, edge_start + edges)
        mine = (senders[window] >= first) & (senders[window] < last)
        node_starts.append(node_start)
        edge_starts.append(edge_start)
        local.append(np.where(mine, senders[window] - node_start, 0))
        receiving.append(np.where(mine, receivers[window], num_mesh))
    order = None
    if by_receiver:
        order = np.argsort(np.stack(receiving), axis=1, kind="stable")
        local = np.take_along_axis(np.stack(local), order, axis=1)
        receiving = np.take_along_axis(np.stack(receiving), order, axis=1)
        order = torch.from_numpy(order)
    return EncoderChunks(node_starts, edge_starts, torch.from_numpy(np.stack(local)),
                         torch.from_numpy(np.stack(receiving)), nodes, edges, order)


def _mlp(params: dict[str, torch.Tensor], gnn: str, module: str) -> Mlp:
    """Collect the arrays of `<gnn>/~_networks_builder/<module>_mlp` (+ its LayerNorm)."""
    prefix = f"{gnn}/~_networks_builder/{module}"
    weights, biases, k = [], [], 0
    while f"{prefix}_mlp/~/linear_{k}:w" in params:
        weights.append(params[f"{prefix}_mlp/~/linear_{k}:w"])
        biases.append(params[f"{prefix}_mlp/~/linear_{k}:b"])
        k += 1
    norm = (params[f"{prefix}_layer_norm:scale"], params[f"{prefix}_layer_norm:offset"]) \
        if f"{prefix}_layer_norm:scale" in params else None
    return Mlp(tuple(weights), tuple(biases), norm)


def _edge_stage(mlp: Mlp, latent: int, dtype: torch.dtype) -> EdgeStage:
    w_edge, w_send, w_recv = mlp.split_first([latent] * 3)
    return EdgeStage(w_edge.to(dtype), w_send.to(dtype), w_recv.to(dtype), mlp.cast(dtype))


def _node_stage(mlp: Mlp, latent: int, dtype: torch.dtype) -> NodeStage:
    w_node, w_messages = mlp.split_first([latent, latent])
    return NodeStage(w_node.to(dtype), w_messages.to(dtype), mlp.cast(dtype))


def _by_rows(block: Callable[[slice], torch.Tensor], count: int, rows: int) -> torch.Tensor:
    """block(rows) over consecutive row slices of `count` rows, written into one preallocated
    result (bounds temporaries: no list of blocks next to their concatenation). The blocks'
    temporaries reuse freed memory (heap.py), as the network's do when it runs: page-faulting
    them in afresh each block made the 0.25° tables take twice as long."""
    with heap.reuse_freed_memory():
        first = block(slice(0, rows))
        out = first.new_empty((count,) + first.shape[1:])
        out[:rows] = first
        for start in range(rows, count, rows):
            out[start:start + rows] = block(slice(start, start + rows))
    return out


class StaticEdgeTerms:
    """The static first-layer term of an edge set's MLP, a function of each edge's features
    alone [E, 1, L]: stored, one row per orbit of the polar turn (symmetry.py: a third of the
    edges at 1.0° and 0.25°, so 1.6 GB in place of 4.9 GB for the 0.25° grid2mesh and
    mesh2grid edges in bf16), or recomputed for the slice asked, each step (no table; two
    more products per edge and step)."""

    def __init__(self, terms: Callable[[torch.Tensor], torch.Tensor], features: torch.Tensor,
                 orbits: np.ndarray | None, rows: int) -> None:
        """terms: edge features [e, 4] → their terms [e, 1, L]; orbits: each edge's
        representative (symmetry.edge_orbits), None to recompute."""
        self._terms, self._features = terms, features
        self._table = self._index = None
        if orbits is not None:
            distinct, index = np.unique(orbits, return_inverse=True)
            chosen = features[torch.from_numpy(distinct).to(features.device)]
            self._table = _by_rows(lambda r: terms(chosen[r]), len(distinct), rows)
            self._index = torch.from_numpy(index).to(features.device)

    @property
    def stored_rows(self) -> int:
        """Rows kept in memory (0 when recomputed)."""
        return 0 if self._table is None else len(self._table)

    def __getitem__(self, edges: slice) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(terms, index) for these edges, as static_terms takes them: the table and the
        edges' rows in it, or the recomputed terms themselves."""
        if self._table is None:
            return self._terms(self._features[edges]), None
        return self._table, self._index[edges]


def _sorted_by(edges: EdgeSet, key: np.ndarray) -> EdgeSet:
    """The same edges ordered by `key` (stable)."""
    order = np.argsort(key, kind="stable")
    return EdgeSet(edges.senders[order], edges.receivers[order], edges.features[order])


# The compiled units of one step (each torch.compile'd once per process on the compiled path);
# each network adds its static-edge-term functions (see GraphCastNetwork._stages).
_STAGES = {"encode": encode, "encode_mesh": encode_mesh, "process": process, "decode": decode}


def _static_edge_terms(embed: Mlp, project: torch.Tensor | None, dtype: torch.dtype,
                       onednn: bool):
    """Block function: edge features [E, 4] → embed(features) (@ project) [E, 1, L], computed
    in the network's dtype through its product back end (the static terms are most of the
    set-up time at 0.25°: 5 TFLOP). The weights are cast (and packed) once."""
    embed = embed.cast(dtype)
    project = None if project is None else project.to(dtype).contiguous()
    if onednn:
        for weight in (*embed.weights, *(() if project is None else (project,))):
            pack_weight(weight)

    def block(features: torch.Tensor) -> torch.Tensor:
        x = mlp_apply(embed, features[:, None, :].to(dtype), onednn)
        return x if project is None else dense(x, project, None, onednn)
    return block


def default_edge_terms(stored_rows: int, latent: int, dtype: torch.dtype) -> str:
    """Keep the grid2mesh + mesh2grid static edge terms when their table (one row per orbit,
    see StaticEdgeTerms) takes at most STORED_TERMS_MAX_BYTES, else recompute them per chunk
    (two more products per edge and step).

    1.0°: 0.1 GB in bf16, kept. 0.25°: 1.6 GB in bf16, kept (27 % fewer products per step than
    recomputing, and GraphCast at 37 levels still peaks under 10 GiB); 3.2 GB in fp32, or
    4.8 GB in bf16 on a grid without the symmetry, recomputed, so that a 0.25° model leaves
    the database, the job and a second model room on a 24 GiB machine.
    """
    table = stored_rows * latent * torch.empty((), dtype=dtype).element_size()
    return "stored" if table <= STORED_TERMS_MAX_BYTES else "recomputed"


def _probe_vector_isa() -> None:
    """Run Inductor's check of the CPU's vector instruction sets at set-up, not in the first
    forecast: once per process it builds (or finds built) a probe library per set and loads
    each in a child Python, 1.45 s of a GraphCast_small first call on 2 cores; Inductor keeps
    the answer for the process. An internal function of Inductor: skipped if it moves."""
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa
    except ImportError:
        return
    pick_vec_isa()


def _compile_by_default(device: torch.device, num_mesh_edges: int) -> bool:
    """Whether to torch.compile when the caller does not say: on CPU for full-size meshes.

    Compiling costs tens of seconds once per process (it needs a C++ compiler); it pays off
    from GraphCast_small's mesh (81,900 edges) up, not for small test meshes.
    """
    return device.type == "cpu" and num_mesh_edges >= _COMPILE_MIN_MESH_EDGES


class GraphCastNetwork:
    """GraphCast's three graph networks with their static parts precomputed.

    decode_chunk_nodes, encode_chunk_nodes and row_block bound the temporaries at full scale;
    they are parameters so that tests can split the reference's small grid the same way.
    `compiled` says whether the forward pass runs torch.compile'd stages: True when compiling
    was chosen, set to False if compiling fails and the network falls back to eager mode.
    `reuse_memory` (True) runs each call, and Forecaster each rollout, under
    heap.reuse_freed_memory: faster, with a higher peak (0.25°: 1.5× faster, about 1 GiB
    more); set it to False for the other operating point.
    """

    @torch.inference_mode()  # statics become inference tensors, like the per-step ones
    def __init__(self, params: dict[str, np.ndarray], graphs: GraphCastGraphs,
                 model_config: ModelConfig, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", compile: bool | None = None,
                 products: str | None = None, *,
                 decode_chunk_nodes: int = DECODE_CHUNK_NODES,
                 encode_chunk_nodes: int = ENCODE_CHUNK_NODES,
                 row_block: int = ROW_BLOCK, edge_terms: str | None = None) -> None:
        """products: the dense-product back end, one of PRODUCTS (None: default_products);
        edge_terms: one of EDGE_TERMS, whether the grid2mesh and mesh2grid static edge terms
        are kept in memory, one row per orbit, or recomputed each step (see StaticEdgeTerms;
        None: default_edge_terms)."""
        if min(decode_chunk_nodes, encode_chunk_nodes, row_block) < 1:
            raise ValueError("decode_chunk_nodes, encode_chunk_nodes and row_block must be at "
                             "least 1")
        self.dtype, self.device = dtype, torch.device(device)
        self.decode_chunk_nodes = decode_chunk_nodes
        self.products = products or default_products(self.device, dtype, model_config)
        if self.products not in PRODUCTS:
            raise ValueError(f"unknown product back end {self.products!r}; use one of "
                             f"{', '.join(PRODUCTS)}")
        if self.products != "matmul" and (self.device.type != "cpu"
                                          or not torch.backends.mkldnn.is_available()):
            raise DeviceUnavailable(f"the {self.products} product back end needs a CPU build "
                                    "with oneDNN")
        if self.products == "amx" and (dtype != torch.bfloat16 or amx.library() is None):
            raise DeviceUnavailable("the amx product back end needs bf16 on a Linux CPU with "
                                    "AMX and a C compiler")
        if edge_terms not in (None, *EDGE_TERMS):
            raise ValueError(f"unknown edge_terms {edge_terms!r}; use one of "
                             f"{', '.join(EDGE_TERMS)}")
        latent = model_config.latent_size
        full = {k: torch.from_numpy(np.asarray(v, np.float32)).to(self.device)
                for k, v in params.items()}

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

        onednn = self.products != "matmul"  # amx: oneDNN for all but the fused edge MLPs
        self._stages: dict[str, Callable] = dict(_STAGES)  # eager while statics are built
        order, self.mesh_blocks = mesh_blocks(graphs.mesh.receivers,
                                              len(graphs.mesh_node_features))
        new = np.argsort(order)  # the new number of each mesh node
        g2m = _sorted_by(EdgeSet(graphs.grid2mesh.senders, new[graphs.grid2mesh.receivers],
                                 graphs.grid2mesh.features), graphs.grid2mesh.senders)
        mesh = EdgeSet(new[graphs.mesh.senders], new[graphs.mesh.receivers],
                       graphs.mesh.features)
        mesh = _sorted_by(mesh, mesh.receivers)
        m2g = EdgeSet(new[graphs.mesh2grid.senders], graphs.mesh2grid.receivers,
                      graphs.mesh2grid.features)
        if not np.array_equal(m2g.receivers, np.repeat(np.arange(len(m2g.receivers) // 3), 3)):
            raise ValueError("mesh2grid edges must come in threes per grid node")
        mesh_turn = node_turn(graphs.mesh_node_features[order])
        orbits = None if edge_terms == "recomputed" else self._orbits(graphs, mesh_turn, g2m, m2g)
        self.edge_terms = edge_terms or default_edge_terms(
            sum(len(np.unique(o)) for o in orbits), latent, dtype)
        if self.edge_terms == "recomputed":
            orbits = (None, None)
        self._g2m_edges = (g2m.senders, g2m.receivers, len(graphs.grid_node_features),
                           len(graphs.mesh_node_features))
        self.plan_encoder(encode_chunk_nodes)
        self.mesh_senders, self.mesh_receivers = tensor(mesh.senders), tensor(mesh.receivers)
        self.m2g_senders = tensor(m2g.senders)
        self.grid_struct = tensor(graphs.grid_node_features).to(dtype)
        mesh_struct = tensor(graphs.mesh_node_features[order])

        # Encoder: grid-node embedding is dynamic; mesh nodes and edges are static.
        self.embed_grid = _mlp(full, "grid2mesh_gnn", "encoder_nodes_grid_nodes").cast(dtype)
        embed_mesh = _mlp(full, "grid2mesh_gnn", "encoder_nodes_mesh_nodes")
        data_width = embed_mesh.weights[0].shape[0] - mesh_struct.shape[1]
        mesh_in = torch.cat([mesh_struct.new_zeros(len(mesh_struct), data_width), mesh_struct],
                            dim=1)[:, None, :]
        mesh0 = mlp_apply(embed_mesh, mesh_in)                        # [M, 1, L] float32
        embed_g2m = _mlp(full, "grid2mesh_gnn", "encoder_edges_grid2mesh")
        g2m_mlp = _mlp(full, "grid2mesh_gnn", "processor_edges_0_grid2mesh")
        w_edge, w_send, w_recv = g2m_mlp.split_first([latent] * 3)
        # [M + 1, 1, L]: the encoder's spare receiver (see EncoderChunks) gets a zero term
        self.mesh_recv = torch.cat([mesh0 @ w_recv, mesh0.new_zeros(1, 1, latent)]).to(dtype)
        # The static terms' functions are stages too: recomputed each step, they compile.
        self._stages["g2m_terms"] = _static_edge_terms(embed_g2m, w_edge, dtype, onednn)
        self.g2m_static = StaticEdgeTerms(  # [E_g2m, 1, L], edges by sender
            lambda features: self._stages["g2m_terms"](features), tensor(g2m.features),
            orbits[0], row_block)
        self.g2m_send, self.g2m_mlp = w_send.to(dtype), g2m_mlp.cast(dtype)
        self.g2m_fused = self._fused(None, self.g2m_mlp)
        self.mesh0 = mesh0.to(dtype)
        self.g2m_mesh_node = _node_stage(
            _mlp(full, "grid2mesh_gnn", "processor_nodes_0_mesh_nodes"), latent, dtype)
        self.g2m_grid_node = _mlp(full, "grid2mesh_gnn", "processor_nodes_0_grid_nodes").cast(dtype)

        # Processor.
        embed_mesh_edges = _mlp(full, "mesh_gnn", "encoder_edges_mesh")
        self.mesh_edge0 = StaticEdgeTerms(  # [E_mesh, 1, L], kept once per orbit
            _static_edge_terms(embed_mesh_edges, None, dtype, onednn), tensor(mesh.features),
            edge_orbits(mesh.senders, mesh.receivers, mesh.features, mesh_turn, mesh_turn),
            row_block)
        self.edge_stages = [_edge_stage(_mlp(full, "mesh_gnn", f"processor_edges_{i}_mesh"),
                                        latent, dtype) for i in range(model_config.gnn_msg_steps)]
        self.node_stages = [_node_stage(_mlp(full, "mesh_gnn", f"processor_nodes_{i}_mesh_nodes"),
                                        latent, dtype) for i in range(model_config.gnn_msg_steps)]
        self.fused_edges = [self._fused(stage.w_edge, stage.mlp) for stage in self.edge_stages]

        # Decoder: mesh2grid edges (static edge term) and the output MLP.
        m2g_edge_mlp = _mlp(full, "mesh2grid_gnn", "processor_edges_0_mesh2grid")
        embed_m2g = _mlp(full, "mesh2grid_gnn", "encoder_edges_mesh2grid")
        w_m2g_edge = m2g_edge_mlp.weights[0][:latent]
        self._stages["m2g_terms"] = _static_edge_terms(embed_m2g, w_m2g_edge, dtype, onednn)
        self.m2g_static = StaticEdgeTerms(  # [E_m2g, 1, L]
            lambda features: self._stages["m2g_terms"](features), tensor(m2g.features),
            orbits[1], row_block)
        self.m2g_stage = _edge_stage(m2g_edge_mlp, latent, dtype)
        self.m2g_grid_node = _node_stage(
            _mlp(full, "mesh2grid_gnn", "processor_nodes_0_grid_nodes"), latent, dtype)
        self.decoder = _mlp(full, "mesh2grid_gnn", "decoder_nodes_grid_nodes").cast(dtype)
        self.m2g_fused = self._fused(None, self.m2g_stage.mlp)
        chunk = min(decode_chunk_nodes, len(graphs.grid_node_features))
        self.m2g_receivers = (  # a decoder chunk's edge e goes to its node e // 3 (AMX kernel)
            torch.arange(chunk, device=self.device).repeat_interleave(3))

        if onednn:
            for weight in self._dynamic_weights():
                pack_weight(weight)

        use_compile = (_compile_by_default(self.device, len(mesh.senders)) if compile is None
                       else compile)
        if use_compile and self.device.type == "cpu":
            _probe_vector_isa()
        wrap = (lambda f: torch.compile(f, dynamic=False)) if use_compile else (lambda f: f)
        self._eager_stages = dict(self._stages)
        self.reuse_memory = True  # hold heap.reuse_freed_memory while running (see heap.py)
        self._stages = {name: wrap(function) for name, function in self._stages.items()}
        self.compiled: bool = use_compile

    @staticmethod
    def _orbits(graphs: GraphCastGraphs, mesh_turn: np.ndarray | None, g2m: EdgeSet,
                m2g: EdgeSet) -> tuple[np.ndarray, np.ndarray]:
        """symmetry.edge_orbits of the grid2mesh and mesh2grid edges; mesh_turn: node_turn of
        the renumbered mesh nodes."""
        grid_turn = node_turn(graphs.grid_node_features)
        return (edge_orbits(g2m.senders, g2m.receivers, g2m.features, grid_turn, mesh_turn),
                edge_orbits(m2g.senders, m2g.receivers, m2g.features, mesh_turn, grid_turn))

    def _fused(self, w_edge: torch.Tensor | None, mlp: Mlp) -> amx.FusedEdgeMlp | None:
        """An edge MLP's weights for the AMX kernel on the amx back end, else None."""
        return amx.fused_edge_mlp(w_edge, *mlp) if self.products == "amx" else None

    def plan_encoder(self, chunk_nodes: int) -> None:
        """Encode `chunk_nodes` grid nodes at a time from now on (see EncoderChunks)."""
        chunks = encoder_chunks(*self._g2m_edges, chunk_nodes, self.products == "amx")
        self.encoder_chunks = chunks._replace(
            local_senders=chunks.local_senders.to(self.device),
            receivers=chunks.receivers.to(self.device),
            order=None if chunks.order is None else chunks.order.to(self.device))

    def _dynamic_weights(self) -> list[torch.Tensor]:
        """Every weight matrix the per-step products use (some are packed but unused)."""
        mlps = [self.embed_grid, self.g2m_mlp, self.g2m_grid_node, self.decoder]
        blocks = [self.g2m_send]
        for stage in [self.g2m_mesh_node, self.m2g_stage, self.m2g_grid_node,
                      *self.edge_stages, *self.node_stages]:
            mlps.append(stage.mlp)
            blocks.extend(w for w in stage[:-1])
        return blocks + [w for mlp in mlps for w in mlp.weights]

    def __call__(self, grid_inputs: torch.Tensor) -> torch.Tensor:
        """Normalised outputs [G, B, outputs] (float32) from grid inputs [G, B, channels].

        The outputs are a view of a channel-major array [B, outputs, G], and the inputs may
        be one [B, channels, G], as the rollout stacks them: the compiled encoder and decoder
        transpose in kernels they run anyway, not the host (see the module docstring).
        """
        rule = heap.reuse_freed_memory() if self.reuse_memory else contextlib.nullcontext()
        with torch.inference_mode(), rule:
            try:
                return self._forward(grid_inputs.to(self.device))
            except Exception as error:  # noqa: BLE001 - e.g. no C++ compiler for torch.compile
                if not self.compiled:
                    raise
                _LOG.warning("torch.compile failed (%s); running the network eagerly", error)
                self._stages = dict(self._eager_stages)
                self.compiled = False
                return self._forward(grid_inputs.to(self.device))

    def _forward(self, grid_inputs: torch.Tensor) -> torch.Tensor:
        onednn = self.products != "matmul"
        grid, mesh = self._encode(grid_inputs, onednn)
        table, index = self.mesh_edge0[:]
        # A copy, updated in place; index_select: aten's advanced indexing took 5 times as
        # long for these rows on CPU (0.15 against 0.03 s at 0.25°, 2 cores).
        edge = torch.index_select(table, 0, index).expand(-1, grid.shape[1], -1).contiguous()
        for edge_stage, node_stage, fused in zip(self.edge_stages, self.node_stages,
                                                 self.fused_edges, strict=True):
            mesh = self._stages["process"](edge, mesh, edge_stage, node_stage,
                                           self.mesh_senders, self.mesh_receivers,
                                           self.mesh_blocks, onednn, fused)
        del edge
        mesh_send = dense(mesh, self.m2g_stage.w_send, None, onednn)
        del mesh
        outputs = torch.empty((grid.shape[1], self.decoder.weights[-1].shape[-1],
                               grid.shape[0]), dtype=torch.float32, device=self.device)
        for part, edges in self._decode_chunks(grid.shape[0]):
            self._stages["decode"](outputs[:, :, part], grid[part], mesh_send,
                                   *self.m2g_static[edges], self.m2g_stage,
                                   self.m2g_senders[edges], self.m2g_grid_node, self.decoder,
                                   onednn, self.m2g_fused, self.m2g_receivers)
        return outputs.permute(2, 0, 1)

    def _encode(self, grid_inputs: torch.Tensor,
                onednn: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder over its chunks: (grid latents [G, B, L], mesh latents [M, B, L])."""
        chunks, (num_mesh, _, latent) = self.encoder_chunks, self.mesh0.shape
        sums = torch.zeros((num_mesh + 1, grid_inputs.shape[1], latent), dtype=torch.float32,
                           device=self.device)  # one buffer for all chunks (spare row last)
        grid = torch.empty((grid_inputs.shape[0], grid_inputs.shape[1], latent),
                           dtype=self.dtype, device=self.device)
        for c, (node_start, edge_start) in enumerate(zip(chunks.node_starts, chunks.edge_starts,
                                                         strict=True)):
            nodes = slice(node_start, node_start + chunks.nodes)
            terms, index = self.g2m_static[edge_start:edge_start + chunks.edges]
            if chunks.order is not None:  # the chunk's edges sorted by receiver
                index = chunks.order[c] if index is None else index[chunks.order[c]]
            self._stages["encode"](
                grid[nodes], sums, grid_inputs[nodes], self.grid_struct[nodes], self.embed_grid,
                terms, index, self.mesh_recv, self.g2m_send, self.g2m_mlp,
                chunks.local_senders[c], chunks.receivers[c], self.g2m_grid_node, onednn,
                self.g2m_fused)
        mesh = self._stages["encode_mesh"](sums[:num_mesh], self.mesh0, self.g2m_mesh_node,
                                           onednn)
        return grid, mesh

    def _decode_chunks(self, num_grid: int) -> list[tuple[slice, slice]]:
        """(grid-node slice, its mesh2grid-edge slice) in near-equal chunks."""
        count = -(-num_grid // self.decode_chunk_nodes)
        size = -(-num_grid // count)
        return [(slice(start, min(start + size, num_grid)),
                 slice(3 * start, 3 * min(start + size, num_grid)))
                for start in range(0, num_grid, size)]
