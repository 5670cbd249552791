"""uvicorn's HTTP protocol with a deadline for a request's headers.

uvicorn (its `limit_concurrency`) counts every open connection, also one that has sent
nothing, and itself closes no connection that has not sent complete request headers: a few
dozen silent sockets would make every later request, `/health` included, answer 503. Here a
connection is closed when a request's headers are not complete within `header_timeout_s` of
the connection's opening or of the end of its previous answer (between requests uvicorn's
keep-alive limit usually closes it first). A body is bounded by the service itself
(body_stream.py).
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """HttpToolsProtocol (uvicorn's parser; httptools is a requirement of the service) closing
    connections whose request headers are late; `header_timeout_s` is set by
    `with_header_deadline`."""

    header_timeout_s: float

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle: no pipelined request started
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self.header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_late(self) -> None:
        """Close the connection: no complete request headers in time (nothing is answered,
        as uvicorn's keep-alive limit answers nothing)."""
        self.header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def with_header_deadline(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to give uvicorn (`Config(http=...)`), closing connections whose
    request headers are not complete within `header_timeout_s`."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,),
                {"header_timeout_s": header_timeout_s})
