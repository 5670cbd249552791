"""Receive a binary `POST /v1/forecast` body (graphcast_contract.wire) as it streams in.

The header is checked against the model before any data is read, and the data is copied once,
chunk by chunk, into the buffer that the decoded arrays then view: one request costs about
the size of its arrays, not the 2-3x of buffering the body and decoding it.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from starlette.requests import Request

from graphcast_api.service.body_stream import drain_body
from graphcast_api.service.model_card import Forecaster
from graphcast_api.service.request_parsing import (
    BinaryPlan,
    DecodedRequest,
    RequestCaps,
    RequestError,
    check_binary_header,
    decode_binary_data,
)
from graphcast_contract.wire import BinaryBodyReader, WireError


async def read_binary_request(request: Request, chunks: AsyncIterator[bytes],
                              model: Forecaster, caps: RequestCaps, max_header_bytes: int
                              ) -> DecodedRequest:
    """The decoded request from the body's `chunks` (body_stream.body_chunks); RequestError
    (400 for the framing, 422 for the content) once the rest of the body is drained, so that
    a client still sending reads the answer."""
    reader = BinaryBodyReader(max_header_bytes)
    plan: BinaryPlan | None = None
    try:
        async for chunk in chunks:
            reader.feed(chunk)
            if plan is None and reader.header_ready:
                plan = await asyncio.to_thread(check_binary_header, reader.header, model, caps)
                check_content_length(request, reader.head_bytes + plan.data_bytes)
                reader.expect_data(plan.data_bytes)
        data = reader.finish()
    except (WireError, RequestError) as error:
        await drain_body(chunks)
        if isinstance(error, WireError):
            raise RequestError(400, str(error)) from None
        raise
    assert plan is not None  # finish() raised otherwise
    return await asyncio.to_thread(decode_binary_data, plan, data, model)


def decode_binary_body(chunks: Iterable[bytes | memoryview], model: Forecaster,
                       caps: RequestCaps, max_header_bytes: int) -> DecodedRequest:
    """`read_binary_request` for a body already in this process (the backfill's in-process
    client): the same checks, errors and single copy of the data."""
    reader = BinaryBodyReader(max_header_bytes)
    plan: BinaryPlan | None = None
    try:
        for chunk in chunks:
            reader.feed(chunk)
            if plan is None and reader.header_ready:
                plan = check_binary_header(reader.header, model, caps)
                reader.expect_data(plan.data_bytes)
        data = reader.finish()
    except WireError as error:
        raise RequestError(400, str(error)) from None
    assert plan is not None  # finish() raised otherwise
    return decode_binary_data(plan, data, model)


def check_content_length(request: Request, expected: int) -> None:
    """400 when a declared Content-Length differs from the size the header announces."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != expected:
        raise RequestError(400, f"binary body: Content-Length {declared} differs from the "
                                f"{expected} bytes its header announces (an array short, "
                                "or bytes after the last one)")
