"""Arrays on the wire (docs/api.md, "Encodings").

Every array is little-endian float32 in C order. A JSON body carries each as base64 text; a
binary body (BINARY_CONTENT_TYPE) carries the same request as a JSON header, in which each
array object gives its `offset` instead of `data`, followed by the raw bytes of the arrays:

    MAGIC (8 bytes) | header length H (uint32, little-endian) | header (H bytes of UTF-8
    JSON, padded with spaces) | data: the arrays' bytes, each at its `offset` from here

The arrays tile the data section: sorted by offset they start at 0, follow each other without
gap or overlap, and the last one ends the body. The binary body costs 0.75x the JSON one and
decodes without a copy. Numpy-only: both sides use this module.
"""
from __future__ import annotations

import base64
import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

WIRE_DTYPE = "<f4"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/vnd.graphcast.forecast+binary"
REQUEST_ID_HEADER = "X-Request-ID"  # the id the service gives every response (its log's too)
BEARER_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space: what a header carries
MAGIC = b"GCFCBIN1"
PREFIX = struct.Struct("<8sI")  # magic, header length
DATA_ALIGNMENT = 64  # the encoder pads the header so that the data starts on this boundary
ARRAY_GROUPS = ("inputs", "static")
SEND_CHUNK_BYTES = 8 * 1024**2
FINITE_CHECK_VALUES = 4 * 1024**2


class WireError(ValueError):
    """A binary body that does not follow the framing; the message names the problem."""


def bearer_token_problem(token: str) -> str | None:
    """Why `token` cannot be the bearer token (None if it can): a token the service expects
    but no client can send in an `Authorization` header, or sends altered. Both the service
    and the job refuse such a token; the message never shows it."""
    if BEARER_TOKEN.fullmatch(token):
        return None
    return "contains whitespace, control or non-ASCII characters (value not shown)"


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """The contract's JSON array object `{dtype, shape, data}`."""
    data = np.ascontiguousarray(array, dtype=WIRE_DTYPE)
    return {"dtype": "float32", "shape": list(data.shape),
            "data": base64.b64encode(data.data).decode("ascii")}


def array_from_bytes(raw: bytes | bytearray | memoryview, shape: tuple[int, ...]
                     ) -> np.ndarray:
    """The float32 array over the bytes `raw` (no copy on a little-endian machine, and then
    writable where `raw` is); ValueError when their size does not fit `shape` or a value is
    NaN or infinite."""
    expected = np.dtype(WIRE_DTYPE).itemsize * int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(f"{len(raw)} bytes, but shape {list(shape)} of float32 needs {expected}")
    array = np.frombuffer(raw, dtype=WIRE_DTYPE)
    if not all_finite(array):
        raise ValueError("contains NaN or infinite values")
    return array.astype(np.float32, copy=False).reshape(shape)


def all_finite(values: np.ndarray) -> bool:
    """Whether the flat array `values` holds no NaN or infinity, checked in pieces so that the
    temporary masks stay small next to a 0.25 deg field."""
    return all(np.isfinite(values[start:start + FINITE_CHECK_VALUES]).all()
               for start in range(0, values.size, FINITE_CHECK_VALUES))


def array_nbytes(shape: tuple[int, ...] | list[int]) -> int:
    return np.dtype(WIRE_DTYPE).itemsize * int(np.prod(shape))


class BinaryBody:
    """A binary request body, streamed: `len()` gives its size (the Content-Length) and each
    `iter()` yields it again from the start (so a retry can resend it) as views of the
    arrays, never one buffer holding them all."""

    def __init__(self, fields: Mapping[str, Any],
                 arrays: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """`fields`: the request without its arrays; `arrays[group][name]` for each group of
        ARRAY_GROUPS."""
        self._arrays: list[np.ndarray] = []
        header: dict[str, Any] = dict(fields)
        offset = 0
        for group in ARRAY_GROUPS:
            header[group] = {}
            for name, array in arrays[group].items():
                data = np.ascontiguousarray(array, dtype=WIRE_DTYPE)
                header[group][name] = {"dtype": "float32", "shape": list(data.shape),
                                       "offset": offset}
                self._arrays.append(data)
                offset += data.nbytes
        text = json.dumps(header).encode("utf-8")
        padding = -(PREFIX.size + len(text)) % DATA_ALIGNMENT
        text += b" " * padding
        self._head = PREFIX.pack(MAGIC, len(text)) + text
        self._length = len(self._head) + offset

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes | memoryview]:
        yield self._head
        for array in self._arrays:
            raw = memoryview(array.reshape(-1)).cast("B")
            for start in range(0, len(raw), SEND_CHUNK_BYTES):
                yield raw[start:start + SEND_CHUNK_BYTES]


