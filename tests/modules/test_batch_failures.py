"""Every way a run can fail: exit code, message, ledger, and no partial or duplicate rows."""
from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from graphcast_contract.errors import ExitCode
from graphcast_contract.sources import InputSource
from modules.job import ledger as run_ledger
from modules.storage import db
from tests.modules.contract_api_server import FAILURE_REQUEST_ID, ContractApi
from tests.modules.job_helpers import JobRunner, ledger, predictions, query

INIT = "2022-01-01T06:00"
T0 = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)


def assert_nothing_written(url: str, status: str, exit_code: int, reason_part: str) -> None:
    assert predictions(url) == []
    runs = ledger(url)
    assert len(runs) == 1
    init_time, got_status, reason, got_code, rows, _ = runs[0]
    assert (init_time, got_status, got_code, rows) == (T0, status, exit_code, 0)
    assert reason_part in reason


def test_no_snapshot_is_skipped(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    result = run_job("--init-time", "2021-01-01T06:00")
    assert result.returncode == 3
    assert "no ERA5 snapshot at 2021-01-01T00:00:00Z on the model grid 19x36" in result.output
    runs = ledger(era5_db)
    assert [(r[1], r[3]) for r in runs] == [("skipped", 3)] and predictions(era5_db) == []
    assert ("POST", "/v1/forecast") not in api.calls


def test_one_missing_variable_is_named(run_job: JobRunner, era5_db: str,
                                       api: ContractApi) -> None:
    query(era5_db, "DELETE FROM input_fields WHERE variable = 'temperature' AND level = 850"
                   " AND valid_time = %s", (T0,))
    result = run_job("--init-time", INIT)
    assert result.returncode == 3
    assert "ERA5 field temperature at 850 hPa missing at 2022-01-01T06:00:00Z" in result.output
    assert_nothing_written(era5_db, "skipped", 3, "temperature at 850 hPa missing")
    assert ("POST", "/v1/forecast") not in api.calls


def test_missing_static_field_is_named(run_job: JobRunner, era5_db: str) -> None:
    query(era5_db, "DELETE FROM input_static_fields WHERE variable = 'land_sea_mask'")
    result = run_job("--init-time", INIT)
    assert result.returncode == 3
    assert_nothing_written(era5_db, "skipped", 3, "static ERA5 field land_sea_mask missing")


def _overwrite(url: str, variable: str, level: int, field: np.ndarray) -> None:
    query(url, "UPDATE input_fields SET data = %s WHERE variable = %s AND level = %s"
               " AND valid_time = %s", (field.astype("<f4").tobytes(), variable, level, T0))


@pytest.mark.parametrize("bad, message", [
    (lambda f: np.where(np.arange(f.size).reshape(f.shape) == 7, np.nan, f),
     "ERA5 field specific_humidity at 700 hPa at 2022-01-01T06:00:00Z: 1 NaN or infinite"),
    (lambda f: f * 1000, "specific_humidity at 700 hPa at 2022-01-01T06:00:00Z: values"),
    (lambda f: f[:-1], "specific_humidity at 700 hPa at 2022-01-01T06:00:00Z holds 2592 bytes"),
], ids=["nan", "implausible", "wrong-shape"])
def test_bad_field_fails_naming_it(run_job: JobRunner, era5_db: str, api: ContractApi,
                                   example_frames, bad, message) -> None:
    field = example_frames.frames[1][("specific_humidity", 700)]
    _overwrite(era5_db, "specific_humidity", 700, bad(field))
    result = run_job("--init-time", INIT)
    assert result.returncode == 3, result.output
    assert message in result.output
    assert_nothing_written(era5_db, "failed", 3, "specific_humidity at 700 hPa")
    assert ("POST", "/v1/forecast") not in api.calls


def test_api_down(run_job: JobRunner, era5_db: str) -> None:
    started = time.monotonic()
    result = run_job("--init-time", INIT, GRAPHCAST_API_URL="http://127.0.0.1:9",
                     GRAPHCAST_API_BACKOFF_S="0.4")
    assert time.monotonic() - started >= 1.2  # refused, never sent: retried (0.4 + 0.8 s)
    assert result.returncode == 4
    assert "GraphCast API at http://127.0.0.1:9 unreachable" in result.output
    runs = ledger(era5_db)
    assert [(r[1], r[3], r[5]) for r in runs] == [("failed", 4, "unknown")]
    assert predictions(era5_db) == []


def test_a_variable_the_model_lacks_is_recorded_under_the_model(run_job: JobRunner,
                                                                 era5_db: str,
                                                                 api: ContractApi) -> None:
    """Once the API has named its model, an attempt that ends early says which (it said
    'unknown', as an attempt that never reached the API does: test_api_down)."""
    result = run_job("--init-time", INIT, FORECAST_VARIABLES="not_a_target")
    assert result.returncode == ExitCode.USAGE, result.output
    assert "variable 'not_a_target' is not a target of GraphCast_test" in result.output
    assert [(r[1], r[3], r[5]) for r in ledger(era5_db)] == [("failed", 2, "GraphCast_test")]
    assert predictions(era5_db) == [] and ("POST", "/v1/forecast") not in api.calls


def test_api_timeout(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.delay_s = 1.5
    result = run_job("--init-time", INIT, GRAPHCAST_API_TIMEOUT_S="0.5",
                     GRAPHCAST_API_RETRIES="1")
    assert result.returncode == 4
    assert "POST /v1/forecast timed out after 0.5 s" in result.output
    # the service may still be computing it: a retry would queue a duplicate forecast
    assert api.calls.count(("POST", "/v1/forecast")) == 1
    assert_nothing_written(era5_db, "failed", 4, "timed out")


@pytest.mark.parametrize("status", [502, 503, 504])
def test_api_busy_then_success_is_retried(run_job: JobRunner, era5_db: str,
                                          api: ContractApi, status: int) -> None:
    api.failures_before_success, api.failure_status = 2, status
    result = run_job("--init-time", INIT)
    assert result.returncode == 0, result.output
    assert api.calls.count(("POST", "/v1/forecast")) == 3
    assert len(predictions(era5_db)) == 80
    assert [r[1] for r in ledger(era5_db)] == ["succeeded"]


def test_retry_after_is_honoured(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.failures_before_success, api.failure_status, api.retry_after = 1, 503, "2"
    started = time.monotonic()
    result = run_job("--init-time", INIT)
    assert result.returncode == 0, result.output
    assert time.monotonic() - started >= 2.0  # not the 0.05 s backoff
    assert api.calls.count(("POST", "/v1/forecast")) == 2


def test_retry_after_beyond_the_timeout_is_not_waited_for(run_job: JobRunner, era5_db: str,
                                                          api: ContractApi) -> None:
    api.failures_before_success, api.failure_status, api.retry_after = 100, 503, "3600"
    started = time.monotonic()
    result = run_job("--init-time", INIT, GRAPHCAST_API_TIMEOUT_S="5")
    assert time.monotonic() - started < 30  # capped at 60 s, and 60 s > the 5 s budget
    assert result.returncode == 4
    assert api.calls.count(("POST", "/v1/forecast")) == 1
    assert_nothing_written(era5_db, "failed", 4, "HTTP 503")


def test_api_500_is_not_retried(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.failures_before_success = 100
    result = run_job("--init-time", INIT)
    assert result.returncode == 4
    assert "POST /v1/forecast answered HTTP 500: injected failure" in result.output
    assert api.calls.count(("POST", "/v1/forecast")) == 1  # a 500 may have done the work
    # the service's request id, to find the failure in its log
    assert f"(request id {FAILURE_REQUEST_ID})" in result.output
    assert_nothing_written(era5_db, "failed", 4, f"HTTP 500: injected failure (request id "
                                                 f"{FAILURE_REQUEST_ID})")


def test_api_busy_every_time_fails(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.failures_before_success, api.failure_status = 100, 503
    result = run_job("--init-time", INIT)
    assert result.returncode == 4
    assert "POST /v1/forecast answered HTTP 503: injected failure" in result.output
    assert api.calls.count(("POST", "/v1/forecast")) == 3  # GRAPHCAST_API_RETRIES=2
    assert_nothing_written(era5_db, "failed", 4, "HTTP 503")


def test_api_malformed_json(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.reply_mode = "malformed"
    result = run_job("--init-time", INIT)
    assert result.returncode == 5
    assert "POST /v1/forecast reply is not valid JSON" in result.output
    assert_nothing_written(era5_db, "failed", 5, "not valid JSON")


def test_api_nan_value(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.reply_mode = "nan"
    result = run_job("--init-time", INIT)
    assert result.returncode == 5
    assert "forecast value for" in result.output and "is not finite: nan" in result.output
    assert_nothing_written(era5_db, "failed", 5, "not finite")


def test_api_incomplete_reply(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.reply_mode = "missing_entry"
    result = run_job("--init-time", INIT)
    assert result.returncode == 5
    assert "forecast reply lacks 1 of 80 values" in result.output
    assert_nothing_written(era5_db, "failed", 5, "lacks 1 of 80")


def test_api_token(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.token = "s3cret-token"
    refused = run_job("--init-time", INIT)
    assert refused.returncode == 4
    assert ("GET /v1/model refused authentication (HTTP 401: missing or wrong bearer token);"
            " check GRAPHCAST_API_TOKEN") in refused.output
    accepted = run_job("--init-time", INIT, GRAPHCAST_API_TOKEN="s3cret-token")
    assert accepted.returncode == 0, accepted.output
    assert "s3cret-token" not in accepted.output + refused.output
    assert len(predictions(era5_db)) == 80


def test_database_unreachable(run_job: JobRunner, api: ContractApi, tmp_path) -> None:
    """The job stops before asking the API anything and does not fall back to the embedded
    server (whose directory would appear); the password is never printed."""
    url = "postgresql://dev_user:hunter2@127.0.0.1:9/trading_data"
    embedded = tmp_path / "pgdata"
    result = run_job("--init-time", INIT, DATABASE_URL=url, EMBEDDED_PG_DIR=str(embedded))
    assert result.returncode == 6
    assert "database unreachable or failing" in result.output
    assert "status=failed rows=0 clamped=0" in result.output
    assert "hunter2" not in result.output + result.log_file.read_text()
    assert api.calls == [] and not embedded.exists()


def test_bad_configuration(run_job: JobRunner, era5_db: str) -> None:
    result = run_job("--init-time", INIT, FORECAST_LEAD_HOURS="6,x")
    assert result.returncode == 2
    assert "FORECAST_LEAD_HOURS='6,x'" in result.output
    result = run_job("--init-time", "2022-01-01T05:00")
    assert result.returncode == 2 and "not on a 6-hourly slot" in result.output
    result = run_job("--init-time", INIT, FORECAST_LEAD_HOURS="6,9")
    assert result.returncode == 2 and "lead time 9 h is not a multiple of 6 h" in result.output
    assert predictions(era5_db) == []


def _wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_killed_mid_ingest_leaves_nothing_partial(run_job: JobRunner, era5_db: str,
                                                  api: ContractApi) -> None:
    api.gate = threading.Event()  # hold the forecast while we lock the run's ledger row
    job = run_job.start("--init-time", INIT)
    _wait_for(lambda: ("POST", "/v1/forecast") in api.calls)
    blocker = db.connect(era5_db)
    with blocker.cursor() as cur:
        # NO KEY UPDATE lets the job insert its 80 rows (their foreign key only needs KEY
        # SHARE) and blocks it when it marks its run succeeded: kill it there.
        cur.execute("SELECT 1 FROM forecast_runs WHERE status = 'running' FOR NO KEY UPDATE")
        api.gate.set()
        _wait_for(lambda: query(
            era5_db, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                     " AND query LIKE 'UPDATE forecast_runs%%'"))
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=20)
    blocker.rollback()
    blocker.close()
    assert job.returncode == -signal.SIGKILL
    assert predictions(era5_db) == []
    assert [r[1] for r in ledger(era5_db)] == ["running"]
    result = run_job("--init-time", INIT)
    assert result.returncode == 0, result.output
    assert "marked 1 interrupted run(s) as failed" in result.output
    assert [(r[1], r[4]) for r in ledger(era5_db)] == [("failed", 0), ("succeeded", 80)]
    assert len(predictions(era5_db)) == 80


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopped_while_the_api_computes(run_job: JobRunner, era5_db: str, api: ContractApi,
                                        stop: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM: systemctl stop, kill) while the forecast is being computed: the
    attempt is recorded as failed, nothing is written, the cycle's summary is logged and the
    job exits 16. It printed a traceback and left its attempt 'running'."""
    api.gate = threading.Event()  # hold the forecast until the job has been stopped
    job = run_job.start("--init-time", INIT)
    try:
        assert api.held.wait(60), "the forecast never reached the API"
        job.send_signal(stop)
        output, _ = job.communicate(timeout=60)
    finally:
        api.gate.set()
        if job.poll() is None:
            job.kill()
    assert job.returncode == ExitCode.INTERRUPTED, output
    assert "Traceback" not in output
    summaries = [line for line in output.splitlines() if " summary " in line]
    assert len(summaries) == 1, output
    assert "status=failed rows=0" in summaries[0] and " exit=16 " in summaries[0]
    assert_nothing_written(era5_db, "failed", ExitCode.INTERRUPTED,
                           f"interrupted by the user ({stop.name})")


def test_two_concurrent_runs(run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.gate = threading.Event()  # the first run waits for its forecast, holding the lock
    first = run_job.start("--init-time", INIT)
    _wait_for(lambda: ("POST", "/v1/forecast") in api.calls)
    second = run_job("--init-time", INIT)
    api.gate.set()
    assert second.returncode == 7
    assert "is being run by another process" in second.output
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 0, output
    assert [(r[1], r[3]) for r in ledger(era5_db)] == [("succeeded", 0), ("skipped", 7)]
    assert len(predictions(era5_db)) == 80


def test_a_run_ended_by_another_process_meanwhile_commits_no_rows(
        run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    """Its ledger row says failed (another process took it for dead): its rows were
    committed beside that row, and a catch-up would forecast the cycle again."""
    api.gate = threading.Event()  # the run waits for its forecast
    job = run_job.start("--init-time", INIT)
    _wait_for(lambda: ("POST", "/v1/forecast") in api.calls)
    query(era5_db, "UPDATE forecast_runs SET status = 'failed' WHERE status = 'running'")
    api.gate.set()
    output, _ = job.communicate(timeout=60)
    assert job.returncode == ExitCode.DATABASE, output
    assert "was ended by another process before its rows were committed" in output
    assert predictions(era5_db) == []
    assert [r[1] for r in ledger(era5_db)] == ["failed"]


def test_locks_are_per_cycle_and_live_runs_are_not_marked_interrupted(
        run_job: JobRunner, era5_db: str) -> None:
    """Another session holds cycle INIT and has a 'running' attempt of it: a run of another
    cycle goes ahead and leaves that attempt alone; a run of INIT is skipped; once the session
    is gone, its attempt is marked interrupted and INIT runs."""
    init = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)
    other = db.connect(era5_db)
    with run_ledger.cycle_lock(other, InputSource.ERA5, init) as acquired:
        assert acquired
        run_ledger.start_run(other, init, InputSource.ERA5, "GraphCast_test")
        later = run_job("--init-time", "2022-01-01T12:00")
        assert later.returncode == 0, later.output
        assert "interrupted" not in later.output
        same = run_job("--init-time", INIT)
        assert same.returncode == 7, same.output
        assert [r[1] for r in ledger(era5_db)] == ["running", "succeeded", "skipped"]
        other.close()  # the session ends: its locks go with it
    result = run_job("--init-time", INIT)
    assert result.returncode == 0, result.output
    assert "marked 1 interrupted run(s) as failed" in result.output
    assert [r[1] for r in ledger(era5_db)] == ["failed", "succeeded", "skipped", "succeeded"]
    assert len(predictions(era5_db)) == 160
