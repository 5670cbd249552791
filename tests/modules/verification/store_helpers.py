"""Helpers for verification tests: store analysis fields and predictions directly, on a
10-degree grid by default."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
from psycopg2.extensions import connection as Connection

from graphcast_contract.model_spec import Grid
from graphcast_contract.sources import InputSource
from modules.inputs.store import write_fields

GRID_10 = Grid(n_lat=19, n_lon=36, lat_first=-90.0, lat_step=10.0, lon_first=0.0,
               lon_step=10.0)
T2M = ("2m_temperature", 0)
T0 = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)
MODEL = "GraphCast_small"


def store_field(conn: Connection, valid_time: datetime, field: np.ndarray,
                grid: Grid = GRID_10, key: tuple[str, int] = T2M,
                source: str = InputSource.ERA5) -> None:
    """Store one analysis field (lat, lon) of `source` at `valid_time`."""
    with conn, conn.cursor() as cur:
        write_fields(cur, grid, valid_time, {key: field}, source)


def store_forecast(conn: Connection, init_time: datetime, sites: Sequence[tuple[str, float, float]],
                   values: dict[int, Sequence[float]], model: str = MODEL,
                   key: tuple[str, int] = T2M, source: str = InputSource.ERA5) -> None:
    """Store one succeeded run: `values[lead_hours][i]` is the forecast at `sites[i]`
    (name, latitude, longitude)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO forecast_runs (init_time, model, status, rows_written, source)"
            " VALUES (%s, %s, 'succeeded', %s, %s) RETURNING run_id",
            (init_time, model, len(sites) * len(values), source),
        )
        run_id = cur.fetchone()[0]
        for lead, lead_values in values.items():
            for (name, lat, lon), value in zip(sites, lead_values, strict=True):
                cur.execute(
                    "INSERT INTO predictions (run_id, model, init_time, forecast_time,"
                    " lead_hours, site, latitude, longitude, variable, level, value, unit,"
                    " source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'K', %s)",
                    (run_id, model, init_time, init_time + timedelta(hours=lead), lead,
                     name, lat, lon, key[0], key[1], float(value), source),
                )
