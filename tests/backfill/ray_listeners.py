"""`python -m tests.backfill.ray_listeners [--ray-imported-first]`: start Ray as a local
backfill does (`driver._import_ray`, then `driver._join_ray`, in a fresh interpreter as the
job's), run one task so that a worker process starts too, and print as one JSON line the
listening TCP sockets of this process and every process it started: `{"listening":
[[address, port, process name], ...]}`, or `{"refused": message}` when the driver refused to
start Ray. `--ray-imported-first` imports Ray before the driver does."""
from __future__ import annotations

import json
import os
import sys
import time

import psutil

from backfill import driver
from backfill.driver import BackfillOptions
from graphcast_contract.errors import ClusterError
from tests.backfill.helpers import FIRST_CYCLE

SETTLE_S = 3.0  # the listening sockets unchanged this long: every agent has bound its ports
SETTLE_TIMEOUT_S = 60.0


def listening() -> list[tuple[str, int, str]]:
    """(address, port, process name) of each listening TCP socket of this process and its
    descendants (Ray's GCS, raylet, agents, workers)."""
    found = []
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            sockets = process.net_connections(kind="tcp")
            name = process.name()
        except psutil.Error:  # ended meanwhile
            continue
        found += [(s.laddr.ip, s.laddr.port, name) for s in sockets
                  if s.status == psutil.CONN_LISTEN]
    return sorted(found)


def settled_listening() -> list[tuple[str, int, str]]:
    """`listening()` once it has not changed for SETTLE_S (Ray's agents start after
    ray.init returns)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, since = listening(), time.monotonic()
    while time.monotonic() - since < SETTLE_S and time.monotonic() < deadline:
        time.sleep(0.5)
        now = listening()
        if now != last:
            last, since = now, time.monotonic()
    return last


def worker_pid() -> int:
    return os.getpid()


def main() -> None:
    if "--ray-imported-first" in sys.argv:
        import ray  # noqa: F401
    options = BackfillOptions(FIRST_CYCLE, FIRST_CYCLE, model=None)
    ray = driver._import_ray(options)
    try:
        driver._join_ray(options)
        ray.get(ray.remote(worker_pid).remote())
        print(json.dumps({"listening": settled_listening()}))
    except ClusterError as error:
        print(json.dumps({"refused": str(error)}))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
