"""The live job: `--source ifs-opendata --fetch` fetches the newest published cycle from a
loopback open-data server, then forecasts it through the contract API on loopback."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from graphcast_contract.cycles import floor_to_cycle
from graphcast_contract.local_service import free_port
from graphcast_contract.model_spec import global_grid
from graphcast_contract.sources import InputSource
from modules.inputs import store
from modules.job.sites import load_sites
from modules.storage import db
from tests.modules.contract_api_server import GRID_10DEG, ContractApi, persistence_value
from tests.modules.ifs_opendata.opendata_server import OpenDataServer, runs_of_cycle
from tests.modules.job_helpers import JobRunner, query
from tests.paths import PROJECT_ROOT

SHAPE = (19, 36)  # 10 deg, as the contract API's grid
SITES = load_sites(PROJECT_ROOT / "config" / "sites.csv")


def _live_runner(database_url: str, api: ContractApi, server: OpenDataServer,
                 tmp_path: Path) -> JobRunner:
    """The job with the ERA5 service address unusable: only the live one may be called."""
    runner = JobRunner(database_url, "http://127.0.0.1:9", tmp_path / "logs")
    runner.env.update(GRAPHCAST_API_URL_IFS_OPENDATA=api.url, IFS_OPENDATA_URL=server.url,
                      IFS_OPENDATA_CACHE_DIR=str(tmp_path / "cache"))
    return runner


def test_fetch_then_forecast_the_latest_published_cycle(clean_db: str, api: ContractApi,
                                                        tmp_path: Path) -> None:
    api.surface_inputs = [n for n in api.surface_inputs if n != "total_precipitation_6hr"]
    latest = floor_to_cycle(datetime.now(timezone.utc)) - timedelta(hours=12)
    with OpenDataServer(runs_of_cycle(latest, SHAPE)) as server:
        job = _live_runner(clean_db, api, server, tmp_path)
        result = job("--source", "ifs-opendata", "--fetch")
        assert result.returncode == 0, result.output
        again = job("--source", "ifs-opendata")  # no fetch: the latest cycle in the store
        assert again.returncode == 0, again.output
    rows = query(clean_db, "SELECT p.source, r.source, p.init_time, p.site, p.lead_hours,"
                           " p.value FROM predictions p JOIN forecast_runs r USING (run_id)")
    assert len(rows) == 80
    assert {(p, r, init) for p, r, init, *_ in rows} == {("ifs-opendata", "ifs-opendata",
                                                          latest)}
    conn = db.connect(clean_db)
    with conn, conn.cursor() as cur:
        t0 = store.read_fields(cur, global_grid(10.0), latest, [("2m_temperature", 0)],
                               InputSource.IFS_OPENDATA)[("2m_temperature", 0)]
    conn.close()
    sites = {site.name: site for site in SITES}
    for _, _, _, name, lead, value in rows:
        site = sites[name]
        expected = persistence_value(t0, site.latitude, site.longitude, lead, GRID_10DEG)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
    statuses = query(clean_db, "SELECT status FROM forecast_runs ORDER BY run_id")
    assert statuses == [("succeeded",), ("succeeded",)]


def test_live_job_without_a_cycle_in_the_store_says_how_to_get_one(
        clean_db: str, api: ContractApi, tmp_path: Path) -> None:
    with OpenDataServer({}) as server:
        job = _live_runner(clean_db, api, server, tmp_path)
        empty = job("--source", "ifs-opendata")
        assert empty.returncode == 3, empty.output
        assert "no complete IFS open-data cycle in the store" in empty.output
        unpublished = job("--source", "ifs-opendata", "--fetch")
        assert unpublished.returncode == 10, unpublished.output
        assert "fetching the latest IFS open-data cycle failed" in unpublished.output
        era5 = job("--source", "era5", "--fetch")
        assert era5.returncode == 2 and "--fetch applies to --source ifs-opendata" in era5.output
    assert query(clean_db, "SELECT count(*) FROM predictions") == [(0,)]
    # the API had named its model: the attempts say which (the refused --fetch records none)
    assert query(clean_db, "SELECT status, exit_code, model FROM forecast_runs ORDER BY run_id"
                 ) == [("skipped", 3, "GraphCast_test"), ("skipped", 10, "GraphCast_test")]


def test_unreachable_open_data_fails_the_live_job_with_exit_10(
        clean_db: str, api: ContractApi, tmp_path: Path) -> None:
    """ECMWF unreachable (connection refused): exit 10, one error line, no traceback, and
    the attempt in the ledger."""
    job = JobRunner(clean_db, "http://127.0.0.1:9", tmp_path / "logs")
    job.env.update(GRAPHCAST_API_URL_IFS_OPENDATA=api.url,
                   IFS_OPENDATA_URL=f"http://127.0.0.1:{free_port()}",
                   IFS_OPENDATA_CACHE_DIR=str(tmp_path / "cache"))
    result = job("--source", "ifs-opendata", "--fetch")
    assert result.returncode == 10, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if " ERROR " in line]
    assert len(errors) == 2, result.output  # the fetch's reason, then the job's
    assert "unreachable" in errors[0]
    assert query(clean_db, "SELECT source, status, exit_code FROM forecast_runs") == [
        ("ifs-opendata", "skipped", 10)]


@pytest.mark.parametrize("problem, code", [("html index", 10), ("cache under a file", 11)])
def test_a_bad_index_or_cache_fails_the_live_job_with_its_code_and_a_ledger_row(
        clean_db: str, api: ContractApi, tmp_path: Path, problem: str, code: int) -> None:
    """An index answered with an HTML page, a cache folder that cannot be written: one
    error line from the fetch, no traceback, and the attempt in the ledger."""
    latest = floor_to_cycle(datetime.now(timezone.utc)) - timedelta(hours=12)
    runs = runs_of_cycle(latest, SHAPE)
    if problem == "html index":
        runs[latest - timedelta(hours=6)].index = "<html><body>maintenance</body></html>\n"
    with OpenDataServer(runs) as server:
        job = _live_runner(clean_db, api, server, tmp_path)
        if problem == "cache under a file":
            (tmp_path / "a-file").write_text("not a folder")
            job.env["IFS_OPENDATA_CACHE_DIR"] = str(tmp_path / "a-file" / "cache")
        result = job("--source", "ifs-opendata", "--fetch")
    assert result.returncode == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if " ERROR " in line]
    assert len(errors) == 2, result.output  # the fetch's reason, then the job's
    assert query(clean_db, "SELECT source, status, exit_code FROM forecast_runs") == [
        ("ifs-opendata", "skipped", code)]
