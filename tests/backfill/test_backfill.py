"""`trigger_and_ingest_forecast.py --backfill` on a local Ray instance (2 workers x 1 thread)
with the reference checkpoint, against the example frames in a real PostgreSQL."""
from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import numpy as np
import pytest

from graphcast_contract.errors import ExitCode
from modules.storage import db
from tests.backfill.helpers import (
    FIRST_CYCLE,
    LAST_CYCLE,
    BackfillRunner,
    cycle_text,
    load_example,
    stopped_output,
)
from tests.graphcast_api.service.helpers import serve_command
from tests.modules.job_helpers import ExampleFrames, query

VALUES = ("SELECT init_time, site, variable, level, lead_hours, value FROM predictions"
          " ORDER BY init_time, site, variable, level, lead_hours")
CYCLES = 5


def runs(url: str) -> list[tuple]:
    return query(url, "SELECT init_time, status, attempt, worker, reason, prepare_s, infer_s,"
                      " ingest_s FROM forecast_runs ORDER BY init_time, run_id")


def rows_per_cycle(url: str) -> dict:
    return dict(query(url, "SELECT init_time, count(*) FROM predictions GROUP BY init_time"))


@pytest.mark.slow
def test_backfill_equals_a_sequential_run_and_a_rerun_adds_nothing(
    backfill: BackfillRunner, clean_db: str, example_frames: ExampleFrames, stats_dir
) -> None:
    load_example(clean_db, example_frames)
    with serve_command([*backfill.model, "--queue-wait-s", "120"]) as (url, _):
        sequential = backfill("--init-time", cycle_text(LAST_CYCLE), "--catch-up",
                              str(CYCLES - 1), GRAPHCAST_API_URL=url)
    assert sequential.returncode == 0, sequential.output
    expected = query(clean_db, VALUES)
    query(clean_db, "TRUNCATE predictions, forecast_runs CASCADE")

    done = backfill(*backfill.backfill_args(FIRST_CYCLE, LAST_CYCLE))
    assert done.returncode == 0, done.output
    assert "5 succeeded, 0 skipped, 0 failed, 0 not run" in done.output
    assert rows_per_cycle(clean_db) == {FIRST_CYCLE + timedelta(hours=6 * k): 80
                                        for k in range(CYCLES)}
    got = query(clean_db, VALUES)
    assert [row[:5] for row in got] == [row[:5] for row in expected]
    np.testing.assert_allclose([row[5] for row in got], [row[5] for row in expected],
                               rtol=1e-5, atol=1e-5)  # torch threads differ: 1 vs the service's
    ledger = runs(clean_db)
    assert [(row[1], row[2]) for row in ledger] == [("succeeded", 1)] * CYCLES
    assert all(row[3] and None not in row[5:] for row in ledger)  # worker and stage timings

    again = backfill(*backfill.backfill_args(FIRST_CYCLE, LAST_CYCLE))
    assert again.returncode == 0, again.output
    assert "5 already done" in again.output
    assert len(runs(clean_db)) == CYCLES and len(query(clean_db, VALUES)) == 80 * CYCLES


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_a_missing_input_cycle_skipped(
    backfill: BackfillRunner, clean_db: str, example_frames: ExampleFrames
) -> None:
    load_example(clean_db, example_frames, skip=(4,))  # day 2 00Z: two cycles lack an input
    process = backfill.start(*backfill.backfill_args(FIRST_CYCLE, LAST_CYCLE))
    killed = kill_a_worker_inside_a_cycle(clean_db, process)
    output, _ = process.communicate(timeout=400)
    assert process.returncode == ExitCode.NO_DATA, output  # the skipped cycles' code
    assert "3 succeeded, 2 skipped, 0 failed, 0 not run" in output
    assert set(rows_per_cycle(clean_db).values()) == {80} and len(rows_per_cycle(clean_db)) == 3
    duplicates = query(clean_db, "SELECT count(*) FROM (SELECT 1 FROM predictions GROUP BY"
                                 " init_time, site, variable, level, lead_hours"
                                 " HAVING count(*) > 1) d")
    assert duplicates == [(0,)]
    ledger = runs(clean_db)
    attempts = [row for row in ledger if row[0] == killed]
    assert [(row[1], row[2]) for row in attempts] == [("failed", 1), ("succeeded", 2)], ledger
    assert attempts[0][4].startswith("interrupted")
    skipped = [row for row in ledger if row[1] == "skipped"]
    assert len(skipped) == 2, ledger
    assert all(row[4].startswith("no ERA5 snapshot") for row in skipped), skipped


