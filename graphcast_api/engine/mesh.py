"""The icosahedral multi-mesh: a rotated icosahedron refined `mesh_size` times.

Vertex and face order follow the official construction, so node indices match it.
All coordinates are float32 unit vectors, as in the official code.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation


@dataclasses.dataclass(frozen=True)
class TriangularMesh:
    """Vertices [V, 3] (float32, on the unit sphere) and faces [F, 3] (int32, counter-clockwise)."""

    vertices: np.ndarray
    faces: np.ndarray


def icosahedron() -> TriangularMesh:
    """Regular icosahedron in the official orientation (rotated about y by (pi - dihedral) / 2)."""
    phi = (1 + np.sqrt(5)) / 2
    vertices = []
    for c1 in (1.0, -1.0):
        for c2 in (phi, -phi):
            vertices += [(c1, c2, 0.0), (0.0, c1, c2), (c2, 0.0, c1)]
    vertices = np.array(vertices, dtype=np.float32)
    vertices /= np.linalg.norm([1.0, phi])  # in place: stays float32, as in the official code
    faces = np.array([
        (0, 1, 2), (0, 6, 1), (8, 0, 2), (8, 4, 0), (3, 8, 2), (3, 2, 7), (7, 2, 1),
        (0, 4, 6), (4, 11, 6), (6, 11, 5), (1, 5, 7), (4, 10, 11), (4, 8, 10), (10, 8, 3),
        (10, 3, 9), (11, 10, 9), (11, 9, 5), (5, 9, 7), (9, 3, 7), (1, 6, 5)], dtype=np.int32)
    dihedral = 2 * np.arcsin(phi / np.sqrt(3))
    rotation = Rotation.from_euler("y", (np.pi - dihedral) / 2).as_matrix()
    return TriangularMesh(np.dot(vertices, rotation).astype(np.float32), faces)


def refine(mesh: TriangularMesh) -> TriangularMesh:
    """Split every face into 4 through its edge midpoints (pushed back onto the sphere).

    New vertices are appended in the order their edges are first met, face by face.
    """
    vertices = list(mesh.vertices)
    midpoint_index: dict[tuple[int, int], int] = {}

    def midpoint(a: int, b: int) -> int:
        key = (a, b) if a < b else (b, a)
        if key not in midpoint_index:
            position = mesh.vertices[list(key)].mean(0)
            position /= np.linalg.norm(position)
            midpoint_index[key] = len(vertices)
            vertices.append(position)
        return midpoint_index[key]

    faces = []
    for a, b, c in mesh.faces:
        ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
        faces += [(a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca)]
    return TriangularMesh(np.array(vertices, dtype=np.float32), np.array(faces, dtype=np.int32))


def mesh_hierarchy(mesh_size: int) -> list[TriangularMesh]:
    """Meshes of refinement levels 0..mesh_size; each level's vertices extend the previous."""
    meshes = [icosahedron()]
    for _ in range(mesh_size):
        meshes.append(refine(meshes[-1]))
    return meshes


def faces_to_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges (senders, receivers) of every face side, both directions overall."""
    senders = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    receivers = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    return senders, receivers


def multi_mesh_edges(meshes: list[TriangularMesh]) -> tuple[np.ndarray, np.ndarray]:
    """Edges of all refinement levels merged, on the finest level's vertices."""
    return faces_to_edges(np.concatenate([m.faces for m in meshes]))
