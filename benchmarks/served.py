"""The real service as the benchmarks run it: `python -m graphcast_api serve` on a free
loopback port, waited for until healthy (`graphcast_contract.local_service.stop` stops it);
and the peak memory of a running process. Imported by the benchmark scripts of this folder
(`python benchmarks/<name>.py` puts the folder on the path)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from graphcast_contract.local_service import free_port, stop, wait_until_healthy
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.variables import STATS_FILES

REFERENCE_DIR = PROJECT_ROOT / "tests" / "data" / "graphcast_reference"


def reference_stats(folder: Path) -> Path:
    """`folder/stats`: the reference statistics under their official file names."""
    stats = folder / "stats"
    stats.mkdir()
    for name in STATS_FILES:
        shutil.copyfile(REFERENCE_DIR / f"stats_{name}", stats / name)
    return stats


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_service(options: list[str], log_path: Path, env: dict[str, str],
                  timeout_s: float = 300.0) -> tuple[subprocess.Popen, str, float]:
    """`serve OPTIONS` on a free port, healthy: (process, base URL, start-up seconds).
    RuntimeError if it exits first, TimeoutError if it is not healthy within `timeout_s`."""
    port = free_port()
    started = time.perf_counter()
    with open(log_path, "w") as log:
        service = subprocess.Popen(
            [sys.executable, "-m", "graphcast_api", "serve", *options, "--port", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, timeout_s, service)
    except (RuntimeError, TimeoutError) as error:
        stop(service)
        raise type(error)(f"{error}; see {log_path}") from None
    return service, url, time.perf_counter() - started
