"""Edges that a third of a turn about the polar axis maps onto each other.

The multi-mesh's icosahedron has a face centred on each pole (see mesh.icosahedron), so a
rotation by 120° about the polar axis maps the mesh onto itself; it maps a lat/lon grid onto
itself too when its longitudes are evenly spaced in a multiple of three (1.0°: 360, 0.25°:
1,440). An edge's structural features are taken in its receiver's local frame, so an edge
and its rotated images have the same features, up to float32 rounding, hence the same
static first-layer terms: the network computes and stores those once per orbit, a third of
the rows (0.25°: 1.6 M rows in place of 4.7 M). Edges without a matching image (a grid that
is not symmetric; a grid point on a mesh edge given another face than its images) keep a row
of their own, so the result never depends on the symmetry being there.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

_TURN = 2 * np.pi / 3
_MATCH = 1e-4  # float32 features over a short normalisation length: images agree to ~2e-5


def node_turn(features: np.ndarray) -> np.ndarray | None:
    """Each node's image under the turn, from node features (sin lat, cos lon, sin lon)
    [N, 3]; None if some node has no image (the nodes are not symmetric)."""
    cos_lon, sin_lon = features[:, 1].astype(np.float64), features[:, 2].astype(np.float64)
    turned = np.stack([features[:, 0],
                       cos_lon * np.cos(_TURN) - sin_lon * np.sin(_TURN),
                       sin_lon * np.cos(_TURN) + cos_lon * np.sin(_TURN)], axis=1)
    distance, image = cKDTree(features).query(turned)
    return image if distance.max() < _MATCH else None


def edge_orbits(senders: np.ndarray, receivers: np.ndarray, features: np.ndarray,
                sender_turn: np.ndarray | None, receiver_turn: np.ndarray | None) -> np.ndarray:
    """For each edge, the lowest-numbered edge among it and its images (one and two turns)
    whose features match its own; the edge itself where none does.

    features [E, 4] are the edges' structural features; sender_turn and receiver_turn are
    node_turn of the nodes that senders and receivers index (None: no symmetry).
    """
    rows = np.arange(len(senders))
    if sender_turn is None or receiver_turn is None:
        return rows
    width = len(receiver_turn)
    keys = senders * width + receivers
    order = np.argsort(keys)
    sorted_keys = keys[order]

    def image(edges: np.ndarray) -> np.ndarray:
        """The edge the turn maps each of `edges` to, or -1 where none matches it."""
        turned = sender_turn[senders[edges]] * width + receiver_turn[receivers[edges]]
        at = order[np.minimum(np.searchsorted(sorted_keys, turned), len(keys) - 1)]
        same = ((keys[at] == turned)
                & (np.abs(features[at] - features[edges]).max(axis=1) < _MATCH))
        return np.where(same, at, -1)

    once = image(rows)
    twice = np.where(once >= 0, image(np.maximum(once, 0)), -1)
    candidates = np.stack([rows, np.where(once >= 0, once, rows),
                           np.where(twice >= 0, twice, rows)])
    return candidates.min(axis=0)
