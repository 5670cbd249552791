"""Connections that send nothing, or half a request's headers, are closed after
--header-timeout-s: uvicorn counts every open connection against its limit, so without that
MAX_CONNECTIONS silent sockets would make every later request answer 503."""
from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from graphcast_api.service.serve import MAX_CONNECTIONS
from tests.graphcast_api.service.helpers import REFERENCE_DIR, WAIT_TIMEOUT_S, serve_command

HEADER_TIMEOUT_S = 2  # short for the test; the 64 connections are open well within it


def health_status(url: str) -> int:
    """The status `GET /health` answers (never through a proxy)."""
    with requests.Session() as session:
        session.trust_env = False
        return session.get(f"{url}/health", timeout=WAIT_TIMEOUT_S).status_code


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed `sock` without answering (within WAIT_TIMEOUT_S)."""
    sock.settimeout(WAIT_TIMEOUT_S)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def served(stats_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service, its header timeout HEADER_TIMEOUT_S; yields its URL."""
    args = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir", str(stats_dir),
            "--precision", "fp32", "--device", "cpu",
            "--header-timeout-s", str(HEADER_TIMEOUT_S)]
    output = tmp_path_factory.mktemp("silent-connections") / "output.log"
    with serve_command(args, output=output) as (url, _):
        yield url


def connect(url: str) -> socket.socket:
    """A raw connection to the service at `url`."""
    return socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))


def test_silent_connections_are_closed_and_free_their_places(served: str) -> None:
    with ExitStack() as stack:
        silent = [stack.enter_context(connect(served)) for _ in range(MAX_CONNECTIONS)]
        silent[0].sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
        assert health_status(served) == 503  # they fill uvicorn's limit ...
        assert all(closed_by_server(sock) for sock in silent)  # ... until closed
        assert health_status(served) == 200


def test_half_sent_headers_after_an_answer_close_the_connection(served: str) -> None:
    """Between requests uvicorn's keep-alive limit ends when a byte arrives: the header
    deadline starts again after each answer."""
    with connect(served) as kept:
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = http.client.HTTPResponse(kept)
        answer.begin()
        answer.read()
        assert answer.status == 200 and not answer.will_close
        kept.sendall(b"GET /health HTTP/1.1\r\n")
        assert closed_by_server(kept)
