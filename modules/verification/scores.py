"""Forecast verification: stored predictions against the truth of their own source.

A forecast initialised from ERA5 is verified against ERA5; one initialised from the IFS open
data against the open data's later step-0 analyses (`predictions.source` selects the
`input_fields.source` read). For every prediction whose valid time and initial time both
have the field of its source in the store, the truth at the site is the bilinear
interpolation of that field (the same function the API uses for its site values), and the
persistence forecast is the same at the initial time. These pairs go to
`verification_pairs` once; `forecast_scores` is then recomputed from all pairs: bias, MAE,
RMSE of forecast - truth and of persistence - truth, and skill = 1 - RMSE / RMSE_persistence,
per source x model x variable x level x lead time x site.
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
SELECT p.prediction_id, g.grid_id, p.source, p.variable, p.level,
       extract(epoch FROM p.init_time)::bigint, extract(epoch FROM p.forecast_time)::bigint,
       p.latitude, p.longitude
FROM predictions p
CROSS JOIN LATERAL (
    SELECT g.grid_id FROM input_grids g
    WHERE EXISTS (SELECT 1 FROM input_fields f WHERE f.grid_id = g.grid_id
                  AND f.source = p.source AND f.valid_time = p.forecast_time
                  AND f.variable = p.variable AND f.level = p.level)
      AND EXISTS (SELECT 1 FROM input_fields f WHERE f.grid_id = g.grid_id
                  AND f.source = p.source AND f.valid_time = p.init_time
                  AND f.variable = p.variable AND f.level = p.level)
    ORDER BY g.lat_step, g.lon_step, g.grid_id
    LIMIT 1
) g
WHERE NOT EXISTS (SELECT 1 FROM verification_pairs v WHERE v.prediction_id = p.prediction_id)
  AND (%(since)s::timestamptz IS NULL OR p.init_time >= %(since)s)
  AND (%(model)s::text IS NULL OR p.model = %(model)s)
  AND (%(source)s::text IS NULL OR p.source = %(source)s)
"""

_AWAITING_SQL = """
SELECT count(*) FROM predictions p
WHERE NOT EXISTS (SELECT 1 FROM verification_pairs v WHERE v.prediction_id = p.prediction_id)
  AND (%(since)s::timestamptz IS NULL OR p.init_time >= %(since)s)
  AND (%(model)s::text IS NULL OR p.model = %(model)s)
  AND (%(source)s::text IS NULL OR p.source = %(source)s)
"""

_SCORE_COLUMNS = (
    "source, model, variable, level, lead_hours, site, unit, n, bias, mae, rmse, persistence_bias,"
    " persistence_mae, persistence_rmse, skill, first_valid_time, last_valid_time"
)

# Aggregates per lead time (all sites), per lead time and site, and per site (all leads).
_SCORES_SQL = f"""
INSERT INTO forecast_scores ({_SCORE_COLUMNS})
SELECT source, model, variable, level, lead_hours, site, min(unit), count(*),
       avg(error), avg(abs(error)), sqrt(avg(error * error)),
       avg(persistence_error), avg(abs(persistence_error)),
       sqrt(avg(persistence_error * persistence_error)),
       1 - sqrt(avg(error * error))
           / NULLIF(sqrt(avg(persistence_error * persistence_error)), 0),
       min(forecast_time), max(forecast_time)
FROM forecast_errors
WHERE (%(model)s::text IS NULL OR model = %(model)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
GROUP BY GROUPING SETS ((source, model, variable, level, lead_hours),
                        (source, model, variable, level, lead_hours, site),
                        (source, model, variable, level, site))
"""


@dataclass(frozen=True)
class Score:
    """One row of `forecast_scores`; `lead_hours`/`site` None means pooled over all."""

    source: str
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
                f" awaiting their truth, {len(self.scores)} score rows")


def verify(
    conn: Connection, since: datetime | None = None, model: str | None = None,
    source: str | None = None,
) -> VerificationSummary:
    """Pair every verifiable prediction (initialised at or after `since`, of `model` and
    `source`; None: all) with the truth of its source, then recompute the scores of the
    model(s) and source(s) from all pairs.

    One transaction under an advisory lock: re-runs only add pairs not stored yet.
    """
    params = {"since": since, "model": model, "source": source}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_VERIFY_LOCK_KEY,))
        new_pairs = _pair_with_truth(cur, params)
        cur.execute(_AWAITING_SQL, params)
        awaiting = cur.fetchone()[0]
        cur.execute("DELETE FROM forecast_scores WHERE (%(model)s::text IS NULL"
                    " OR model = %(model)s) AND (%(source)s::text IS NULL"
                    " OR source = %(source)s)", params)
        cur.execute(_SCORES_SQL, params)
        scores = read_scores(cur, model, source)
    return VerificationSummary(new_pairs, awaiting, scores)


def read_scores(cur: Cursor, model: str | None = None, source: str | None = None
                ) -> list[Score]:
    """The stored scores (of `model` and `source`; None: all), ordered for reporting."""
    cur.execute(
        f"SELECT {_SCORE_COLUMNS} FROM forecast_scores"
        " WHERE (%(model)s::text IS NULL OR model = %(model)s)"
        "   AND (%(source)s::text IS NULL OR source = %(source)s)"
        " ORDER BY source, model, variable, level, lead_hours NULLS LAST, site NULLS FIRST",
        {"model": model, "source": source},
    )
    return [Score(*row) for row in cur.fetchall()]


def _pair_with_truth(cur: Cursor, params: dict) -> int:
    """Interpolate truth and persistence for the ready predictions and store the pairs."""
    cur.execute(_READY_SQL, params)
    rows = cur.fetchall()
    if not rows:
        return 0
    columns = map(np.array, zip(*rows, strict=True))
    ids, grid_ids, sources, variables, levels, init_s, valid_s, lats, lons = columns
    truth = np.full(len(rows), np.nan)
    persistence = np.full(len(rows), np.nan)
    grids = _grids(cur)
    for grid_id, source, variable, level in sorted(set(zip(
            grid_ids.tolist(), sources.tolist(), variables.tolist(), levels.tolist(),
            strict=True))):
        in_group = ((grid_ids == grid_id) & (sources == source) & (variables == variable)
                    & (levels == level))
        _interpolate_group(cur, grids[grid_id], source, (variable, level), in_group,
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
    cur: Cursor, grid: Grid, source: str, key: tuple[str, int], in_group: np.ndarray,
    init_s: np.ndarray, valid_s: np.ndarray, lats: np.ndarray, lons: np.ndarray,
    truth: np.ndarray, persistence: np.ndarray,
) -> None:
    """Fill `truth`/`persistence` for the predictions `in_group` (one grid, source and
    field), reading each needed time's field once."""
    axes = dict(lat_first=grid.lat_first, lat_step=grid.lat_step,
                lon_first=grid.lon_first, lon_step=grid.lon_step)
    for t in np.unique(np.concatenate([init_s[in_group], valid_s[in_group]])):
        when = datetime.fromtimestamp(int(t), timezone.utc)
        field = read_fields(cur, grid, when, [key], source)[key]
        for target, times in ((truth, valid_s), (persistence, init_s)):
            at_t = in_group & (times == t)
            if at_t.any():
                target[at_t] = bilinear(field, lats[at_t], lons[at_t], **axes)


def _grids(cur: Cursor) -> dict[int, Grid]:
    """Every stored grid by id."""
    cur.execute("SELECT grid_id, n_lat, n_lon, lat_first, lat_step, lon_first, lon_step"
                " FROM input_grids")
    return {row[0]: Grid(*row[1:]) for row in cur.fetchall()}
