"""ASGI middleware that guards the service: request ids, bearer token, request body size."""
from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graphcast_contract.wire import REQUEST_ID_HEADER

OPEN_PATHS = ("/health",)

log = logging.getLogger("graphcast_api.service")


async def send_error(send: Send, status: int, detail: str, headers: dict[str, str],
                     extra: dict[str, str] | None = None) -> None:
    """A JSON `{"detail": ..., **extra}` response."""
    body = json.dumps({"detail": detail, **(extra or {})}).encode()
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


class RequestId:
    """Gives every HTTP request an id (`scope["request_id"]`, the X-Request-ID response header)
    and turns an unhandled error into `500 {"detail": "internal error", "request_id": ...}`,
    logging its traceback under that id: the client learns nothing of the internals, and the
    id matches its failure to the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [*message.get("headers", []),
                           (REQUEST_ID_HEADER.lower().encode(), request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s (%s %s) failed", request_id, scope["method"],
                          scope["path"])
            if started:  # the answer is under way: uvicorn closes the connection
                raise
            await send_error(send, 500, "internal error", {REQUEST_ID_HEADER: request_id},
                             {"request_id": request_id})


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
    """413 for request bodies over `max_bytes()`, by Content-Length or while streaming.

    `max_bytes()` is None while the model loads (the limit is sized from it): no route reads
    a body then."""

    def __init__(self, app: ASGIApp, max_bytes: Callable[[], int | None]) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_bytes()
        if scope["type"] != "http" or limit is None:
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            await self.reject(send, limit)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
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
            await self.reject(send, limit)

    async def reject(self, send: Send, limit: int) -> None:
        await send_error(send, 413, f"request body larger than the limit of {limit}"
                                    " bytes (GRAPHCAST_API_MAX_BODY_MB)", {"Connection": "close"})
