"""The batch job end to end: real PostgreSQL, the contract API on loopback, a subprocess."""
from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from config.settings import PROJECT_ROOT
from graphcast_contract.cycles import target_init_time
from graphcast_contract.sources import InputSource
from modules.job import schedule
from modules.job.sites import load_sites
from tests.embedded_pg import embedded_server_url
from tests.modules.contract_api_server import ContractApi, persistence_value
from tests.modules.job_helpers import (
    ExampleFrames,
    JobRunner,
    ledger,
    load_frames,
    predictions,
    query,
)

SEED_CHECK = ("SELECT forecast_time, COUNT(*), AVG(value) FROM predictions"
              " GROUP BY forecast_time ORDER BY forecast_time;")
SITES = load_sites(PROJECT_ROOT / "config" / "sites.csv")
INIT = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)


def test_run_writes_80_rows_with_the_model_values(run_job: JobRunner, era5_db: str,
                                                 api: ContractApi,
                                                 example_frames: ExampleFrames) -> None:
    result = run_job("--init-time", "2022-01-01T06:00")
    assert result.returncode == 0, result.output
    rows = predictions(era5_db)
    assert len(rows) == 80
    t0_field = example_frames.frames[1][("2m_temperature", 0)]  # frame 1 = 06:00 = T0
    by_site = {s.name: s for s in SITES}
    for site, lead, variable, value, init_time, _ in rows:
        expected = persistence_value(t0_field, by_site[site].latitude,
                                     by_site[site].longitude, lead)
        assert variable == "2m_temperature" and init_time == INIT
        assert value == pytest.approx(expected, abs=1e-9)
    check = query(era5_db, SEED_CHECK)
    assert [(when, count) for when, count, _ in check] == [
        (INIT + timedelta(hours=h), 20) for h in (6, 12, 18, 24)]
    assert ledger(era5_db) == [(INIT, "succeeded", None, 0, 80, "GraphCast_test")]
    timings = query(era5_db, "SELECT prepare_s, infer_s, ingest_s, finished_at > started_at"
                             " FROM forecast_runs")[0]
    assert all(t is not None and t >= 0 for t in timings[:3]) and timings[3]
    summary = [line for line in result.output.splitlines() if " summary " in line]
    assert len(summary) == 1
    assert ("init_time=2022-01-01T06:00:00Z status=succeeded rows=80 clamped=0 prepare="
            in summary[0])
    assert summary[0] in result.log_file.read_text()
    assert api.calls.count(("POST", "/v1/forecast")) == 1


