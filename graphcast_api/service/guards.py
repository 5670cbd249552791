"""ASGI middleware that guards the service: bearer token and request body size."""
from __future__ import annotations

import json
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = ("/health",)


async def send_error(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    """A JSON `{"detail": ...}` response."""
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    """The value of request header `name` (lower case), if present."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class BearerToken:
    """401 for every request but `GET /health` unless it carries `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = (header(scope, b"authorization") or "").encode("latin-1")
            if not secrets.compare_digest(given, self.expected):
                problem = "wrong bearer token" if given else "missing bearer token"
                await send_error(send, 401, f"{problem} (Authorization: Bearer <token>)",
                                 {"WWW-Authenticate": "Bearer"})
                return
        await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    """Raised from `receive` once the body passes the limit."""


class BodySizeLimit:
    """413 for request bodies over `max_bytes`, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            await self.reject(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self.reject(send)

    async def reject(self, send: Send) -> None:
        await send_error(send, 413, f"request body larger than the limit of {self.max_bytes}"
                                    " bytes (GRAPHCAST_API_MAX_BODY_MB)", {"Connection": "close"})
