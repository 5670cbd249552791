"""Forecast verification: stored predictions against the ERA5 truth in the store.

For every prediction whose valid time and initial time both have the ERA5 field in the
store, the truth at the site is the bilinear interpolation of that field (the same function
the API uses for its site values), and the persistence forecast is the same at the initial
time. These pairs go to `verification_pairs` once; `forecast_scores` is then recomputed from
all pairs: bias, MAE, RMSE of forecast - truth and of persistence - truth, and skill =
1 - RMSE / RMSE_persistence, per model x variable x level x lead time x site.
The command line is `modules.verification.cli`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from psycopg2.extras import execute_values

from graphcast_contract.interpolation import bilinear
from graphcast_contract.model_spec import Grid
from modules.inputs.store import read_fields

log = logging.getLogger(__name__)

_VERIFY_LOCK_KEY = 7_253_030  # advisory lock: one verification at a time

# Predictions not yet paired whose field exists at both the valid and the initial time, each
# on the finest grid holding both; times as epoch seconds.
_READY_SQL = """
SELECT p.prediction_id, g.grid_id, p.variable, p.level,
       extract(epoch FROM p.init_time)::bigint, extract(epoch FROM p.forecast_time)::bigint,
       p.latitude, p.longitude
FROM predictions p
CROSS JOIN LATERAL (
    SELECT g.grid_id FROM input_grids g
    WHERE EXISTS (SELECT 1 FROM input_fields f WHERE f.grid_id = g.grid_id
                  AND f.valid_time = p.forecast_time AND f.variable = p.variable
                  AND f.level = p.level)
      AND EXISTS (SELECT 1 FROM input_fields f WHERE f.grid_id = g.grid_id
                  AND f.valid_time = p.init_time AND f.variable = p.variable
                  AND f.level = p.level)
    ORDER BY g.lat_step, g.lon_step, g.grid_id
    LIMIT 1
) g
WHERE NOT EXISTS (SELECT 1 FROM verification_pairs v WHERE v.prediction_id = p.prediction_id)
  AND (%(since)s::timestamptz IS NULL OR p.init_time >= %(since)s)
  AND (%(model)s::text IS NULL OR p.model = %(model)s)
"""

_AWAITING_SQL = """
SELECT count(*) FROM predictions p
WHERE NOT EXISTS (SELECT 1 FROM verification_pairs v WHERE v.prediction_id = p.prediction_id)
  AND (%(since)s::timestamptz IS NULL OR p.init_time >= %(since)s)
  AND (%(model)s::text IS NULL OR p.model = %(model)s)
"""

_SCORE_COLUMNS = (
    "model, variable, level, lead_hours, site, unit, n, bias, mae, rmse, persistence_bias,"
    " persistence_mae, persistence_rmse, skill, first_valid_time, last_valid_time"
)

# Aggregates per lead time (all sites), per lead time and site, and per site (all leads).
_SCORES_SQL = f"""
INSERT INTO forecast_scores ({_SCORE_COLUMNS})
SELECT model, variable, level, lead_hours, site, min(unit), count(*),
       avg(error), avg(abs(error)), sqrt(avg(error * error)),
       avg(persistence_error), avg(abs(persistence_error)),
       sqrt(avg(persistence_error * persistence_error)),
       1 - sqrt(avg(error * error))
           / NULLIF(sqrt(avg(persistence_error * persistence_error)), 0),
       min(forecast_time), max(forecast_time)
FROM forecast_errors
WHERE %(model)s::text IS NULL OR model = %(model)s
GROUP BY GROUPING SETS ((model, variable, level, lead_hours),
                        (model, variable, level, lead_hours, site),
                        (model, variable, level, site))
