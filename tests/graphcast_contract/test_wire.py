"""The binary body of the wire format: encoded by `BinaryBody`, read back by
`BinaryBodyReader` whatever the chunking, and each framing fault named."""
from __future__ import annotations

import json

import numpy as np
import pytest

from graphcast_contract.wire import (
    DATA_ALIGNMENT,
    MAGIC,
    PREFIX,
    ArraySlot,
    BinaryBody,
    BinaryBodyReader,
    WireError,
    array_from_bytes,
    data_size,
    slot_bytes,
)

FIELDS = {"init_time": "2022-01-01T06:00:00Z", "lead_hours": [6]}


def sample_arrays() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return {"inputs": {"t": rng.normal(size=(2, 3, 4, 5)).astype(np.float32),
                       "u": rng.normal(size=(2, 4, 5))},  # float64: sent as float32
            "static": {"lsm": rng.uniform(size=(4, 5)).astype(np.float32)}}


def body_bytes(body: BinaryBody) -> bytes:
    return b"".join(bytes(chunk) for chunk in body)


def read(raw: bytes, chunk: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Feed `raw` in pieces of `chunk` bytes, as the service does; (header, arrays)."""
    reader = BinaryBodyReader(max_header_bytes=10_000)
    slots: list[ArraySlot] = []
    for start in range(0, len(raw), chunk):
        reader.feed(raw[start:start + chunk])
        if not slots and reader.header_ready:
            header = json.loads(reader.header)
            slots = [ArraySlot(f"{group}.{name}", tuple(item["shape"]), item["offset"])
                     for group in ("inputs", "static") for name, item in header[group].items()]
            reader.expect_data(data_size(slots))
    data = reader.finish()
    return header, {s.where: array_from_bytes(slot_bytes(data, s), s.shape) for s in slots}


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_a_body_reads_back_exactly_whatever_the_chunking(chunk: int) -> None:
    arrays = sample_arrays()
    body = BinaryBody(FIELDS, arrays)
    raw = body_bytes(body)
    assert len(raw) == len(body)
    assert raw.startswith(MAGIC)
    header, decoded = read(raw, chunk)
    assert {k: header[k] for k in FIELDS} == FIELDS
    for group, named in arrays.items():
        for name, array in named.items():
            assert decoded[f"{group}.{name}"].dtype == np.float32
            np.testing.assert_array_equal(decoded[f"{group}.{name}"], array.astype(np.float32))


def test_the_data_starts_aligned_and_a_body_can_be_sent_twice() -> None:
    body = BinaryBody(FIELDS, sample_arrays())
    first = body_bytes(body)
    (_, header_length) = PREFIX.unpack_from(first)
    assert (PREFIX.size + header_length) % DATA_ALIGNMENT == 0
    assert body_bytes(body) == first  # a retry resends it from the start


def test_the_arrays_are_sent_as_views_not_copies() -> None:
    arrays = sample_arrays()
    chunks = list(BinaryBody(FIELDS, arrays))
    views = [c for c in chunks if isinstance(c, memoryview)]
    assert len(views) == 3
    assert np.shares_memory(np.frombuffer(views[0], np.float32), arrays["inputs"]["t"])


def test_offsets_must_tile_the_data_section() -> None:
    a = ArraySlot("inputs.a", (2, 2), 0)
    assert data_size([ArraySlot("inputs.b", (3,), 16), a]) == 28
    with pytest.raises(WireError, match=r"inputs.b.offset: 20 leaves a gap \(expected 16"):
        data_size([a, ArraySlot("inputs.b", (3,), 20)])
    with pytest.raises(WireError, match="inputs.b.offset: 8 overlaps the previous array"):
        data_size([a, ArraySlot("inputs.b", (3,), 8)])


def framing_error(raw: bytes, max_header_bytes: int = 10_000) -> str:
    with pytest.raises(WireError) as error:
        read_with_limit(raw, max_header_bytes)
    return str(error.value)


def read_with_limit(raw: bytes, max_header_bytes: int) -> None:
    reader = BinaryBodyReader(max_header_bytes)
    reader.feed(raw[:PREFIX.size])
    reader.feed(raw[PREFIX.size:])
    if reader.header_ready:
        reader.expect_data(len(body_bytes(BinaryBody(FIELDS, sample_arrays())))
                           - reader.head_bytes)
    reader.finish()


def test_framing_faults_are_named() -> None:
    raw = body_bytes(BinaryBody(FIELDS, sample_arrays()))
    assert "not the magic" in framing_error(b"XXXXXXXX" + raw[8:])
    assert "shorter than its 12-byte prefix" in framing_error(raw[:5])
    assert "ends inside its header" in framing_error(raw[:40])
    assert "ends after" in framing_error(raw[:-4])
    assert "after the last array" in framing_error(raw + b"\0" * 4)
    assert "more than the limit of 100" in framing_error(raw, max_header_bytes=100)


def test_nan_in_an_array_is_refused() -> None:
    values = np.ones(10, np.float32)
    values[7] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        array_from_bytes(values.tobytes(), (2, 5))