def run_at(run_job: JobRunner, now: datetime, *args: str,
           **env: str) -> subprocess.CompletedProcess[str]:
    """The job with `args` as if the clock said `now` (main's parameter)."""
    script = ("import sys; from datetime import datetime; import trigger_and_ingest_forecast"
              f" as job; sys.exit(job.main({list(args)!r},"
              f" now=datetime.fromisoformat({now.isoformat()!r})))")
    return subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT,
                          env={**run_job.env, **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("now", [datetime(2026, 3, 14, 5, 59, 59, tzinfo=timezone.utc),
                                 datetime(2026, 3, 14, 6, 0, tzinfo=timezone.utc)],
                         ids=["before-the-slot", "on-the-slot"])
def test_default_run_forecasts_the_j6_cycle(run_job: JobRunner, clean_db: str,
                                            example_frames: ExampleFrames,
                                            now: datetime) -> None:
    """`now` is injected (main's parameter), so a 6-hour boundary cannot move the target."""
    target = target_init_time(now, 6)
    assert target == datetime(2026, 3, 8, 0 if now.hour < 6 else 6, tzinfo=timezone.utc)
    load_frames(clean_db, example_frames, target - timedelta(hours=6), count=2)
    done = run_at(run_job, now)
    assert done.returncode == 0, done.stdout + done.stderr
    check = query(clean_db, SEED_CHECK)
    assert [(when, count) for when, count, _ in check] == [
        (target + timedelta(hours=h), 20) for h in (6, 12, 18, 24)]


def test_rerun_replaces_rows_without_duplicates(run_job: JobRunner, era5_db: str) -> None:
    assert run_job("--init-time", "2022-01-01T06:00").returncode == 0
    first = predictions(era5_db)
    result = run_job("--init-time", "2022-01-01T07:00+01:00")  # the same cycle
    assert result.returncode == 0, result.output
    second = predictions(era5_db)
    assert len(second) == 80
    assert [r[:5] for r in second] == [r[:5] for r in first]
    assert {r[5] for r in second} == {2}  # rows now belong to the second run
    assert [row[1] for row in ledger(era5_db)] == ["succeeded", "succeeded"]


def test_catch_up_runs_missed_cycles_oldest_first(run_job: JobRunner, era5_db: str) -> None:
    assert run_job("--init-time", "2022-01-01T12:00").returncode == 0
    result = run_job("--init-time", "2022-01-02T06:00", "--catch-up", "3")
    assert result.returncode == 0, result.output
    runs = [(when.hour, status) for when, status, *_ in ledger(era5_db)]
    # 12:00 already succeeded; 18:00 and 00:00 are caught up before the target 06:00.
    assert runs == [(12, "succeeded"), (18, "succeeded"), (0, "succeeded"), (6, "succeeded")]
    counts = query(era5_db, "SELECT init_time, count(*) FROM predictions GROUP BY init_time"
                            " ORDER BY init_time")
    assert [c for _, c in counts] == [80, 80, 80, 80]
    assert result.output.count(" summary ") == 3
    # Nothing left to catch up: only the target runs again.
    again = run_job("--init-time", "2022-01-02T06:00", "--catch-up", "3")
    assert again.returncode == 0 and again.output.count(" summary ") == 1


def test_the_scheduled_run_recovers_the_cycle_a_clock_change_skips(run_job: JobRunner,
                                                                   era5_db: str) -> None:
    """London at the autumn change: cron's local 00:00 (BST) is 23:00 UTC, its next local
    06:00 (GMT) 06:00 UTC, so no run targets the 00 UTC cycle; the installed entry's
    `--catch-up` runs it. (FORECAST_LAG_DAYS=0 keeps the targets in the example frames.)"""
    args = schedule.SCHEDULES[InputSource.ERA5].job_args
    for now in (datetime(2022, 1, 1, 23, tzinfo=timezone.utc), INIT.replace(day=2)):
        done = run_at(run_job, now, *args, FORECAST_LAG_DAYS="0")
        assert done.returncode == 0, done.stdout + done.stderr
    succeeded = {when for when, status, *_ in ledger(era5_db) if status == "succeeded"}
    assert {INIT.replace(hour=18), INIT.replace(day=2, hour=0), INIT.replace(day=2)} <= succeeded


def test_catch_up_counts_only_successes_of_this_model_and_source(
        run_job: JobRunner, era5_db: str) -> None:
    """A succeeded run of another model, or of this model from another source, does not
    make a cycle done."""
    for model, source in (("GraphCast_other", "era5"), ("GraphCast_test", "ifs-opendata")):
        query(era5_db, "INSERT INTO forecast_runs (init_time, model, source, status)"
                       " VALUES ('2022-01-02T00:00Z', %s, %s, 'succeeded') RETURNING run_id",
              (model, source))
    result = run_job("--init-time", "2022-01-02T06:00", "--catch-up", "1")
    assert result.returncode == 0, result.output
    runs = [(when.hour, model, status) for when, status, _, _, _, model in ledger(era5_db)]
    assert runs[2:] == [(0, "GraphCast_test", "succeeded"), (6, "GraphCast_test", "succeeded")]


def test_source_option_and_setting_tag_runs_and_rows(run_job: JobRunner, era5_db: str,
                                                     api: ContractApi) -> None:
    """`--source` overrides FORECAST_SOURCE; each source posts to its own API address; the
    rows of one cycle from two sources live side by side."""
    for table, columns in (("input_fields", "grid_id, valid_time, variable, level, data"),
                           ("input_static_fields", "grid_id, variable, data")):
        query(era5_db, f"INSERT INTO {table} (source, {columns}) SELECT 'ifs-opendata',"
                       f" {columns} FROM {table} RETURNING 1")  # the same analyses, re-tagged
    assert run_job("--init-time", "2022-01-01T06:00", FORECAST_SOURCE="ifs-opendata",
                   GRAPHCAST_API_URL_IFS_OPENDATA=api.url,
                   GRAPHCAST_API_URL="http://127.0.0.1:9").returncode == 0
    result = run_job("--init-time", "2022-01-01T06:00", "--source", "era5",
                     FORECAST_SOURCE="ifs-opendata")
    assert result.returncode == 0, result.output
    assert "source=era5" in result.output
    counts = query(era5_db, "SELECT r.source, p.source, count(*) FROM predictions p"
                            " JOIN forecast_runs r USING (run_id) GROUP BY 1, 2 ORDER BY 1")
    assert counts == [("era5", "era5", 80), ("ifs-opendata", "ifs-opendata", 80)]
    bad = run_job("--init-time", "2022-01-01T06:00", FORECAST_SOURCE="gfs")
    assert bad.returncode == 2 and "unknown source 'gfs'" in bad.output


def test_dry_run_validates_without_sending_or_writing(run_job: JobRunner, era5_db: str,
                                                      api: ContractApi) -> None:
    result = run_job("--init-time", "2022-01-01T06:00", "--dry-run")
    assert result.returncode == 0, result.output
    assert "dry run 2022-01-01T06:00:00Z: inputs valid" in result.output
    assert api.calls == [("GET", "/v1/model")]
    assert predictions(era5_db) == [] and ledger(era5_db) == []


def test_dry_run_reports_missing_data(run_job: JobRunner, era5_db: str) -> None:
    result = run_job("--init-time", "2023-06-01T00:00", "--dry-run")
    assert result.returncode == 3
    assert "no ERA5 snapshot at 2023-05-31T18:00:00Z" in result.output
    assert ledger(era5_db) == []


def test_help_lists_the_exit_codes(run_job: JobRunner) -> None:
    result = run_job("--help")
    assert result.returncode == 0
    for code in range(8):
        assert f"\n  {code}  " in result.output


def test_query_module_prints_the_seed_check(run_job: JobRunner, era5_db: str) -> None:
    assert run_job("--init-time", "2022-01-01T06:00").returncode == 0
    done = subprocess.run([sys.executable, "-m", "modules.query", SEED_CHECK], cwd=PROJECT_ROOT,
                          env=run_job.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "forecast_time | count | avg"
    assert [line.split(" | ")[1] for line in lines[1:]] == ["20"] * 4
    assert lines[1].startswith("2022-01-01 12:00:00+00:00 | 20 | ")


def test_without_database_url_the_embedded_server_is_used(run_job: JobRunner, api: ContractApi,
                                                          embedded_pg_dir: Path) -> None:
    env = {k: v for k, v in run_job.env.items() if k != "DATABASE_URL"}
    command = run_job.command("--init-time", "2022-01-01T06:00")
    for _ in range(2):  # the second start reuses the persisted data directory
        done = subprocess.run(command, cwd=PROJECT_ROOT, env={**env, "EMBEDDED_PG_DIR":
                              str(embedded_pg_dir)}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 3, done.stdout + done.stderr
        assert "no ERA5 snapshot at 2022-01-01T00:00:00Z" in done.stdout
    with embedded_server_url(embedded_pg_dir) as url:
        assert [(r[1], r[3]) for r in ledger(url)] == [("skipped", 3), ("skipped", 3)]


def test_a_failing_verification_is_a_warning(run_job: JobRunner, era5_db: str) -> None:
    """A truth field cut short made --verify's scoring raise a ValueError: exit 1 and a
    traceback after the forecasts were stored, where the README promises a warning."""
    query(era5_db, "UPDATE input_fields SET data = substring(data from 1 for 100)"
                   " WHERE valid_time = %s", (INIT + timedelta(hours=6),))
    result = run_job("--init-time", "2022-01-01T06:00", "--verify")
    assert result.returncode == 0, result.output
    assert "WARNING forecast_job: verification failed: ValueError: " in result.output
    assert "Traceback" not in result.output
    assert len(predictions(era5_db)) == 80


def test_verify_scores_the_stored_forecasts(run_job: JobRunner, era5_db: str) -> None:
    result = run_job("--init-time", "2022-01-01T06:00", "--verify")
    assert result.returncode == 0, result.output
    assert "verification: 80 new pairs verified" in result.output
    scores = query(era5_db, "SELECT lead_hours, n, bias - persistence_bias FROM forecast_scores"
                            " WHERE site IS NULL AND lead_hours IS NOT NULL ORDER BY lead_hours")
    # The test model is persistence plus 0.1 per 6 h of lead: that is its bias over persistence.
    assert [(lead, n) for lead, n, _ in scores] == [(6, 20), (12, 20), (18, 20), (24, 20)]
    for lead, _, extra_bias in scores:
        assert extra_bias == pytest.approx(0.1 * lead / 6, abs=1e-6)