@pytest.mark.slow
def test_ctrl_c_stops_scheduling_keeps_no_partial_cycle_and_the_rerun_resumes(
    backfill: BackfillRunner, clean_db: str, example_frames: ExampleFrames
) -> None:
    """SIGINT to the job's whole process group (what Ctrl-C in a terminal sends), once a cycle
    is running: the summary is printed, the exit code is 16, every cycle holds 80 rows or none
    and no attempt is left running; the same command then does the rest."""
    load_example(clean_db, example_frames)
    process = backfill.start(*backfill.backfill_args(FIRST_CYCLE, LAST_CYCLE), own_group=True)
    deadline = time.monotonic() + 300
    while not query(clean_db, "SELECT 1 FROM forecast_runs WHERE status = 'running'"):
        assert time.monotonic() < deadline and process.poll() is None, stopped_output(process)
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == ExitCode.INTERRUPTED, output
    assert "backfill summary:" in output and "not run" in output
    assert set(rows_per_cycle(clean_db).values()) <= {80}
    assert query(clean_db, "SELECT count(*) FROM forecast_runs WHERE status = 'running'") \
        == [(0,)]
    done_before = len(rows_per_cycle(clean_db))
    assert done_before < CYCLES, output
    rerun = backfill(*backfill.backfill_args(FIRST_CYCLE, LAST_CYCLE))
    assert rerun.returncode == 0, rerun.output
    assert f"{done_before} already done" in rerun.output
    assert rows_per_cycle(clean_db) == {FIRST_CYCLE + timedelta(hours=6 * k): 80
                                        for k in range(CYCLES)}


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once(
    backfill: BackfillRunner, clean_db: str, example_frames: ExampleFrames
) -> None:
    """Ctrl-C twice while cycles run (held in their ingest by a lock on predictions): no
    waiting for them, the summary, exit 16; Ray's end takes the running cycles' sessions, so
    nothing of them is stored."""
    load_example(clean_db, example_frames)
    holder = db.connect(clean_db)
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
    try:
        process = backfill.start(*backfill.backfill_args(FIRST_CYCLE, LAST_CYCLE),
                                 own_group=True)
        deadline = time.monotonic() + 300
        while not query(clean_db, "SELECT 1 FROM forecast_runs WHERE status = 'running'"):
            assert time.monotonic() < deadline and process.poll() is None, stopped_output(process)
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        holder.close()
    assert process.returncode == ExitCode.INTERRUPTED, output
    assert "second Ctrl-C: stopping now" in output and "Traceback" not in output, output
    assert f"0 succeeded, 0 skipped, 0 failed, {CYCLES} not run" in output, output
    assert rows_per_cycle(clean_db) == {}


@pytest.mark.slow
@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN],
                         ids=["SIGINT default", "SIGINT ignored by the parent"])
def test_ctrl_c_while_the_workers_start_is_exit_16_without_a_traceback(
    backfill: BackfillRunner, clean_db: str, example_frames: ExampleFrames, inherited: int
) -> None:
    """SIGINT once Ray has made its session folder: during ray.init, the workers' start or
    their model load, before the first cycle is handed out; also in a job started with
    SIGINT ignored (by a non-interactive shell's `&`), where Python installs no handler."""
    load_example(clean_db, example_frames)
    process = backfill.start(*backfill.backfill_args(FIRST_CYCLE, LAST_CYCLE),
                             sigint=inherited)
    deadline = time.monotonic() + 120
    while not any(backfill.ray_dir.rglob("session_latest")):
        assert time.monotonic() < deadline and process.poll() is None, stopped_output(process)
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == ExitCode.INTERRUPTED, output
    assert "Ctrl-C: backfill stopped" in output and "Traceback" not in output, output
    assert "backfill summary" not in output, output  # stopped before the cycles' loop
    assert query(clean_db, "SELECT count(*) FROM forecast_runs") == [(0,)]


def kill_a_worker_inside_a_cycle(url: str, process) -> object:
    """SIGKILL the worker of the first attempt seen running; return its cycle."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        running = query(url, "SELECT init_time, worker FROM forecast_runs"
                             " WHERE status = 'running' ORDER BY run_id LIMIT 1")
        if running:
            init_time, worker = running[0]
            os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
            return init_time
        time.sleep(0.01)
    raise AssertionError(f"no cycle seen running: {stopped_output(process)}")


@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (("2022-01-01T12:00", "2022-01-01T06:00"), {}, ExitCode.USAGE, "is before START"),
    (("0001-01-01T00:00", "0001-01-01T06:00"), {}, ExitCode.USAGE,  # was an OverflowError
     "its T-6h input would lie before year 1"),
    (("2023-01-01T00:00", "2023-01-02T00:00"), {}, ExitCode.NO_DATA, "no ERA5 input in the store"),
    (("2022-01-01T06:00", "2022-01-01T12:00", "--cluster", "auto"), {"DATABASE_URL": ""},
     ExitCode.USAGE, "--cluster needs DATABASE_URL"),
    (("2022-01-01T06:00", "2022-01-01T12:00", "--catch-up", "2"), {}, ExitCode.USAGE,
     "--backfill excludes"),
    (("2022-01-01T06:00", "2022-01-01T12:00"), {"GRAPHCAST_CACHE_DIR": f"{__file__}/cache"},
     ExitCode.OUTPUT_FAILED, "cannot be created or written"),  # a folder under a plain file
])
def test_bad_input_is_one_line_and_writes_nothing(
    backfill: BackfillRunner, clean_db: str, example_frames: ExampleFrames, args: tuple,
    env: dict, code: ExitCode, message: str
) -> None:
    load_example(clean_db, example_frames)
    result = backfill("--backfill", *args, *backfill.model, **env)
    assert result.returncode == code, result.output
    errors = [line for line in result.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0], result.output
    assert query(clean_db, "SELECT count(*) FROM forecast_runs") == [(0,)]


def test_an_unreachable_cluster_is_one_line_and_writes_nothing(
    backfill: BackfillRunner, clean_db: str, example_frames: ExampleFrames
) -> None:
    load_example(clean_db, example_frames)
    result = backfill("--backfill", cycle_text(FIRST_CYCLE), cycle_text(LAST_CYCLE),
                      "--cluster", "ray://127.0.0.1:9", *backfill.model)
    assert result.returncode == ExitCode.CLUSTER_UNREACHABLE, result.output
    errors = [line for line in result.output.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "cannot join the Ray cluster" in errors[0], result.output
    assert query(clean_db, "SELECT count(*) FROM forecast_runs") == [(0,)]


