"""The GraphCast encoder-processor-decoder graph network in PyTorch.

Works on normalised, stacked grid-node features [num_grid, batch, channels] and returns the
normalised outputs [num_grid, batch, outputs]. Parameter names are the official haiku ones.
Everything that depends only on the graphs (edge embeddings, mesh-node embeddings and their
projections through the first processor layers) is computed once, at construction.

The first layer of every edge MLP, applied to concat(edge, sender node, receiver node), is
split into three products: node latents are projected once per node and gathered per edge,
which costs far less than multiplying the concatenation on every edge.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from graphcast_api.engine.configs import ModelConfig
from graphcast_api.engine.graph import GraphCastGraphs

_LAYER_NORM_EPS = 1e-5  # haiku's default


@dataclasses.dataclass
class Mlp:
    """A haiku MLP (swish between layers) with an optional LayerNorm after it."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    norm: tuple[torch.Tensor, torch.Tensor] | None

    def hidden(self, first: torch.Tensor) -> torch.Tensor:
        """Rest of the MLP given the first layer's pre-activation (bias included)."""
        x = first
        for w, b in zip(self.weights[1:], self.biases[1:]):
            x = torch.addmm(b, F.silu(x).flatten(0, -2), w).view(*x.shape[:-1], -1)
        if self.norm is not None:
            x = F.layer_norm(x, x.shape[-1:], self.norm[0], self.norm[1], _LAYER_NORM_EPS)
        return x

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        first = torch.addmm(self.biases[0], x.flatten(0, -2), self.weights[0])
        return self.hidden(first.view(*x.shape[:-1], -1))

    def first_layer_blocks(self, sizes: list[int]) -> list[torch.Tensor]:
        """The first weight matrix split by input rows into blocks of `sizes`."""
        return list(torch.split(self.weights[0], sizes, dim=0))

    def to(self, dtype: torch.dtype) -> "Mlp":
        """Copy with every array cast to `dtype`."""
        return Mlp([w.to(dtype) for w in self.weights], [b.to(dtype) for b in self.biases],
                   None if self.norm is None else tuple(t.to(dtype) for t in self.norm))


def _mlp(params: dict[str, torch.Tensor], gnn: str, module: str) -> Mlp:
    """Collect the arrays of `<gnn>/~_networks_builder/<module>_mlp` (+ its LayerNorm)."""
    prefix = f"{gnn}/~_networks_builder/{module}"
    weights, biases, k = [], [], 0
    while f"{prefix}_mlp/~/linear_{k}:w" in params:
        weights.append(params[f"{prefix}_mlp/~/linear_{k}:w"])
        biases.append(params[f"{prefix}_mlp/~/linear_{k}:b"])
        k += 1
    norm_key = f"{prefix}_layer_norm"
    norm = (params[f"{norm_key}:scale"], params[f"{norm_key}:offset"]) \
        if f"{norm_key}:scale" in params else None
    return Mlp(weights, biases, norm)


def sum_by_receiver(messages: torch.Tensor, receivers: torch.Tensor,
                    num_nodes: int) -> torch.Tensor:
    """Sum edge messages [E, B, L] per receiving node, in float32 → [num_nodes, B, L]."""
    total = torch.zeros((num_nodes,) + messages.shape[1:], dtype=torch.float32,
                        device=messages.device)
    return total.index_add_(0, receivers, messages.float())


