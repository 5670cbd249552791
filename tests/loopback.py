"""The HTTP stand-ins' common part: a threading server on a free loopback port, served by a
thread for the duration of a `with` block."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """Base of the stand-in servers: `_listen(handler)` in `__init__`, then `with server:`."""

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> str:
        """Bind `handler` to a free loopback port; the server's root URL."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
