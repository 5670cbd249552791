"""GraphCast's three graphs (grid2mesh, multi-mesh, mesh2grid) and their structural features.

Grid nodes are indexed lat-major (index = lat_index * num_lon + lon_index). Node features are
(sin lat, cos lon, sin lon); edge features are the edge length and the sender-minus-receiver
3-D offset in the receiver's local frame (receiver rotated to lat 0, lon 0), all divided by a
normalisation length (the longest edge of the graph, or mesh2grid's normalisation factor).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from graphcast_api.engine.configs import ModelConfig
from graphcast_api.engine.mesh import (
    TriangularMesh,
    faces_to_edges,
    mesh_hierarchy,
    multi_mesh_edges,
)
from graphcast_api.settings import default_cache_dir
from graphcast_contract.files import write_atomically

_LOG = logging.getLogger(__name__)
_CACHE_VERSION = 2  # 2: the file holds its key and is checked before it is used


@dataclasses.dataclass(frozen=True)
class EdgeSet:
    """Directed edges (senders, receivers: int64 [E]) with structural features [E, 4] float32."""

    senders: np.ndarray
    receivers: np.ndarray
    features: np.ndarray


@dataclasses.dataclass(frozen=True)
class GraphCastGraphs:
    """Everything static about the graphs for one grid and mesh."""

    grid_node_features: np.ndarray  # [num_grid, 3] float32
    mesh_node_features: np.ndarray  # [num_mesh, 3] float32
    mesh_lat: np.ndarray            # [num_mesh] float32, degrees
    mesh_lon: np.ndarray            # [num_mesh] float32, degrees in [0, 360)
    grid2mesh: EdgeSet
    mesh: EdgeSet
    mesh2grid: EdgeSet
    query_radius: float             # grid2mesh radius (chord length on the unit sphere)


def lat_lon_to_xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Unit vectors [..., 3] from latitude/longitude in degrees (dtype kept)."""
    phi, theta = np.deg2rad(lon), np.deg2rad(90 - lat)
    return np.stack([np.cos(phi) * np.sin(theta), np.sin(phi) * np.sin(theta), np.cos(theta)],
                    axis=-1)


