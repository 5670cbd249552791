"""Write a run's forecasts into `predictions`: one transaction, idempotent upsert.

The unique key (model, init_time, lead_hours, site, variable, level) makes a re-run replace
its cycle's values instead of duplicating them; the run is marked succeeded in the same
transaction, so a run either wrote all its rows and says so, or wrote nothing.
"""
from __future__ import annotations

import time
from datetime import datetime

from psycopg2.extensions import connection as Connection
from psycopg2.extras import execute_values

from modules import run_ledger
from modules.model_api_client import Forecast
from modules.run_ledger import RunOutcome

_UPSERT = (
    "INSERT INTO predictions (run_id, model, init_time, forecast_time, lead_hours, site,"
    " latitude, longitude, variable, level, value, unit) VALUES %s"
    " ON CONFLICT (model, init_time, lead_hours, site, variable, level) DO UPDATE SET"
    " run_id = EXCLUDED.run_id, forecast_time = EXCLUDED.forecast_time,"
    " latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude,"
    " value = EXCLUDED.value, unit = EXCLUDED.unit, created_at = now()"
)


def ingest(conn: Connection, outcome: RunOutcome, model: str, init_time: datetime,
           forecasts: list[Forecast]) -> int:
    """Upsert `forecasts` and mark the run `outcome` succeeded, atomically.

    `outcome.rows_written` is set to the number of rows written; returns it too.
    The ingest time recorded excludes the final commit.
    """
    started = time.perf_counter()
    rows = [(outcome.run_id, model, init_time, f.forecast_time, f.lead_hours, f.site,
             f.latitude, f.longitude, f.variable, f.level, f.value, f.unit) for f in forecasts]
    with conn, conn.cursor() as cur:
        execute_values(cur, _UPSERT, rows, page_size=1000)
        outcome.rows_written = len(rows)
        outcome.status = "succeeded"
        outcome.timings.ingest_s = time.perf_counter() - started
        run_ledger.finish_run(cur, outcome)
    return len(rows)
