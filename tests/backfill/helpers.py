"""Helpers of the backfill tests: the job run as a subprocess with a private Ray folder
(whose processes are ended by id at teardown, should a run die without shutting Ray down),
and the store filled with chosen example frames."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from graphcast_contract.project import PROJECT_ROOT
from modules.inputs import store as era5_store
from modules.storage import db
from tests.modules.job_helpers import EXAMPLE_START, ExampleFrames, JobResult
from tests.paths import REFERENCE_DIR
from tests.subprocess_env import clean_environment

RUN_TIMEOUT_S = 400
# The example frames are 6 h apart from EXAMPLE_START: cycles 06Z day 1 .. 06Z day 2 have both
# of their inputs in the store.
FIRST_CYCLE = EXAMPLE_START + timedelta(hours=6)
LAST_CYCLE = EXAMPLE_START + timedelta(hours=30)


def load_example(url: str, example: ExampleFrames, skip: tuple[int, ...] = ()) -> None:
    """Store the example frames (all but the indices in `skip`) and the statics."""
    conn = db.connect(url)
    with conn, conn.cursor() as cur:
        for k, fields in enumerate(example.frames):
            if k not in skip:
                era5_store.write_fields(cur, example.grid, EXAMPLE_START + timedelta(hours=6 * k),
                                        fields)
        era5_store.write_static(cur, example.grid, example.static)
    conn.close()


def cycle_text(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M")


class BackfillRunner:
    """Runs trigger_and_ingest_forecast.py (2 workers x 1 thread, reference checkpoint)."""

    def __init__(self, database_url: str, stats_dir: Path, tmp_path: Path) -> None:
        self.ray_dir = Path(tempfile.mkdtemp(prefix="rb-"))  # short: Ray's socket paths
        self.env = {**clean_environment(), "DATABASE_URL": database_url,
                    "LOG_DIR": str(tmp_path / "logs"), "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_TMPDIR": str(self.ray_dir)}
        self.model = ["--checkpoint", str(REFERENCE_DIR / "params.npz"), "--stats-dir",
                      str(stats_dir), "--precision", "fp32", "--device", "cpu"]
        self.started: list[subprocess.Popen] = []  # stopped by stop_leftovers

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(PROJECT_ROOT / "trigger_and_ingest_forecast.py"), *args]

    def backfill_args(self, start: datetime, end: datetime, *extra: str) -> list[str]:
        return ["--backfill", cycle_text(start), cycle_text(end), "--workers", "2",
                *self.model, *extra]

    def start(self, *args: str, own_group: bool = False,
              sigint: int = signal.SIG_DFL) -> subprocess.Popen:
        """The job in the background; `own_group`: in a process group of its own, as a
        terminal's foreground job is (Ctrl-C signals the whole group); `sigint`: the SIGINT
        disposition it starts with (SIG_IGN: as a non-interactive shell's `&` starts it)."""
        process = subprocess.Popen(self.command(*args), cwd=PROJECT_ROOT, env=self.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=own_group,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
        self.started.append(process)
        return process

    def __call__(self, *args: str, **env: str) -> JobResult:
        done = subprocess.run(self.command(*args), cwd=PROJECT_ROOT, env={**self.env, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=RUN_TIMEOUT_S)
        return JobResult(done.returncode, done.stdout, Path(self.env["LOG_DIR"]))

    def stop_leftovers(self) -> None:
        """Kill the jobs `start` started that still run (a test failed before they ended),
        then the Ray processes."""
        for process in self.started:
            stopped_output(process)
        stop_ray_processes(self.ray_dir)


def stopped_output(process: subprocess.Popen) -> str:
    """The output of a job `BackfillRunner.start` started, killed first if it still runs:
    for a failure message, which must not wait for a job that may never end."""
    if process.poll() is None:
        process.kill()
    return process.communicate(timeout=60)[0]


def stop_ray_processes(ray_dir: Path) -> None:
    """End the Ray processes of `ray_dir`, if any, by their process id; remove the folder."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(ray_dir).encode() in command_line:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    shutil.rmtree(ray_dir, ignore_errors=True)