"""


@dataclass(frozen=True)
class Score:
    """One row of `forecast_scores`; `lead_hours`/`site` None means pooled over all."""

    model: str
    variable: str
    level: int
    lead_hours: int | None
    site: str | None
    unit: str
    n: int
    bias: float
    mae: float
    rmse: float
    persistence_bias: float
    persistence_mae: float
    persistence_rmse: float
    skill: float | None
    first_valid_time: datetime
    last_valid_time: datetime


@dataclass(frozen=True)
class VerificationSummary:
    """What one `verify` call did, and the scores it left in `forecast_scores`."""

    new_pairs: int
    awaiting_truth: int
    scores: list[Score]

    def __str__(self) -> str:
        return (f"{self.new_pairs} new pairs verified, {self.awaiting_truth} predictions"
                f" awaiting ERA5, {len(self.scores)} score rows")


def verify(
    conn: Connection, since: datetime | None = None, model: str | None = None
) -> VerificationSummary:
    """Pair every verifiable prediction (initialised at or after `since`, of `model`; None:
    all) with its ERA5 truth, then recompute the scores of the model(s) from all pairs.

    One transaction under an advisory lock: re-runs only add pairs not stored yet.
    """
    params = {"since": since, "model": model}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_VERIFY_LOCK_KEY,))
        new_pairs = _pair_with_truth(cur, params)
        cur.execute(_AWAITING_SQL, params)
        awaiting = cur.fetchone()[0]
        cur.execute("DELETE FROM forecast_scores WHERE %(model)s::text IS NULL"
                    " OR model = %(model)s", params)
        cur.execute(_SCORES_SQL, params)
        scores = read_scores(cur, model)
    return VerificationSummary(new_pairs, awaiting, scores)


def read_scores(cur: Cursor, model: str | None = None) -> list[Score]:
    """The stored scores (of `model`; None: all), ordered for reporting."""
    cur.execute(
        f"SELECT {_SCORE_COLUMNS} FROM forecast_scores"
        " WHERE %(model)s::text IS NULL OR model = %(model)s"
        " ORDER BY model, variable, level, lead_hours NULLS LAST, site NULLS FIRST",
        {"model": model},
    )
    return [Score(*row) for row in cur.fetchall()]


def _pair_with_truth(cur: Cursor, params: dict) -> int:
    """Interpolate truth and persistence for the ready predictions and store the pairs."""
    cur.execute(_READY_SQL, params)
    rows = cur.fetchall()
    if not rows:
        return 0
    columns = map(np.array, zip(*rows, strict=True))
    ids, grid_ids, variables, levels, init_s, valid_s, lats, lons = columns
    truth = np.full(len(rows), np.nan)
    persistence = np.full(len(rows), np.nan)
    grids = _grids(cur)
    for grid_id, variable, level in sorted(set(zip(grid_ids.tolist(), variables.tolist(),
                                                     levels.tolist(), strict=True))):
        in_group = (grid_ids == grid_id) & (variables == variable) & (levels == level)
        _interpolate_group(cur, grids[grid_id], (variable, level), in_group,
                           init_s, valid_s, lats, lons, truth, persistence)
    execute_values(
        cur,
        "INSERT INTO verification_pairs (prediction_id, grid_id, truth, persistence) VALUES %s",
        list(zip(ids.tolist(), grid_ids.tolist(), truth.tolist(), persistence.tolist(),
                 strict=True)),
        page_size=10_000,
    )
    return len(rows)


def _interpolate_group(
    cur: Cursor, grid: Grid, key: tuple[str, int], in_group: np.ndarray,
    init_s: np.ndarray, valid_s: np.ndarray, lats: np.ndarray, lons: np.ndarray,
    truth: np.ndarray, persistence: np.ndarray,
) -> None:
    """Fill `truth`/`persistence` for the predictions `in_group` (one grid and field),
    reading each needed time's field once."""
    axes = dict(lat_first=grid.lat_first, lat_step=grid.lat_step,
                lon_first=grid.lon_first, lon_step=grid.lon_step)
    for t in np.unique(np.concatenate([init_s[in_group], valid_s[in_group]])):
        field = read_fields(cur, grid, datetime.fromtimestamp(int(t), timezone.utc), [key])[key]
        for target, times in ((truth, valid_s), (persistence, init_s)):
            at_t = in_group & (times == t)
            if at_t.any():
                target[at_t] = bilinear(field, lats[at_t], lons[at_t], **axes)


def _grids(cur: Cursor) -> dict[int, Grid]:
    """Every stored grid by id."""
    cur.execute("SELECT grid_id, n_lat, n_lon, lat_first, lat_step, lon_first, lon_step"
                " FROM input_grids")
    return {row[0]: Grid(*row[1:]) for row in cur.fetchall()}
