"""Live forecasts end to end: ECMWF-layout open data on a loopback server -> `--fetch` into
the store -> the real service with a random-weights GraphCast_operational-task checkpoint on a
10-degree grid -> 80 rows tagged `ifs-opendata`, equal to running the engine directly on the
same inputs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from graphcast_api.engine.forecaster import Forecaster
from graphcast_api.service.request_parsing import decode_forecast_request
from graphcast_contract.cycles import floor_to_cycle
from graphcast_contract.interpolation import bilinear
from graphcast_contract.model_spec import ModelSpec
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.request import ForecastContext, build_payload
from graphcast_contract.sources import InputSource
from modules import data_preparator
from modules.job.sites import load_sites
from modules.model_api_client import ModelApiClient
from modules.storage import db
from tests.modules.ifs_opendata.opendata_server import OpenDataServer, runs_of_cycle
from tests.modules.job_helpers import JobRunner, query

SITES = load_sites(PROJECT_ROOT / "config" / "sites.csv")
VARIABLE = ("2m_temperature", 0)
LEADS = (6, 12, 18, 24)


@pytest.mark.slow  # about a minute: fetch, service start-up, 4 steps twice
def test_open_data_to_stored_forecasts_equal_to_the_engine(
        operational_server: str, operational_checkpoint: Path, stats_dir: Path,
        clean_db: str, tmp_path: Path) -> None:
    latest = floor_to_cycle(datetime.now(timezone.utc)) - timedelta(hours=12)
    job = JobRunner(clean_db, "http://127.0.0.1:9", tmp_path / "logs")
    job.env.update(GRAPHCAST_API_URL_IFS_OPENDATA=operational_server,
                   IFS_OPENDATA_CACHE_DIR=str(tmp_path / "cache"))
    with OpenDataServer(runs_of_cycle(latest, (19, 36))) as server:
        result = job("--source", "ifs-opendata", "--fetch", IFS_OPENDATA_URL=server.url)
    assert result.returncode == 0, result.output
    rows = query(clean_db, "SELECT site, lead_hours, value, source, model, init_time"
                           " FROM predictions ORDER BY site, lead_hours")
    assert len(rows) == 80
    assert {row[3:] for row in rows} == {("ifs-opendata", "GraphCast_operational", latest)}
    expected = _engine_site_values(operational_server, operational_checkpoint, stats_dir,
                                   clean_db, latest)
    for site, lead, value, *_ in rows:
        np.testing.assert_allclose(value, expected[site, lead], rtol=1e-5, atol=1e-4)


def _engine_site_values(url: str, checkpoint: Path, stats_dir: Path, database_url: str,
                        init_time: datetime) -> dict[tuple[str, int], float]:
    """The engine run in this process on the stored open-data inputs, read off at the sites
    by bilinear interpolation."""
    client = ModelApiClient(url, token=None, connect_timeout_s=5, read_timeout_s=60,
                            retries=0, backoff_s=0)
    spec = ModelSpec.from_reply(client.model_info())
    conn = db.connect(database_url)
    with conn, conn.cursor() as cur:
        snapshot = data_preparator.extract_snapshot(cur, spec, init_time,
                                                    InputSource.IFS_OPENDATA)
    conn.close()
    context = ForecastContext(init_time, tuple(SITES), (VARIABLE,), LEADS)
    model = Forecaster.from_files(checkpoint, stats_dir, precision="fp32", device="cpu")
    body = json.dumps(build_payload(spec, context, snapshot)).encode()
    inputs = decode_forecast_request(body, model).inputs
    field = model.forecast(inputs, max(LEADS) // 6)[VARIABLE[0]].isel(batch=0).values
    grid = spec.grid
    lats = np.array([site.latitude for site in SITES])
    lons = np.array([site.longitude for site in SITES])
    values = bilinear(field, lats, lons, lat_first=grid.lat_first, lat_step=grid.lat_step,
                      lon_first=grid.lon_first, lon_step=grid.lon_step)
    return {(site.name, lead): float(values[step, s]) for step, lead in enumerate(LEADS)
            for s, site in enumerate(SITES)}
