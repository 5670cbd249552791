"""The run ledger against a real PostgreSQL: which 'running' attempts are interrupted."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg2
import pytest
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import parse_dsn

from graphcast_contract.sources import InputSource
from modules.job import ledger
from modules.storage import db

INIT = datetime(2022, 1, 1, 6, tzinfo=timezone.utc)


@pytest.fixture
def other_role(clean_db: str) -> Iterator[Connection]:
    """A connection as an ordinary role (no superuser, no pg_read_all_stats) that may read and
    update the ledger: pg_stat_activity hides other roles' sessions' details from it."""
    name, password = f"graphcast_job_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = db.connect(clean_db)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {name} LOGIN PASSWORD %s", (password,))
        cur.execute(f"GRANT SELECT, UPDATE ON forecast_runs TO {name}")
    conn = psycopg2.connect(**{**parse_dsn(clean_db), "user": name, "password": password})
    try:
        yield conn
    finally:
        conn.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP OWNED BY {name}")
            cur.execute(f"DROP ROLE {name}")
        admin.close()


def test_a_live_run_of_another_role_is_not_marked_interrupted(clean_db: str,
                                                              other_role: Connection) -> None:
    live = db.connect(clean_db)
    with ledger.cycle_lock(live, InputSource.ERA5, INIT) as acquired:
        assert acquired
        run_id = ledger.start_run(live, INIT, InputSource.ERA5, "GraphCast_test")
        assert ledger.mark_interrupted(other_role) == 0
        live.close()  # killed: the session and its lock go, a moment later
    assert ledger.wait_for_cycle(other_role, InputSource.ERA5, INIT, wait_s=10)
    assert ledger.mark_interrupted(other_role) == 1
    with other_role, other_role.cursor() as cur:
        cur.execute("SELECT status FROM forecast_runs WHERE run_id = %s", (run_id,))
        assert cur.fetchone() == ("failed",)


def test_an_attempt_records_its_session_worker_and_attempt_number(clean_db: str) -> None:
    conn = db.connect(clean_db)
    try:
        with ledger.cycle_lock(conn, InputSource.ERA5, INIT) as acquired:
            assert acquired
            first = ledger.start_run(conn, INIT, InputSource.ERA5, "GraphCast_test")
            second = ledger.start_run(conn, INIT, InputSource.ERA5, "GraphCast_test")
            with conn, conn.cursor() as cur:
                cur.execute("SELECT run_id, backend_pid = pg_backend_pid(), worker, attempt"
                            " FROM forecast_runs ORDER BY run_id")
                assert cur.fetchall() == [(first, True, ledger.this_worker(), 1),
                                          (second, True, ledger.this_worker(), 2)]
    finally:
        conn.close()


def test_an_attempt_ends_once(clean_db: str) -> None:
    """A failure noticed after the success was committed (Ctrl-C just after the commit)
    leaves the success as it is."""
    conn = db.connect(clean_db)
    try:
        run_id = ledger.start_run(conn, INIT, InputSource.ERA5, "GraphCast_test")
        succeeded = ledger.RunOutcome(run_id, INIT, InputSource.ERA5, "succeeded", 0,
                                      rows_written=80)
        failed = ledger.RunOutcome(run_id, INIT, InputSource.ERA5, "failed", 16, "interrupted")
        with conn, conn.cursor() as cur:
            assert ledger.finish_run(cur, succeeded)
        with conn, conn.cursor() as cur:
            assert not ledger.finish_run(cur, failed)
            cur.execute("SELECT status, rows_written, exit_code FROM forecast_runs")
            assert cur.fetchall() == [("succeeded", 80, 0)]
    finally:
        conn.close()


def test_a_live_run_of_a_cycle_before_1970_is_not_marked_interrupted(
        clean_db: str, other_role: Connection) -> None:
    """Its lock key (hours since 1970) is negative, and pg_locks shows it as an unsigned oid:
    the live run was marked failed while it went on to commit its rows."""
    early = datetime(1960, 1, 1, 6, tzinfo=timezone.utc)
    live = db.connect(clean_db)
    try:
        with ledger.cycle_lock(live, InputSource.ERA5, early) as acquired:
            assert acquired
            ledger.start_run(live, early, InputSource.ERA5, "GraphCast_test")
            assert ledger.mark_interrupted(other_role) == 0
    finally:
        live.close()
    assert ledger.wait_for_cycle(other_role, InputSource.ERA5, early, wait_s=10)
    assert ledger.mark_interrupted(other_role) == 1
