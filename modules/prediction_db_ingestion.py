"""Write a cycle's forecasts into `predictions` with an idempotent upsert.

The unique key (model, init_time, lead_hours, site, variable, level) makes a re-run replace
its cycle's values instead of duplicating them. The caller owns the transaction, so the rows
and the run's ledger row commit together: a run either wrote all its rows and says so, or
wrote nothing.
"""
from __future__ import annotations

from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from graphcast_contract.reply import CycleForecast

_UPSERT = (
    "INSERT INTO predictions (run_id, model, init_time, forecast_time, lead_hours, site,"
    " latitude, longitude, variable, level, value, unit) VALUES %s"
    " ON CONFLICT (source, model, init_time, lead_hours, site, variable, level) DO UPDATE SET"
    " run_id = EXCLUDED.run_id, forecast_time = EXCLUDED.forecast_time,"
    " latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude,"
    " value = EXCLUDED.value, unit = EXCLUDED.unit, created_at = now()"
)


def ingest(cur: Cursor, run_id: int, forecast: CycleForecast) -> int:
    """Upsert every value of `forecast`, tagged with the run that wrote it; return the count."""
    rows = [(run_id, forecast.model, forecast.init_time, f.forecast_time, f.lead_hours, f.site,
             f.latitude, f.longitude, f.variable, f.level, f.value, f.unit)
            for f in forecast.values]
    execute_values(cur, _UPSERT, rows, page_size=1000)
    return len(rows)
