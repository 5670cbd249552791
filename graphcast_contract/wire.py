"""Arrays on the wire: little-endian float32 bytes in C order, base64 in JSON (docs/api.md)."""
from __future__ import annotations

import base64
from typing import Any

import numpy as np

WIRE_DTYPE = "<f4"


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """The contract's array object `{dtype, shape, data}`."""
    data = np.ascontiguousarray(array, dtype=WIRE_DTYPE)
    return {"dtype": "float32", "shape": list(data.shape),
            "data": base64.b64encode(data.data).decode("ascii")}


def array_from_bytes(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 array of the decoded bytes `raw`; ValueError when their size does not fit
    `shape` or a value is NaN or infinite."""
    expected = np.dtype(WIRE_DTYPE).itemsize * int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"{len(raw)} bytes, but shape {list(shape)} of float32 needs {expected}")
    array = np.frombuffer(raw, dtype=WIRE_DTYPE).reshape(shape)
    if not np.isfinite(array).all():
        raise ValueError("contains NaN or infinite values")
    return array.astype(np.float32)