class GraphCastNetwork:
    """GraphCast's three graph networks with their static parts precomputed."""

    def __init__(self, params: dict[str, np.ndarray], graphs: GraphCastGraphs,
                 model_config: ModelConfig, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        self.dtype, self.device = dtype, torch.device(device)
        full = {k: torch.from_numpy(np.asarray(v, np.float32)).to(self.device)
                for k, v in params.items()}
        latent = model_config.latent_size

        def edges(edge_set) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return (torch.from_numpy(edge_set.senders).to(self.device),
                    torch.from_numpy(edge_set.receivers).to(self.device),
                    torch.from_numpy(edge_set.features).to(self.device)[:, None, :])

        self.g2m_senders, self.g2m_receivers, g2m_features = edges(graphs.grid2mesh)
        self.mesh_senders, self.mesh_receivers, mesh_features = edges(graphs.mesh)
        self.m2g_senders, self.m2g_receivers, m2g_features = edges(graphs.mesh2grid)
        self.num_mesh = len(graphs.mesh_node_features)
        self.grid_struct = torch.from_numpy(graphs.grid_node_features).to(self.device)
        mesh_struct = torch.from_numpy(graphs.mesh_node_features).to(self.device)

        # Encoder (grid2mesh_gnn embedders): grid nodes are dynamic, the rest is static.
        self.embed_grid = _mlp(full, "grid2mesh_gnn", "encoder_nodes_grid_nodes").to(dtype)
        embed_mesh = _mlp(full, "grid2mesh_gnn", "encoder_nodes_mesh_nodes")
        mesh_in = torch.cat([torch.zeros(len(mesh_struct), embed_mesh.weights[0].shape[0]
                                         - mesh_struct.shape[1], device=self.device),
                             mesh_struct], dim=1)[:, None, :]
        self.mesh_latent0 = embed_mesh(mesh_in)                      # [M, 1, L] float32
        g2m_edge = _mlp(full, "grid2mesh_gnn", "encoder_edges_grid2mesh")(g2m_features)

        # grid2mesh processor: the edge MLP's edge and receiver (mesh) terms are static.
        g2m_mlp = _mlp(full, "grid2mesh_gnn", "processor_edges_0_grid2mesh")
        w_edge, w_send, w_recv = g2m_mlp.first_layer_blocks([latent] * 3)
        self.g2m_static = (g2m_edge @ w_edge + (self.mesh_latent0 @ w_recv)[self.g2m_receivers]
                           + g2m_mlp.biases[0]).to(dtype)            # [E_g2m, 1, L]
        self.g2m_w_send, self.g2m_edge_mlp = w_send.to(dtype), g2m_mlp.to(dtype)
        self.g2m_mesh_node = _mlp(full, "grid2mesh_gnn", "processor_nodes_0_mesh_nodes").to(dtype)
        self.g2m_grid_node = _mlp(full, "grid2mesh_gnn", "processor_nodes_0_grid_nodes").to(dtype)

        # Processor on the multi-mesh.
        self.mesh_edge0 = _mlp(full, "mesh_gnn", "encoder_edges_mesh")(mesh_features).to(dtype)
        self.mesh_edge_mlps = [_mlp(full, "mesh_gnn", f"processor_edges_{i}_mesh").to(dtype)
                               for i in range(model_config.gnn_msg_steps)]
        self.mesh_node_mlps = [_mlp(full, "mesh_gnn", f"processor_nodes_{i}_mesh_nodes").to(dtype)
                               for i in range(model_config.gnn_msg_steps)]

        # mesh2grid (decoder side): edge term static; mesh nodes' update is not used.
        m2g_mlp = _mlp(full, "mesh2grid_gnn", "processor_edges_0_mesh2grid")
        w_edge, self.m2g_w_send, self.m2g_w_recv = (
            w.to(dtype) for w in m2g_mlp.first_layer_blocks([latent] * 3))
        m2g_edge = _mlp(full, "mesh2grid_gnn", "encoder_edges_mesh2grid")(m2g_features)
        self.m2g_static = (m2g_edge @ m2g_mlp.weights[0][:latent] + m2g_mlp.biases[0]).to(dtype)
        self.m2g_edge_mlp = m2g_mlp.to(dtype)
        self.m2g_grid_node = _mlp(full, "mesh2grid_gnn", "processor_nodes_0_grid_nodes").to(dtype)
        self.decoder = _mlp(full, "mesh2grid_gnn", "decoder_nodes_grid_nodes").to(dtype)
        self.mesh_latent0 = self.mesh_latent0.to(dtype)

    def _node_update(self, mlp: Mlp, nodes: torch.Tensor, aggregated: torch.Tensor) -> torch.Tensor:
        """nodes + MLP(concat(nodes, aggregated messages))."""
        return nodes + mlp(torch.cat([nodes, aggregated.to(nodes.dtype)], dim=-1))

    def __call__(self, grid_inputs: torch.Tensor) -> torch.Tensor:
        """Normalised outputs [G, B, outputs] (float32) from grid inputs [G, B, channels]."""
        batch = grid_inputs.shape[1]
        struct = self.grid_struct[:, None, :].expand(-1, batch, -1)
        grid = self.embed_grid(torch.cat([grid_inputs, struct], dim=-1).to(self.dtype))

        # grid2mesh: messages from grid to mesh nodes; grid nodes get their own MLP update.
        sent = (grid @ self.g2m_w_send)[self.g2m_senders]
        messages = self.g2m_edge_mlp.hidden(self.g2m_static + sent)
        mesh0 = self.mesh_latent0.expand(-1, batch, -1)
        mesh = self._node_update(self.g2m_mesh_node, mesh0, sum_by_receiver(
            messages, self.g2m_receivers, self.num_mesh))
        grid = grid + self.g2m_grid_node(grid)

        # Processor: message passing on the multi-mesh.
        edge = self.mesh_edge0.expand(-1, batch, -1)
        for edge_mlp, node_mlp in zip(self.mesh_edge_mlps, self.mesh_node_mlps):
            messages = self._edge_update(edge_mlp, edge, mesh)
            mesh = self._node_update(node_mlp, mesh, sum_by_receiver(
                messages, self.mesh_receivers, self.num_mesh))
            edge = edge + messages

        # mesh2grid: every grid node receives exactly 3 consecutive edges.
        first = (self.m2g_static + (mesh @ self.m2g_w_send)[self.m2g_senders]
                 + (grid @ self.m2g_w_recv)[self.m2g_receivers])
        messages = self.m2g_edge_mlp.hidden(first)
        aggregated = messages.float().view(-1, 3, *messages.shape[1:]).sum(dim=1)
        grid = self._node_update(self.m2g_grid_node, grid, aggregated)
        return self.decoder(grid).float()

    def _edge_update(self, mlp: Mlp, edge: torch.Tensor, mesh: torch.Tensor) -> torch.Tensor:
        """Edge MLP on concat(edge, sender, receiver), with the split first layer."""
        latent = edge.shape[-1]
        w_edge, w_send, w_recv = mlp.first_layer_blocks([latent] * 3)
        first = (torch.addmm(mlp.biases[0], edge.flatten(0, 1), w_edge).view(edge.shape)
                 + (mesh @ w_send)[self.mesh_senders] + (mesh @ w_recv)[self.mesh_receivers])
        return mlp.hidden(first)
