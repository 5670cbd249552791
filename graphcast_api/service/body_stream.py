"""Read a request body as it streams in, within time limits.

A forecast holds its queue slot while its body is read, and uvicorn sets no limit on that: a
client that stalls or trickles its body would hold the slot, and delay a graceful shutdown,
for good. Every body is therefore read within an idle limit per chunk and a limit for the
whole body (BodyTimeout: 408); a client that disconnects meanwhile raises ClientGone (499).
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from graphcast_api.service.queue import ClientGone
from graphcast_api.settings import ENV

# Longest wait for the next chunk of a body; not a setting: a client sending its body has
# data for the next chunk at once, however slow its link.
BODY_IDLE_S = 30.0


class BodyTimeout(Exception):
    """The body did not arrive within its time limits; the message says which."""


async def body_chunks(request: Request, idle_s: float, total_s: float
                      ) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; BodyTimeout when the next one takes longer than
    `idle_s` or the whole body longer than `total_s`, ClientGone when the client leaves."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total_s
    stream = request.stream()
    while True:
        try:
            async with asyncio.timeout_at(min(loop.time() + idle_s, deadline)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if loop.time() >= deadline:
                raise BodyTimeout(f"body not received within {total_s:g} s "
                                  f"({ENV['body_timeout_s'][0]})") from None
            raise BodyTimeout(f"no body bytes for {idle_s:g} s") from None
        except ClientDisconnect:
            raise ClientGone("while sending its body") from None
        yield chunk


async def read_body(chunks: AsyncIterator[bytes]) -> bytearray:
    """The body, in one buffer that the caller can free (Starlette's `body()` keeps a copy)."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
    return body


async def drain_body(chunks: AsyncIterator[bytes]) -> None:
    """Read and drop the rest of the body, so that a client still sending it can read the
    answer."""
    async for _ in chunks:
        pass
