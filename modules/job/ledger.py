"""The forecast_runs ledger: one row per attempt of the batch job for one cycle."""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor

from graphcast_contract.model_spec import Provenance
from graphcast_contract.project import VERSION
from graphcast_contract.sources import InputSource

UNKNOWN_MODEL = "unknown"  # model column of attempts that ended before the API answered
# Advisory lock classes (the two-key form, whose key space is apart from the one-key locks'):
# one lock per (source, cycle), so runs of other cycles or sources never wait on each other.
_CYCLE_LOCK_CLASS = {InputSource.ERA5: 7_253_100, InputSource.IFS_OPENDATA: 7_253_101}


class Stage(str, Enum):
    """The three stages of a cycle; each has a `<stage>_s` column in forecast_runs."""

    PREPARE = "prepare"
    INFER = "infer"
    INGEST = "ingest"


@dataclass
class StageTimings:
    """Seconds spent in each stage of one run; stages not reached are absent."""

    seconds: dict[Stage, float] = field(default_factory=dict)

    @contextmanager
    def measure(self, stage: Stage) -> Iterator[None]:
        """Record the time spent in the `with` block as `stage`'s, even when it fails."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - started

    def in_order(self) -> list[float | None]:
        """Seconds per stage in `Stage` order, None for stages not reached."""
        return [self.seconds.get(stage) for stage in Stage]

    def summary(self) -> str:
        return " ".join(f"{stage.value}={value:.2f}s" if value is not None else f"{stage.value}=-"
                        for stage, value in zip(Stage, self.in_order(), strict=True))


@dataclass
class RunOutcome:
    """How one attempt ended."""

    run_id: int | None
    init_time: datetime
    source: InputSource
    status: str
    exit_code: int
    reason: str | None = None
    rows_written: int = 0
    clamped: int = 0  # small negatives of non-negative variables stored as 0
    timings: StageTimings = field(default_factory=StageTimings)
    provenance: Provenance = field(default_factory=Provenance)  # reply's, else /v1/model's


def _provenance_values(provenance: Provenance) -> tuple[str | None, ...]:
    """The provenance columns' values; the project version is the service's when it says,
    else this job's (same project)."""
    return (provenance.checkpoint_file, provenance.checkpoint_sha256, provenance.precision,
            provenance.device, provenance.version or VERSION)


def _cycle_key(source: InputSource, init_time: datetime) -> tuple[int, int]:
    return _CYCLE_LOCK_CLASS[source], int(init_time.timestamp()) // 3600


def _as_oids(key: tuple[int, int]) -> tuple[int, int]:
    """A lock key as pg_locks shows it: classid and objid are unsigned (oid), so a cycle
    before 1970, whose hour number is negative, appears as that number plus 2^32."""
    return key[0] % 2**32, key[1] % 2**32


@contextmanager
def cycle_lock(conn: Connection, source: InputSource, init_time: datetime) -> Iterator[bool]:
    """Hold the advisory lock of one cycle of one source for the `with` block; yields False
    (and holds nothing) when another session holds it."""
    key = _cycle_key(source, init_time)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
        acquired = cur.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            _unlock(conn, key)


def wait_for_cycle(conn: Connection, source: InputSource, init_time: datetime,
                   wait_s: float, poll_s: float = 0.2) -> bool:
    """Wait up to `wait_s` for the cycle's lock to be free (taking and releasing it): a
    worker killed inside the cycle holds it until PostgreSQL notices that its session ended,
    a moment after the kill. True when it was free."""
    key = _cycle_key(source, init_time)
    deadline = time.monotonic() + wait_s
    while True:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
            if cur.fetchone()[0]:
                _unlock(conn, key)
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def _unlock(conn: Connection, key: tuple[int, int]) -> None:
    """Release a session-level lock; a lost session has released it already."""
    try:
        conn.rollback()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", key)
    except psycopg2.Error:
        pass


