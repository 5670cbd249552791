"""A GraphCast service run on this machine, as the demo, the benchmarks and the tests run it:
a free loopback port, waiting until `/health` answers, stopping the process. Standard library
only (the core does not load requests): `/health` is read with urllib, never through a proxy.
"""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
import urllib.request

POLL_S = 0.2
PROBE_TIMEOUT_S = 5  # one /health request; longer means busy, asked again
STOP_TIMEOUT_S = 30

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port on loopback where nothing listens right now (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, timeout_s: float,
                       process: subprocess.Popen | None = None) -> dict:
    """Poll `url`/health until it answers 200; its reply. RuntimeError if `process` exits
    first, TimeoutError if it has not answered 200 within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode}")
        try:
            with _NO_PROXY.open(f"{url}/health", timeout=PROBE_TIMEOUT_S) as reply:
                if reply.status == 200:
                    return json.load(reply)
        except (OSError, http.client.HTTPException):  # not up, loading (503), or busy
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"{url}/health did not answer 200 within {timeout_s:.0f} s")


def stop(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (the service finishes what it is doing), SIGKILL after `timeout_s`."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
