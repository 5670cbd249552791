"""A local backfill (no --cluster) starts Ray on loopback only: a Ray instance reachable from
the network runs anyone's code, and the backfill's workers hold DATABASE_URL.

Each case runs in a fresh interpreter (tests/backfill/ray_listeners.py), as the job does: Ray
reads its multi-node switch once, when first imported. Without the switch, Ray takes the
address of this machine's default route (here, on a machine that has one) as its node
address and its processes listen on all interfaces.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.urls import is_loopback_host
from tests.backfill.helpers import stop_ray_processes
from tests.subprocess_env import clean_environment

PROBE_TIMEOUT_S = 300


def probe(*args: str) -> dict:
    """What tests.backfill.ray_listeners reports, run with `args`."""
    ray_dir = Path(tempfile.mkdtemp(prefix="rl-"))  # short: Ray's socket paths
    env = {**clean_environment(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(ray_dir)}
    try:
        done = subprocess.run([sys.executable, "-m", "tests.backfill.ray_listeners", *args],
                              cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S)
    finally:
        stop_ray_processes(ray_dir)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_process_of_a_local_ray_listens_on_loopback_only() -> None:
    listening = probe()["listening"]
    names = {name for _, _, name in listening}
    assert {"gcs_server", "raylet"} <= names, listening  # Ray's own processes were seen
    exposed = [socket for socket in listening if not is_loopback_host(socket[0])]
    assert not exposed, exposed


def test_ray_imported_before_the_driver_is_refused() -> None:
    """The switch would come too late: the driver refuses rather than listen beyond this
    machine (where the machine has no route beyond loopback, Ray takes 127.0.0.1 anyway)."""
    result = probe("--ray-imported-first")
    if "listening" in result and all(is_loopback_host(ip) for ip, _, _ in result["listening"]):
        pytest.skip("no route beyond loopback here: Ray takes 127.0.0.1 without the switch")
    assert "would listen on" in result.get("refused", ""), result
