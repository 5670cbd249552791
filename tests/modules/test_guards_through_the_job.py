"""The reply and /v1/model guards, clamping, provenance and failures in the middle of a run,
each through the real job (subprocess) against the stand-in API altering its replies."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from graphcast_contract.errors import ExitCode
from graphcast_contract.project import VERSION
from modules import forecast_job, prediction_db_ingestion
from tests.modules.contract_api_server import ContractApi
from tests.modules.job_helpers import FAST_API_ENV, JobRunner, ledger, predictions, query

INIT = "2022-01-01T06:00"
T0 = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)


def assert_refused(url: str, result, exit_code: int, message: str) -> None:
    """The run ended with `exit_code`, said why, recorded it and wrote nothing."""
    assert result.returncode == exit_code, result.output
    assert message in result.output
    assert predictions(url) == []
    runs = ledger(url)
    assert [(r[0], r[1], r[3], r[4]) for r in runs] == [(T0, "failed", exit_code, 0)]
    assert message in runs[0][2]


def _first(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def alter(reply: dict[str, Any]) -> None:
        reply["forecasts"][0][key] = value
    return alter


def _append_copy(change: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def alter(reply: dict[str, Any]) -> None:
        reply["forecasts"].append({**reply["forecasts"][0], **change})
    return alter


REPLY_GUARDS = {
    "wrong-model": (lambda r: r.update(model="GraphCast_other"),
                    "forecast reply is for 'GraphCast_other'"),
    "wrong-init-time": (lambda r: r.update(init_time="2022-01-01T00:00:00Z"),
                        "at '2022-01-01T00:00:00Z', not GraphCast_test at 2022-01-01T06:00:00Z"),
    "unexpected-entry": (_append_copy({"variable": "temperature", "level": 850}),
                         "unexpected or duplicate entry ('London', 'temperature', 850, 6)"),
    "duplicate-entry": (_append_copy({}),
                        "unexpected or duplicate entry ('London', '2m_temperature', 0, 6)"),
    "non-number": (_first("value", "281.5"), "is not a number: '281.5'"),
    "implausible": (_first("value", 10.0), "values 10..10 outside the plausible range 170..350"),
    "wrong-unit": (_first("unit", "degC"), "is 'degC', the model declares 'K'"),
    "wrong-valid-time": (_first("valid_time", "2022-01-01T06:00:00Z"),
                         "valid_time for London 2m_temperature +6 h is "
                         "'2022-01-01T06:00:00Z', expected 2022-01-01T12:00:00Z"),
    "malformed-entry": (lambda r: r["forecasts"][0].pop("lead_hours"),
                        "is malformed (KeyError: 'lead_hours')"),
    "huge-number": (_first("value", 10**400), "is malformed (OverflowError"),
}


@pytest.mark.parametrize("guard", REPLY_GUARDS)
def test_reply_guard_through_the_job(run_job: JobRunner, era5_db: str, api: ContractApi,
                                     guard: str) -> None:
    api.reply_hook, message = REPLY_GUARDS[guard]
    result = run_job("--init-time", INIT)
    assert_refused(era5_db, result, 5, message)


MODEL_GUARDS = {
    "missing-key": (lambda m: m.pop("targets"), 5, "(KeyError: 'targets')"),
    "wrong-type": (lambda m: m.update(pressure_levels="850"), 5,
                   "pressure_levels is str '850', expected list of int"),
    "input-times": (lambda m: m.update(input_times_hours=[-12, 0]), 5,
                    "input_times_hours is not [-6, 0]"),
    "not-a-target": (lambda m: m.update(targets=m["targets"][1:]), 2,
                     "variable '2m_temperature' is not a target of GraphCast_test"),
}


@pytest.mark.parametrize("guard", MODEL_GUARDS)
def test_model_guard_through_the_job(run_job: JobRunner, era5_db: str, api: ContractApi,
                                     guard: str) -> None:
    api.model_hook, exit_code, message = MODEL_GUARDS[guard]
    result = run_job("--init-time", INIT)
    assert result.returncode == exit_code, result.output
    assert message in result.output
    runs = ledger(era5_db)
    # a reply that is no model spec names no model; a spec that is one does
    model = "GraphCast_test" if exit_code == ExitCode.USAGE else "unknown"
    assert [(r[1], r[3], r[5]) for r in runs] == [("failed", exit_code, model)]
    assert message in runs[0][2] and predictions(era5_db) == []
    assert ("POST", "/v1/forecast") not in api.calls


def test_a_level_the_model_lacks_is_refused(run_job: JobRunner, era5_db: str,
                                            api: ContractApi) -> None:
    result = run_job("--init-time", INIT, FORECAST_VARIABLES="temperature@875")
    assert result.returncode == 2
    assert "variable 'temperature' needs a level among [50, 100" in result.output
    assert ("POST", "/v1/forecast") not in api.calls and predictions(era5_db) == []


def _precipitation(value: float) -> Callable[[dict[str, Any]], None]:
    """Set every total_precipitation_6hr value at +6 h to `value`."""
    def alter(reply: dict[str, Any]) -> None:
        for entry in reply["forecasts"]:
            if entry["variable"] == "total_precipitation_6hr" and entry["lead_hours"] == 6:
                entry["value"] = value
    return alter


def test_small_negative_precipitation_is_stored_as_zero_and_counted(
        run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    api.reply_hook = _precipitation(-4e-4)
    result = run_job("--init-time", INIT, FORECAST_VARIABLES="2m_temperature,"
                     "total_precipitation_6hr", FORECAST_LEAD_HOURS="6,12")
    assert result.returncode == 0, result.output
    assert "status=succeeded rows=80 clamped=20 " in result.output
    stored = query(era5_db, "SELECT lead_hours, MIN(value), MAX(value) FROM predictions"
                            " WHERE variable = 'total_precipitation_6hr' GROUP BY lead_hours"
                            " ORDER BY lead_hours")
    assert stored[0] == (6, 0.0, 0.0) and stored[1][1] >= 0
    assert query(era5_db, "SELECT clamped_values, rows_written FROM forecast_runs") == [(20, 80)]


def test_precipitation_below_the_bound_is_refused(run_job: JobRunner, era5_db: str,
                                                  api: ContractApi) -> None:
    api.reply_hook = _precipitation(-2e-3)
    result = run_job("--init-time", INIT, FORECAST_VARIABLES="total_precipitation_6hr")
    assert_refused(era5_db, result, 5, "outside the plausible range -0.001..0.5")


PROVENANCE_SQL = ("SELECT run_id, checkpoint_file, checkpoint_sha256, precision, device,"
                  " project_version FROM forecast_runs ORDER BY run_id")


def test_provenance_is_recorded_and_each_row_keeps_the_run_that_wrote_it(
        run_job: JobRunner, era5_db: str, api: ContractApi) -> None:
    assert run_job("--init-time", INIT).returncode == 0
    api.provenance.update(precision="bf16", checkpoint_sha256="1" * 64)
    assert run_job("--init-time", INIT).returncode == 0
    assert query(era5_db, PROVENANCE_SQL) == [
        (1, "GraphCast_test.npz", "0" * 64, "fp32", "cpu", VERSION),
        (2, "GraphCast_test.npz", "1" * 64, "bf16", "cpu", VERSION)]
    traced = query(era5_db, "SELECT r.precision, COUNT(*) FROM predictions p"
                            " JOIN forecast_runs r USING (run_id) GROUP BY r.precision")
    assert traced == [("bf16", 80)]


def test_failed_rerun_keeps_the_earlier_rows_and_ledger(run_job: JobRunner, era5_db: str,
                                                        api: ContractApi) -> None:
    assert run_job("--init-time", INIT).returncode == 0
    before = predictions(era5_db)
    first_run = ledger(era5_db)[0]
    api.reply_hook = _first("unit", "degC")
    result = run_job("--init-time", INIT)
    assert result.returncode == 5
    assert predictions(era5_db) == before and {r[5] for r in before} == {1}
    runs = ledger(era5_db)
    assert runs[0] == first_run and [(r[1], r[3]) for r in runs] == [("succeeded", 0),
                                                                     ("failed", 5)]


def _terminate_other_backends(url: str) -> Callable[[dict[str, Any]], None]:
    """A reply hook that, once the forecast is ready, ends every other connection to the
    database from the server side (the job's included), as a restart or failover would."""
    def alter(_: dict[str, Any]) -> None:
        query(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                   " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    return alter


def test_database_gone_after_the_forecast_came_back(run_job: JobRunner, era5_db: str,
                                                    api: ContractApi) -> None:
    api.reply_hook = _terminate_other_backends(era5_db)
    result = run_job("--init-time", INIT)
    assert result.returncode == 6, result.output
    assert "database error:" in result.output
    assert "could not record the failure of run 1" in result.output
    assert predictions(era5_db) == []
    assert [r[1] for r in ledger(era5_db)] == ["running"]  # nobody could close it
    api.reply_hook = None
    again = run_job("--init-time", INIT)
    assert again.returncode == 0, again.output
    assert "marked 1 interrupted run(s) as failed" in again.output
    assert [r[1] for r in ledger(era5_db)] == ["failed", "succeeded"]
    assert len(predictions(era5_db)) == 80


def test_a_failing_cycle_inside_catch_up(run_job: JobRunner, era5_db: str,
                                         api: ContractApi) -> None:
    """06:00 lacks data (3), 12:00 gets a bad reply (5), 18:00 succeeds: every cycle ran,
    the first failure's code wins."""
    query(era5_db, "DELETE FROM input_fields WHERE variable = 'temperature' AND level = 850"
                   " AND valid_time = %s", (T0 - timedelta(hours=6),))  # 06:00's T-6h

    def bad_noon(reply: dict[str, Any]) -> None:
        if reply["init_time"] == "2022-01-01T12:00:00Z":
            reply["forecasts"][0]["unit"] = "degC"
    api.reply_hook = bad_noon
    result = run_job("--init-time", "2022-01-01T18:00", "--catch-up", "2")
    assert result.returncode == 3, result.output
    runs = [(r[0].hour, r[1], r[3], r[4]) for r in ledger(era5_db)]
    assert runs == [(6, "skipped", 3, 0), (12, "failed", 5, 0), (18, "succeeded", 0, 80)]
    assert {r[4] for r in predictions(era5_db)} == {T0 + timedelta(hours=12)}


def test_unexpected_exception_exits_1_and_closes_the_run(
        era5_db: str, api: ContractApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A bug in a stage (here: ingest raising) is exit 1 with its traceback logged, and the
    run's ledger row is closed as failed with nothing written."""
    def broken_ingest(*_: Any) -> int:
        raise RuntimeError("boom")
    monkeypatch.setattr(prediction_db_ingestion, "ingest", broken_ingest)
    settings = Settings(database_url=era5_db, embedded_pg_dir=tmp_path / "pg", api_url=api.url,
                        log_dir=tmp_path, api_retries=int(FAST_API_ENV["GRAPHCAST_API_RETRIES"]),
                        api_backoff_s=0.05)
    with caplog.at_level(logging.ERROR, logger="forecast_job"):
        code = forecast_job.run(settings, forecast_job.JobOptions(init_time=T0))
    assert code == 1
    assert "Traceback" in caplog.text and "RuntimeError: boom" in caplog.text
    assert predictions(era5_db) == []
    assert [(r[1], r[2], r[3]) for r in ledger(era5_db)] == [
        ("failed", "unexpected error: RuntimeError: boom", 1)]
