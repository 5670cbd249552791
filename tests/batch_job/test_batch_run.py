"""The batch job end to end: real PostgreSQL, the contract API on loopback, a subprocess."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from modules.data_preparator import target_init_time
from modules.sites import load_sites
from config.settings import PROJECT_ROOT

from .conftest import (EXAMPLE_START, ExampleFrames, JobRunner, ledger, load_frames,
                       predictions, query)
from .contract_api_server import ContractApi, persistence_value

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
    assert "init_time=2022-01-01T06:00:00Z status=succeeded rows=80 prepare=" in summary[0]
    assert summary[0] in result.log_file.read_text()
    assert api.calls.count(("POST", "/v1/forecast")) == 1