def this_worker() -> str:
    """The worker column of this process's attempts: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def start_run(conn: Connection, init_time: datetime, source: InputSource, model: str,
              provenance: Provenance | None = None) -> int:
    """Record a new attempt as 'running' (committed at once), with the database session that
    runs it (by its pid `mark_interrupted` finds the session's lock), this process as its
    worker and its attempt number (1 + the earlier attempts of the cycle that started
    running; the caller holds the cycle's lock, so the count cannot race); return its
    run_id."""
    provenance = provenance or Provenance()
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO forecast_runs (init_time, source, model, status, checkpoint_file,"
                    " checkpoint_sha256, precision, device, project_version, backend_pid,"
                    " worker, attempt)"
                    " SELECT %s, %s, %s, 'running', %s, %s, %s, %s, %s, pg_backend_pid(), %s,"
                    " 1 + (SELECT count(*) FROM forecast_runs WHERE init_time = %s"
                    " AND source = %s AND model = %s AND backend_pid IS NOT NULL)"
                    " RETURNING run_id",
                    (init_time, source.value, model, *_provenance_values(provenance),
                     this_worker(), init_time, source.value, model))
        return cur.fetchone()[0]


def finish_run(cur: Cursor, outcome: RunOutcome) -> bool:
    """Write the end of a running attempt (inside the caller's transaction); False when it
    had ended already: an attempt ends once, so a failure noticed after its success was
    committed (Ctrl-C just after the commit) leaves that success and its rows as they are."""
    cur.execute(
        "UPDATE forecast_runs SET status = %s, reason = %s, exit_code = %s, rows_written = %s,"
        " clamped_values = %s, prepare_s = %s, infer_s = %s, ingest_s = %s,"
        " checkpoint_file = %s, checkpoint_sha256 = %s, precision = %s, device = %s,"
        " project_version = %s, finished_at = clock_timestamp()"
        " WHERE run_id = %s AND status = 'running'",
        (outcome.status, outcome.reason, outcome.exit_code, outcome.rows_written,
         outcome.clamped, *outcome.timings.in_order(),
         *_provenance_values(outcome.provenance), outcome.run_id),
    )
    return cur.rowcount == 1


def record_attempt(conn: Connection, outcome: RunOutcome, model: str) -> int:
    """Record an attempt that ended before it started running (lock held, API down)."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO forecast_runs (init_time, source, model, status, reason, exit_code,"
            " finished_at) VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp()) RETURNING run_id",
            (outcome.init_time, outcome.source.value, model, outcome.status, outcome.reason,
             outcome.exit_code),
        )
        return cur.fetchone()[0]


def mark_interrupted(conn: Connection) -> int:
    """Mark as failed the 'running' attempts whose database session has ended: their process
    was killed or crashed before finishing (its uncommitted rows were rolled back with the
    session). An attempt is live while its session holds its cycle's lock (taken before the
    row is written, released after its end is committed): pg_locks shows every role's locks,
    whereas pg_stat_activity hides other roles' session details. Attempts of live sessions -
    other runs going on now - are left alone. Returns how many were marked."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, source, init_time, backend_pid FROM forecast_runs"
                    " WHERE status = 'running'")
        running = cur.fetchall()
        cur.execute("SELECT pid, classid::bigint, objid::bigint FROM pg_locks"
                    " WHERE locktype = 'advisory' AND objsubid = 2 AND granted")
        held = set(cur.fetchall())
        ended = [run_id for run_id, source, init_time, pid in running
                 if (pid, *_as_oids(_cycle_key(InputSource(source), init_time))) not in held]
        cur.execute("UPDATE forecast_runs SET status = 'failed', finished_at = clock_timestamp(),"
                    " reason = 'interrupted: the process ended before finishing'"
                    " WHERE run_id = ANY(%s) AND status = 'running'", (ended,))
        return cur.rowcount


def without_success(conn: Connection, cycles: list[datetime], source: InputSource,
                    model: str) -> list[datetime]:
    """The cycles among `cycles` (order kept) with no succeeded run of `model` from `source`."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT init_time FROM forecast_runs WHERE status = 'succeeded'"
                    " AND source = %s AND model = %s AND init_time = ANY(%s)",
                    (source.value, model, cycles))
        done = {row[0] for row in cur.fetchall()}
    return [cycle for cycle in cycles if cycle not in done]
