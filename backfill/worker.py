"""One backfill worker: a Ray actor that loads the model once and runs whole cycles.

Each cycle opens its own database connection and goes through the job's `run_locked_cycle`
(same prepare, ledger and one-transaction ingest as the scheduled job). When Ray retries a
cycle after its worker was killed, the retry first waits for the killed session's cycle lock
to go and marks that dead attempt interrupted, so the ledger shows both attempts and the
rows exist once.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg2

from config.settings import Settings
from graphcast_api.settings import ServiceSettings
from graphcast_contract.errors import DatabaseError, first_line
from graphcast_contract.model_spec import ModelSpec
from graphcast_contract.request import Site
from graphcast_contract.sources import InputSource
from modules.forecast_job import Job, run_locked_cycle
from modules.job import ledger
from modules.job.ledger import RunOutcome
from modules.job.logs import clean
from modules.storage.db import DEAD_PEER_S, connect

# Longest wait for a dead attempt's session to release the cycle lock. A killed process's
# socket is closed and PostgreSQL ends its session at once; a lost node closes nothing, and the
# server ends the session when its keepalives fail (DEAD_PEER_S after the node's last packet),
# plus a margin. A cycle whose lock a live run holds (the scheduled job) waits this long too,
# then is recorded skipped (exit 7).
DEAD_LOCK_WAIT_S = DEAD_PEER_S + 30.0
# Reason of a retried cycle whose first attempt had committed before its worker died.
ALREADY_DONE = "already succeeded (committed before its worker died)"


class CycleWorker:
    """Holds the model; `run_cycle` is one cycle, start to commit (wrapped by `ray.remote`)."""

    def __init__(self, settings: Settings, database_url: str, sites: tuple[Site, ...],
                 model_settings: ServiceSettings, threads: int) -> None:
        import torch

        from backfill.in_process import InProcessClient
        from graphcast_api.service.serve import load_forecaster

        torch.set_num_threads(threads)
        self.settings, self.database_url, self.sites = settings, database_url, sites
        self.client = InProcessClient(load_forecaster(model_settings))
        self.spec = ModelSpec.from_reply(self.client.model_info())

    def model_info(self) -> dict[str, Any]:
        return self.client.model_info()

    def run_cycle(self, init_time: datetime, source: InputSource) -> RunOutcome:
        """Run one cycle under its lock; a database failure is returned as the outcome."""
        try:
            conn = connect(self.database_url)
        except psycopg2.Error as exc:
            return _database_failure(init_time, source, exc)
        try:
            ledger.wait_for_cycle(conn, source, init_time, DEAD_LOCK_WAIT_S)
            ledger.mark_interrupted(conn)
            if not ledger.without_success(conn, [init_time], source, self.spec.model):
                return RunOutcome(None, init_time, source, "succeeded", 0, ALREADY_DONE)
            job = Job(self.settings, source, self.sites, conn, self.client)
            return run_locked_cycle(job, self.spec, init_time)
        except psycopg2.Error as exc:
            return _database_failure(init_time, source, exc)
        finally:
            conn.close()


def _database_failure(init_time: datetime, source: InputSource,
                      exc: psycopg2.Error) -> RunOutcome:
    error = DatabaseError(f"database error: {first_line(exc)}")
    return RunOutcome(None, init_time, source, error.status, error.exit_code, clean(error))
