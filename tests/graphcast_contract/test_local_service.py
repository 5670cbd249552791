"""The local-service helpers the demo, the benchmarks and the service tests share: /health is
asked again while the service is loading (503), a process that dies or never answers ends
the wait, and `stop` kills a process that ignores SIGTERM."""
from __future__ import annotations

import json
import subprocess
import sys
from http.server import BaseHTTPRequestHandler

import pytest

from graphcast_contract.local_service import free_port, stop, wait_until_healthy
from tests.loopback import LoopbackServer


class LoadingThenHealthy(LoopbackServer):
    """Answers /health 503 `loading` `loading_replies` times, then 200 `ok`."""

    def __init__(self, loading_replies: int) -> None:
        self.asked = 0
        self.url = self._listen(self._handler(loading_replies))

    def _handler(self, loading_replies: int) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server.asked += 1
                loading = server.asked <= loading_replies
                body = json.dumps({"status": "loading" if loading else "ok",
                                   "model": "stand-in"}).encode()
                self.send_response(503 if loading else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def test_wait_until_healthy_asks_again_while_loading_and_returns_the_reply() -> None:
    with LoadingThenHealthy(loading_replies=2) as server:
        health = wait_until_healthy(server.url, timeout_s=30)
    assert health == {"status": "ok", "model": "stand-in"}
    assert server.asked == 3


def test_wait_until_healthy_fails_when_the_process_exits_first() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with pytest.raises(RuntimeError, match="exited with code 3"):
        wait_until_healthy(f"http://127.0.0.1:{free_port()}", timeout_s=30, process=process)


def test_wait_until_healthy_times_out_when_nothing_answers() -> None:
    with pytest.raises(TimeoutError, match="within 1 s"):
        wait_until_healthy(f"http://127.0.0.1:{free_port()}", timeout_s=1)


@pytest.mark.skipif(sys.platform == "win32", reason="terminate() is kill() on Windows")
def test_stop_kills_a_process_that_ignores_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    stop(process, timeout_s=0.5)
    assert process.returncode == -9
    process.stdout.close()