def xyz_to_lat_lon(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (degrees, lon in [0, 360)) of points [..., 3]."""
    phi = np.arctan2(xyz[..., 1], xyz[..., 0])
    theta = np.arccos(xyz[..., 2])
    return 90 - np.rad2deg(theta), np.mod(np.rad2deg(phi), 360)


def node_features(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(sin lat, cos lon, sin lon) per node, as float32 [N, 3]."""
    theta, phi = np.deg2rad(90 - lat), np.deg2rad(lon)
    return np.stack([np.cos(theta), np.cos(phi), np.sin(phi)], axis=-1).astype(np.float32)


def edge_features(sender_lat: np.ndarray, sender_lon: np.ndarray, receiver_lat: np.ndarray,
                  receiver_lon: np.ndarray, senders: np.ndarray, receivers: np.ndarray,
                  normalization: float | None = None) -> np.ndarray:
    """Edge length and offset in the receiver's local frame, over a normalisation length.

    With `normalization` None the longest edge is used. Returns float32 [E, 4].
    """
    sender_xyz = lat_lon_to_xyz(sender_lat, sender_lon)[senders]
    receiver_xyz = lat_lon_to_xyz(receiver_lat, receiver_lon)[receivers]
    azimuth = -np.deg2rad(receiver_lon)
    polar = -np.deg2rad(90 - receiver_lat) + np.pi / 2
    to_local = Rotation.from_euler("zy", np.stack([azimuth, polar], axis=1)).as_matrix()[receivers]
    offset = (np.einsum("eij,ej->ei", to_local, sender_xyz)
              - np.einsum("eij,ej->ei", to_local, receiver_xyz))
    length = np.linalg.norm(offset, axis=-1, keepdims=True)
    scale = length.max() if normalization is None else normalization
    return (np.concatenate([length, offset], axis=-1) / scale).astype(np.float32)


def grid2mesh_edges(grid_xyz: np.ndarray, mesh_xyz: np.ndarray,
                    radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(grid senders, mesh receivers): every mesh node within `radius` of a grid node.

    Sorted by grid index, then mesh index.
    """
    neighbours = cKDTree(mesh_xyz).query_ball_point(grid_xyz, r=radius, return_sorted=True)
    counts = np.fromiter((len(n) for n in neighbours), dtype=np.int64, count=len(neighbours))
    senders = np.repeat(np.arange(len(grid_xyz)), counts)
    receivers = np.fromiter((i for n in neighbours for i in n), dtype=np.int64,
                            count=int(counts.sum()))
    return senders, receivers


def containing_faces(points: np.ndarray, mesh: TriangularMesh) -> np.ndarray:
    """Index of the mesh face closest to each point [P, 3], i.e. the triangle containing it.

    Uses trimesh's closest-point query, as the official code does, so that grid points lying
    exactly on a mesh edge or vertex are given the same face.
    """
    surface = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False)
    _, _, faces = trimesh.proximity.closest_point(surface, points)
    return np.asarray(faces, dtype=np.int64)


def build_graphs(model_config: ModelConfig, lat: np.ndarray, lon: np.ndarray) -> GraphCastGraphs:
    """Build the three graphs for a lat/lon grid (degrees) and the config's mesh."""
    meshes = mesh_hierarchy(model_config.mesh_size)
    finest = meshes[-1]
    mesh_lat, mesh_lon = xyz_to_lat_lon(finest.vertices)
    grid_lon2d, grid_lat2d = np.meshgrid(np.asarray(lon, np.float32), np.asarray(lat, np.float32))
    grid_lat, grid_lon = grid_lat2d.reshape(-1), grid_lon2d.reshape(-1)
    grid_xyz = lat_lon_to_xyz(grid_lat, grid_lon)

    finest_senders, finest_receivers = faces_to_edges(finest.faces)
    longest = np.linalg.norm(finest.vertices[finest_senders] - finest.vertices[finest_receivers],
                             axis=-1).max()
    radius = float(longest * model_config.radius_query_fraction_edge_length)
    g2m_senders, g2m_receivers = grid2mesh_edges(grid_xyz, finest.vertices, radius)
    mesh_senders, mesh_receivers = (e.astype(np.int64) for e in multi_mesh_edges(meshes))
    faces = containing_faces(grid_xyz, finest)
    m2g_senders = finest.faces[faces].reshape(-1).astype(np.int64)
    m2g_receivers = np.repeat(np.arange(len(grid_xyz)), 3)

    return GraphCastGraphs(
        grid_node_features=node_features(grid_lat, grid_lon),
        mesh_node_features=node_features(mesh_lat, mesh_lon),
        mesh_lat=mesh_lat, mesh_lon=mesh_lon,
        grid2mesh=EdgeSet(g2m_senders, g2m_receivers, edge_features(
            grid_lat, grid_lon, mesh_lat, mesh_lon, g2m_senders, g2m_receivers)),
        mesh=EdgeSet(mesh_senders, mesh_receivers, edge_features(
            mesh_lat, mesh_lon, mesh_lat, mesh_lon, mesh_senders, mesh_receivers)),
        mesh2grid=EdgeSet(m2g_senders, m2g_receivers, edge_features(
            mesh_lat, mesh_lon, grid_lat, grid_lon, m2g_senders, m2g_receivers,
            model_config.mesh2grid_edge_normalization_factor)),
        query_radius=radius)


def _cache_key(model_config: ModelConfig, lat: np.ndarray, lon: np.ndarray) -> str:
    """Hash of everything the graphs depend on."""
    digest = hashlib.sha256()
    digest.update(repr((_CACHE_VERSION, model_config.mesh_size,
                        model_config.radius_query_fraction_edge_length,
                        model_config.mesh2grid_edge_normalization_factor)).encode())
    for axis in (lat, lon):
        digest.update(np.asarray(axis, np.float32).tobytes() + b"|")
    return digest.hexdigest()[:24]


def _to_arrays(graphs: GraphCastGraphs) -> dict[str, np.ndarray]:
    arrays = {}
    for field in dataclasses.fields(graphs):
        value = getattr(graphs, field.name)
        if isinstance(value, EdgeSet):
            for part in ("senders", "receivers", "features"):
                arrays[f"{field.name}_{part}"] = getattr(value, part)
        else:
            arrays[field.name] = np.asarray(value)
    return arrays


class GraphCacheError(ValueError):
    """A graph cache file that does not hold the graphs it is named for."""


def _checked(graphs: GraphCastGraphs, model_config: ModelConfig, num_grid: int) -> None:
    """GraphCacheError unless the sizes and indices fit this grid and mesh."""
    num_mesh = 10 * 4 ** model_config.mesh_size + 2
    nodes = {"grid": num_grid, "mesh": num_mesh}
    if graphs.grid_node_features.shape != (num_grid, 3) \
            or graphs.mesh_node_features.shape != (num_mesh, 3) \
            or graphs.mesh_lat.shape != (num_mesh,) or graphs.mesh_lon.shape != (num_mesh,):
        raise GraphCacheError("node arrays do not match the grid and mesh")
    for name, (sender, receiver) in {"grid2mesh": ("grid", "mesh"), "mesh": ("mesh", "mesh"),
                                     "mesh2grid": ("mesh", "grid")}.items():
        edges: EdgeSet = getattr(graphs, name)
        count = len(edges.senders)
        if edges.receivers.shape != (count,) or edges.features.shape != (count, 4) \
                or count == 0 or not np.isfinite(edges.features).all():
            raise GraphCacheError(f"{name} edge arrays are inconsistent")
        for indices, kind in ((edges.senders, sender), (edges.receivers, receiver)):
            if indices.min() < 0 or indices.max() >= nodes[kind]:
                raise GraphCacheError(f"{name} edges point outside the {kind} nodes")


def _from_arrays(arrays: dict[str, np.ndarray]) -> GraphCastGraphs:
    values = {}
    for field in dataclasses.fields(GraphCastGraphs):
        if field.name in ("grid2mesh", "mesh", "mesh2grid"):
            values[field.name] = EdgeSet(*(arrays[f"{field.name}_{p}"]
                                           for p in ("senders", "receivers", "features")))
        else:
            values[field.name] = arrays[field.name]
    values["query_radius"] = float(values["query_radius"])
    return GraphCastGraphs(**values)


def load_or_build_graphs(model_config: ModelConfig, lat: np.ndarray, lon: np.ndarray,
                         cache_dir: Path | None = None) -> GraphCastGraphs:
    """The graphs for this grid and mesh, read from the on-disk cache or built and cached.

    A cache file is used only if it holds its own key and its sizes and indices fit this grid
    and mesh; an unreadable, truncated or foreign file is rebuilt and replaced, not trusted.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(model_config, lat, lon)
    path = directory / f"graphs-mesh{model_config.mesh_size}-{len(lat)}x{len(lon)}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                if str(data["cache_key"]) != key:
                    raise GraphCacheError("the file was written for other graphs")
                graphs = _from_arrays({k: data[k] for k in data.files})
            _checked(graphs, model_config, len(lat) * len(lon))
            return graphs
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            _LOG.warning("rebuilding the graphs: unusable graph cache %s: %s", path, error)
    graphs = build_graphs(model_config, lat, lon)
    try:
        with write_atomically(path) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, cache_key=np.asarray(key), **_to_arrays(graphs))
    except OSError as error:
        _LOG.warning("could not write graph cache %s: %s", path, error)
    return graphs
