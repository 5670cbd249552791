"""The binary request body against the real service (`python -m graphcast_api serve`) serving
a random-weights checkpoint with GraphCast_operational's task (no precipitation input) on a
coarse 10-degree grid, written by the engine's `save_checkpoint`; the inputs come from a real
PostgreSQL store.

The same forecast sent as JSON and as the binary body gives identical rows; malformed binary
bodies get a 4xx naming the fault, which the job's client turns into exit code 4, and
nothing is written.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from graphcast_contract.errors import ApiError, ExitCode
from graphcast_contract.model_spec import ModelSpec
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.reply import parse_forecast_reply
from graphcast_contract.request import (
    ForecastContext,
    Snapshot,
    build_binary_body,
    build_payload,
)
from graphcast_contract.wire import BINARY_CONTENT_TYPE, MAGIC, PREFIX
from modules import data_preparator
from modules.job.sites import load_sites
from modules.model_api_client import ModelApiClient
from modules.storage import db
from tests.graphcast_api.service.helpers import operational_serve_args, serve_command
from tests.modules.job_helpers import (
    EXAMPLE_START,
    JobRunner,
    ledger,
    load_frames,
    predictions,
    read_example_frames,
)

INIT = EXAMPLE_START.replace(hour=6)
VARIABLES = (("2m_temperature", 0), ("temperature", 850))
LEADS = (6, 12)
JOB_ENV = {"FORECAST_VARIABLES": "2m_temperature,temperature@850",
           "FORECAST_LEAD_HOURS": ",".join(map(str, LEADS))}
@pytest.fixture
def store_db(clean_db: str) -> str:
    """The example frames (10 degrees) in the input store."""
    load_frames(clean_db, read_example_frames(), EXAMPLE_START)
    return clean_db


def client_for(url: str) -> ModelApiClient:
    return ModelApiClient(url, token=None, connect_timeout_s=5, read_timeout_s=120,
                          retries=0, backoff_s=0)


def prepared(url: str, database_url: str) -> tuple[ModelSpec, ForecastContext, Snapshot]:
    """What the job prepares for INIT: the model spec, the context and the snapshot."""
    spec = ModelSpec.from_reply(client_for(url).model_info())
    sites = load_sites(PROJECT_ROOT / "config" / "sites.csv")
    conn = db.connect(database_url)
    with conn, conn.cursor() as cur:
        snapshot = data_preparator.extract_snapshot(cur, spec, INIT)
    conn.close()
    return spec, ForecastContext(INIT, sites, VARIABLES, LEADS), snapshot


def test_the_model_card_is_operational_shaped(operational_server: str) -> None:
    card = requests.get(f"{operational_server}/v1/model", timeout=10).json()
    assert card["model"] == "GraphCast_operational"
    assert "total_precipitation_6hr" not in card["surface_inputs"]
    assert "total_precipitation_6hr" in [t["name"] for t in card["targets"]]
    assert (card["grid"]["n_lat"], card["grid"]["n_lon"]) == (19, 36)


def test_json_and_binary_bodies_give_identical_rows(operational_server: str, store_db: str,
                                                     tmp_path: Path) -> None:
    """The job posts the binary body and stores its rows; the same request posted as JSON
    gives the same values, to the last bit."""
    job = JobRunner(store_db, operational_server, tmp_path / "logs")
    result = job("--init-time", INIT.strftime("%Y-%m-%dT%H:%M"), **JOB_ENV)
    assert result.returncode == 0, result.output
    stored = {(site, lead, variable): value
              for site, lead, variable, value, *_ in predictions(store_db)}
    assert len(stored) == 20 * len(VARIABLES) * len(LEADS)
    spec, context, snapshot = prepared(operational_server, store_db)
    client = client_for(operational_server)
    body = json.dumps(build_payload(spec, context, snapshot)).encode()
    by_json = parse_forecast_reply(client.forecast(body), spec, context)
    by_binary = parse_forecast_reply(client.forecast(build_binary_body(spec, context, snapshot)),
                                     spec, context)
    assert by_json == by_binary
    assert {(v.site, v.lead_hours, v.variable): v.value for v in by_json.values} == stored


def refusal(url: str, data: bytes, content_type: str = BINARY_CONTENT_TYPE
            ) -> tuple[int, str]:
    response = requests.post(f"{url}/v1/forecast", data=data, timeout=60,
                             headers={"Content-Type": content_type})
    return response.status_code, response.json()["detail"]


def with_header(raw: bytes, change) -> bytes:
    """`raw` with its JSON header changed by `change(header)` (same length, space-padded)."""
    _, length = PREFIX.unpack_from(raw)
    header = json.loads(raw[PREFIX.size:PREFIX.size + length])
    change(header)
    text = json.dumps(header).encode()
    assert len(text) <= length
    return raw[:PREFIX.size] + text.ljust(length) + raw[PREFIX.size + length:]


def test_malformed_binary_bodies_get_a_4xx_naming_the_fault(operational_server: str,
                                                          store_db: str) -> None:
    spec, context, snapshot = prepared(operational_server, store_db)
    raw = b"".join(bytes(c) for c in build_binary_body(spec, context, snapshot))
    wrong_shape = with_header(raw, lambda h: h["static"]["land_sea_mask"].update(shape=[18, 36]))
    data_bytes = len(raw) - PREFIX.size - PREFIX.unpack_from(raw)[1]
    swapped = with_header(raw, lambda h: h["inputs"]["temperature"].update(offset=4))
    cases = {
        "short array": (raw[:-8], 400,
                        f"Content-Length {len(raw) - 8} differs from the {len(raw)} bytes"),
        "wrong magic": (b"GCFCBIN0" + raw[len(MAGIC):], 400, "not the magic"),
        "header not JSON": (raw[:PREFIX.size] + b"[" + raw[PREFIX.size + 1:], 400,
                            "binary header is not valid JSON"),
        "wrong shape": (wrong_shape, 422, "static.land_sea_mask.shape: expected [19, 36]"),
        "offsets overlap": (swapped, 400, "inputs.temperature.offset: 4 overlaps"),
        "trailing bytes": (raw + b"\0" * 16, 400, "differs from the"),
    }
    for case, (data, status, message) in cases.items():
        got_status, detail = refusal(operational_server, data)
        assert (got_status, message in detail) == (status, True), (case, detail)
    # Without a Content-Length (chunked), the data is checked against the header as it comes.
    short = f"ends after {data_bytes - 8} of the {data_bytes} data bytes"
    for chunks, message in (([raw[:-8]], short),
                            ([raw, b"\0" * 16], "16 bytes or more after the last array")):
        response = requests.post(f"{operational_server}/v1/forecast", timeout=60,
                                 data=iter(chunks), headers={"Content-Type": BINARY_CONTENT_TYPE})
        assert response.status_code == 400
        assert message in response.json()["detail"]
    with pytest.raises(ApiError) as error:  # the job's client: one line, exit code 4
        client_for(operational_server).forecast(raw[:-8])  # bytes are sent as JSON
    assert error.value.exit_code == ExitCode.API_FAILED
    assert "answered HTTP 400: body is not valid JSON" in str(error.value)
    assert "\n" not in str(error.value)
    good = client_for(operational_server).forecast(build_binary_body(spec, context, snapshot))
    assert len(good["forecasts"]) == 20 * len(VARIABLES) * len(LEADS)


def test_an_oversize_binary_body_fails_the_job_and_writes_nothing(
        operational_checkpoint: Path, stats_dir: Path, store_db: str, tmp_path: Path) -> None:
    """A body limit below the request (GRAPHCAST_API_MAX_BODY_MB): 413 by Content-Length
    before the body is read; the job exits 4 with the service's message, no rows."""
    args = operational_serve_args(operational_checkpoint, stats_dir)
    with serve_command(args, env={"GRAPHCAST_API_MAX_BODY_MB": "0.1"}) as (url, _):
        result = JobRunner(store_db, url, tmp_path / "logs")(
            "--init-time", INIT.strftime("%Y-%m-%dT%H:%M"), **JOB_ENV)
    assert result.returncode == ExitCode.API_FAILED, result.output
    assert "answered HTTP 413: request body larger than the limit of" in result.output
    assert predictions(store_db) == []
    assert [(r[1], r[3], r[4]) for r in ledger(store_db)] == [("failed", 4, 0)]