@dataclass(frozen=True)
class ArraySlot:
    """Where one array lies in the data section: `where` is its field path (`inputs.name`)."""

    where: str
    shape: tuple[int, ...]
    offset: int

    @property
    def end(self) -> int:
        return self.offset + array_nbytes(self.shape)


def data_size(slots: list[ArraySlot]) -> int:
    """Bytes of the data section that `slots` tile; WireError on a gap or an overlap."""
    position = 0
    for slot in sorted(slots, key=lambda s: s.offset):
        if slot.offset != position:
            problem = "overlaps the previous array" if slot.offset < position else "leaves a gap"
            raise WireError(f"{slot.where}.offset: {slot.offset} {problem} (expected "
                            f"{position}: arrays must follow each other from offset 0)")
        position = slot.end
    return position


class BinaryBodyReader:
    """Reads a binary body fed in chunks: first the header (`header` once `header_ready`),
    then, after `expect_data(size)`, the data into one buffer that the arrays then view."""

    def __init__(self, max_header_bytes: int) -> None:
        self.max_header_bytes = max_header_bytes
        self._pending = bytearray()
        self._header_length: int | None = None
        self.header: bytes | None = None
        self._data: np.ndarray | None = None
        self._filled = 0
        self.body_bytes = 0

    @property
    def header_ready(self) -> bool:
        return self.header is not None

    @property
    def head_bytes(self) -> int:
        """Bytes before the data section (prefix and header)."""
        return PREFIX.size + (self._header_length or 0)

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the body; WireError on a bad prefix or on data past the end."""
        self.body_bytes += len(chunk)
        if self._data is not None:
            self._store(memoryview(chunk))
            return
        if self.header is not None:
            raise WireError("data fed before expect_data")  # a bug of the caller
        self._pending += chunk
        if self._header_length is None and len(self._pending) >= PREFIX.size:
            self._read_prefix()
        if self._header_length is not None and len(self._pending) >= self.head_bytes:
            self.header = bytes(self._pending[PREFIX.size:self.head_bytes])

    def expect_data(self, size: int) -> None:
        """Allocate the data section of `size` bytes (known from the checked header)."""
        self._data = np.empty(size, dtype=np.uint8)
        leftover = memoryview(self._pending)[self.head_bytes:]
        self._store(leftover)
        leftover.release()
        self._pending = bytearray()

    def finish(self) -> np.ndarray:
        """The complete data section; WireError if the body ended early."""
        if self.header is None:
            got = len(self._pending)
            if self._header_length is None:
                raise WireError(f"binary body: {got} bytes, shorter than its "
                                f"{PREFIX.size}-byte prefix (magic and header length)")
            raise WireError(f"binary body: ends inside its header ({got - PREFIX.size} of "
                            f"{self._header_length} header bytes)")
        if self._data is None or self._filled < self._data.size:
            size = 0 if self._data is None else self._data.size
            raise WireError(f"binary body: ends after {self._filled} of the {size} data bytes"
                            " its header announces (an array is short)")
        return self._data

    def _read_prefix(self) -> None:
        magic, length = PREFIX.unpack_from(self._pending)
        if magic != MAGIC:
            raise WireError(f"binary body: starts with {bytes(magic)!r}, not the magic "
                            f"{MAGIC!r} of {BINARY_CONTENT_TYPE}")
        if length > self.max_header_bytes:
            raise WireError(f"binary body: header of {length} bytes, more than the limit of "
                            f"{self.max_header_bytes}")
        self._header_length = length

    def _store(self, chunk: memoryview) -> None:
        assert self._data is not None
        end = self._filled + len(chunk)
        if end > self._data.size:
            raise WireError(f"binary body: {end - self._data.size} bytes or more after the "
                            f"last array (its header announces {self._data.size} data bytes)")
        self._data[self._filled:end] = np.frombuffer(chunk, dtype=np.uint8)
        self._filled = end


def slot_bytes(data: np.ndarray, slot: ArraySlot) -> memoryview:
    """The bytes of `slot` in the data section `data` (a view)."""
    return memoryview(data[slot.offset:slot.end])
