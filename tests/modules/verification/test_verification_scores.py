"""Verification against known data: exact forecasts, constant offsets, persistence by hand,
idempotent re-runs, predictions waiting for their truth, grid choice and filters."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import pytest
from psycopg2.extensions import connection as Connection

from graphcast_contract.interpolation import bilinear
from graphcast_contract.model_spec import Grid
from modules.storage import db
from modules.verification.scores import Score, verify
from tests.modules.verification.store_helpers import GRID_10, MODEL, T0, store_field, store_forecast

SITES = [("Paris", 48.86, 2.35), ("Madrid", 40.42, -3.70), ("Oslo", 59.91, 10.75)]
LATS = np.array([s[1] for s in SITES])
LONS = np.array([s[2] for s in SITES])
LEADS = (6, 12)


def _random_field(seed: int) -> np.ndarray:
    return 270 + 10 * np.random.default_rng(seed).random(GRID_10.shape).astype(np.float32)


def _truth(field: np.ndarray) -> np.ndarray:
    """What the API would give at SITES for this field on the 10-degree grid."""
    return bilinear(field, LATS, LONS, lat_first=-90.0, lat_step=10.0, lon_first=0.0,
                    lon_step=10.0)


def _store_cycle(conn: Connection, offset: float = 0.0, seed: int = 0) -> dict[int, np.ndarray]:
    """ERA5 at T0 and T0 + leads, and a forecast equal to the truth + offset; returns the
    truth per lead (0 = T0)."""
    truths = {}
    for lead in (0, *LEADS):
        field = _random_field(seed + lead)
        store_field(conn, T0 + timedelta(hours=lead), field)
        truths[lead] = _truth(field)
    store_forecast(conn, T0, SITES, {lead: truths[lead] + offset for lead in LEADS})
    return truths


def _pick(scores: list[Score], lead: int | None, site: str | None) -> Score:
    [score] = [s for s in scores if s.lead_hours == lead and s.site == site]
    return score


def _count(conn: Connection, table: str) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")
        return cur.fetchone()[0]


def test_forecast_equal_to_truth_gives_zero_error(conn: Connection) -> None:
    _store_cycle(conn)
    summary = verify(conn)
    assert summary.new_pairs == len(SITES) * len(LEADS)
    assert summary.awaiting_truth == 0
    # per lead (all sites), per lead and site, per site (all leads)
    assert len(summary.scores) == len(LEADS) + len(LEADS) * len(SITES) + len(SITES)
    for score in summary.scores:
        assert (score.bias, score.mae, score.rmse) == (0.0, 0.0, 0.0)
        assert score.persistence_rmse > 0
        assert score.skill == 1.0
    with conn.cursor() as cur:
        cur.execute("SELECT max(abs(error)) FROM forecast_errors")
        assert cur.fetchone()[0] == 0.0


def test_constant_offset_gives_that_bias(conn: Connection) -> None:
    _store_cycle(conn, offset=1.5)
    scores = verify(conn).scores
    for score in scores:
        assert score.bias == pytest.approx(1.5, abs=1e-9)
        assert score.mae == pytest.approx(1.5, abs=1e-9)
        assert score.rmse == pytest.approx(1.5, abs=1e-9)
    assert _pick(scores, 6, None).n == len(SITES)
    assert _pick(scores, None, "Oslo").n == len(LEADS)


def test_persistence_computed_by_hand(conn: Connection) -> None:
    # Fields linear in latitude, so the truth at a site is exact: base + 0.1 * latitude.
    lat = GRID_10.latitudes()[:, None] * np.ones(GRID_10.shape)
    for lead, base in ((0, 280.0), (6, 282.0), (12, 277.0)):
        store_field(conn, T0 + timedelta(hours=lead), base + 0.1 * lat)
    sites = [("A", 40.0, 5.0), ("B", -20.0, 100.0)]  # truth offsets +4 and -2
    # Truth: A 286 at +6, 281 at +12; B 280 at +6, 275 at +12.
    store_forecast(conn, T0, sites, {6: [287.0, 279.0], 12: [281.0, 277.0]})
    scores = verify(conn).scores

    # Persistence: A holds 284, B holds 278, so errors -2 at +6 and +3 at +12 at both sites.
    plus6, plus12 = _pick(scores, 6, None), _pick(scores, 12, None)
    assert (plus6.persistence_bias, plus6.persistence_mae) == pytest.approx((-2.0, 2.0))
    assert plus6.persistence_rmse == pytest.approx(2.0)
    assert (plus12.persistence_bias, plus12.persistence_rmse) == pytest.approx((3.0, 3.0))
    # Forecast errors: +6: A +1, B -1; +12: A 0, B +2.
    assert (plus6.bias, plus6.mae, plus6.rmse) == pytest.approx((0.0, 1.0, 1.0))
    assert plus6.skill == pytest.approx(1 - 1.0 / 2.0)
    assert (plus12.bias, plus12.mae, plus12.rmse) == pytest.approx((1.0, 1.0, math.sqrt(2)))
    assert plus12.skill == pytest.approx(1 - math.sqrt(2) / 3.0)
    # Site B over both leads: errors -1, +2; persistence -2, +3.
    site_b = _pick(scores, None, "B")
    assert (site_b.n, site_b.bias, site_b.mae) == (2, pytest.approx(0.5), pytest.approx(1.5))
    assert site_b.rmse == pytest.approx(math.sqrt(2.5))
    assert site_b.persistence_bias == pytest.approx(0.5)
    assert site_b.persistence_rmse == pytest.approx(math.sqrt(6.5))
    assert _pick(scores, 12, "A").rmse == pytest.approx(0.0, abs=1e-9)


def test_rerun_adds_nothing_and_new_cycles_only_add_their_pairs(conn: Connection) -> None:
    _store_cycle(conn, offset=0.5)
    first = verify(conn)
    second = verify(conn)
    assert second.new_pairs == 0
    assert _count(conn, "verification_pairs") == first.new_pairs
    assert [(s.n, s.rmse) for s in second.scores] == [(s.n, s.rmse) for s in first.scores]
    assert _count(conn, "forecast_scores") == len(first.scores)

    # A second cycle six hours later: its T0 is already stored, +12 h is new.
    t1 = T0 + timedelta(hours=6)
    store_field(conn, t1 + timedelta(hours=12), _random_field(99))
    store_forecast(conn, t1, SITES, {6: [280.0] * 3, 12: [280.0] * 3})
    third = verify(conn)
    assert third.new_pairs == len(SITES) * len(LEADS)
    assert _count(conn, "verification_pairs") == 2 * first.new_pairs
    assert _pick(third.scores, 6, None).n == 2 * len(SITES)


def test_predictions_wait_for_their_truth(conn: Connection) -> None:
    store_field(conn, T0, _random_field(0))
    store_field(conn, T0 + timedelta(hours=6), _random_field(6))
    truth12 = _random_field(12)
    store_forecast(conn, T0, SITES, {6: [280.0] * 3, 12: [280.0] * 3})
    summary = verify(conn)
    assert (summary.new_pairs, summary.awaiting_truth) == (3, 3)
    assert {s.lead_hours for s in summary.scores} == {6, None}

    store_field(conn, T0 + timedelta(hours=12), truth12)
    summary = verify(conn)
    assert (summary.new_pairs, summary.awaiting_truth) == (3, 0)
    assert _pick(summary.scores, 12, None).bias == pytest.approx(
        float(np.mean(280.0 - _truth(truth12))))


def test_finest_grid_holding_both_times_is_used(conn: Connection) -> None:
    _store_cycle(conn)  # 10-degree fields at T0, +6, +12
    grid_5 = Grid(n_lat=37, n_lon=72, lat_first=-90.0, lat_step=5.0, lon_first=0.0,
                  lon_step=5.0)
    for lead in (0, 6):  # the 5-degree grid lacks +12 h
        store_field(conn, T0 + timedelta(hours=lead), np.full(grid_5.shape, 300.0 + lead),
                    grid=grid_5)
    verify(conn)
    with conn.cursor() as cur:
        cur.execute("SELECT e.lead_hours, g.lat_step, e.truth, e.persistence"
                    " FROM forecast_errors e JOIN verification_pairs v USING (prediction_id)"
                    " JOIN input_grids g USING (grid_id) WHERE e.lead_hours = 6")
        rows = {(lead, step, round(truth, 9), round(pers, 9))
                for lead, step, truth, pers in cur.fetchall()}
        assert rows == {(6, 5.0, 306.0, 300.0)}
        cur.execute("SELECT DISTINCT g.lat_step FROM forecast_errors e"
                    " JOIN verification_pairs v USING (prediction_id)"
                    " JOIN input_grids g USING (grid_id) WHERE e.lead_hours = 12")
        assert cur.fetchall() == [(10.0,)]


def test_model_and_since_filters(conn: Connection) -> None:
    _store_cycle(conn)
    store_forecast(conn, T0, SITES, {6: [280.0] * 3}, model="other")
    only_other = verify(conn, model="other")
    assert only_other.new_pairs == 3
    assert {s.model for s in only_other.scores} == {"other"}
    assert verify(conn, since=T0 + timedelta(hours=1)).new_pairs == 0
    everything = verify(conn, since=T0)
    assert everything.new_pairs == len(SITES) * len(LEADS)
    assert {s.model for s in everything.scores} == {"other", MODEL}


def test_concurrent_runs_pair_each_prediction_once(conn: Connection, clean_db: str) -> None:
    _store_cycle(conn)
    connections = [db.connect(clean_db) for _ in range(2)]
    try:
        with ThreadPoolExecutor(2) as pool:
            summaries = list(pool.map(verify, connections))
    finally:
        for connection in connections:
            connection.close()
    assert sorted(s.new_pairs for s in summaries) == [0, len(SITES) * len(LEADS)]
    assert _count(conn, "verification_pairs") == len(SITES) * len(LEADS)


def test_each_source_is_verified_against_its_own_truth(conn: Connection) -> None:
    """One cycle forecast from both sources: ERA5's forecast equals ERA5's truth, the
    open-data forecast equals the open data's truth, and the two truths differ by 2 K."""
    for lead in (0, *LEADS):
        field = _random_field(lead)
        store_field(conn, T0 + timedelta(hours=lead), field)
        store_field(conn, T0 + timedelta(hours=lead), field + 2.0, source="ifs-opendata")
    store_forecast(conn, T0, SITES, {lead: _truth(_random_field(lead)) for lead in LEADS})
    store_forecast(conn, T0, SITES, {lead: _truth(_random_field(lead)) + 2.0 for lead in LEADS},
                   source="ifs-opendata")
    summary = verify(conn)
    assert summary.new_pairs == 2 * len(SITES) * len(LEADS)
    by_source = {s.source: s for s in summary.scores if s.lead_hours == 6 and s.site is None}
    assert set(by_source) == {"era5", "ifs-opendata"}
    for score in by_source.values():
        assert score.rmse == pytest.approx(0.0, abs=1e-4)
        assert score.persistence_rmse > 0.1  # persistence from the same source's T0
    assert verify(conn, source="ifs-opendata").scores == [
        s for s in verify(conn).scores if s.source == "ifs-opendata"]
