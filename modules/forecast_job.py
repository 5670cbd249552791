"""One invocation of the batch job: prepare -> infer -> ingest for each planned cycle.

Order: connect and migrate, mark interrupted runs, ask the API what the model needs, then for
each cycle (catch-up cycles oldest first, the target last) take that cycle's lock, extract and
validate the inputs of the run's source, post them, validate the reply and upsert the 80 rows.
Locks are per (source, cycle): the ERA5 job, the live job and a backfill never wait on each
other except for one same cycle.

The three stages (`data_preparator`, `model_api_client`, `prediction_db_ingestion`) know
nothing of each other or of the run ledger: this module alone starts, times and finishes
each run's `forecast_runs` row.
"""
from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from types import FrameType

import psycopg2
from psycopg2.extensions import connection as Connection

from config.settings import Settings
from graphcast_contract.cycles import earlier_cycles, floor_to_cycle, iso_utc, target_init_time
from graphcast_contract.errors import (
    AlreadyRunningError,
    ConfigError,
    DatabaseError,
    ExitCode,
    FetchError,
    Interrupted,
    JobError,
    MissingDataError,
    first_line,
)
from graphcast_contract.model_spec import ModelSpec, Provenance
from graphcast_contract.reply import CycleForecast, parse_forecast_reply
from graphcast_contract.request import ForecastContext, Site, build_binary_body
from graphcast_contract.sources import InputSource
from graphcast_contract.wire import BinaryBody
from modules import data_preparator, prediction_db_ingestion
from modules.inputs import store
from modules.job import ledger
from modules.job.ledger import RunOutcome, Stage
from modules.job.logs import clean
from modules.job.sites import load_sites
from modules.model_api_client import ModelApiClient
from modules.storage.db import open_database
from modules.verification import scores

log = logging.getLogger("forecast_job")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; kill, systemctl stop, a shutdown


@dataclass(frozen=True)
class JobOptions:
    """Command-line choices: target cycle (None = the source's default: J-6 for ERA5, the
    latest complete cycle in the store for IFS open data), catch-up depth, dry run, whether
    to verify stored forecasts afterwards, the source, and whether to fetch the source's
    latest cycle first."""

    init_time: datetime | None = None
    catch_up: int = 0
    dry_run: bool = False
    verify: bool = False
    source: InputSource | None = None  # None: the FORECAST_SOURCE setting
    fetch: bool = False


@dataclass(frozen=True)
class Job:
    """What every cycle of one invocation shares."""

    settings: Settings
    source: InputSource
    sites: tuple[Site, ...]
    conn: Connection
    client: ModelApiClient


def run(settings: Settings, options: JobOptions, now: datetime | None = None) -> int:
    """Run the job; return the process exit code (see graphcast_contract.errors.ExitCode)."""
    source = options.source or settings.source
    now = now or datetime.now(timezone.utc)
    target = options.init_time
    if target is None and source is InputSource.ERA5:
        target = target_init_time(now, settings.forecast_lag_days)
    # Until the store names the live target, failures are recorded under the current slot.
    nominal = target or floor_to_cycle(now)
    try:
        if options.fetch and source is not InputSource.IFS_OPENDATA:
            raise ConfigError("--fetch applies to --source ifs-opendata only (ERA5 files are "
                              "loaded with python -m modules.inputs)")
        sites = load_sites(settings.sites_file)
        conn = open_database(settings)
    except JobError as exc:
        log.error("%s", exc)
        _log_summary(RunOutcome(None, nominal, source, "failed", exc.exit_code, clean(exc)))
        return exc.exit_code
    job = Job(settings, source, sites, conn, ModelApiClient(
        settings.api_url_for(source), token=settings.api_token,
        connect_timeout_s=settings.api_connect_timeout_s,
        read_timeout_s=settings.api_timeout_s, retries=settings.api_retries,
        backoff_s=settings.api_backoff_s))
    try:
        if options.dry_run:
            return _dry_run(job, target, options.catch_up)
        exit_code = _locked_run(job, options, target, nominal)
        if options.verify and exit_code not in (ExitCode.ALREADY_RUNNING,
                                                ExitCode.INTERRUPTED):
            verify_stored(conn)
        return exit_code
    finally:
        conn.close()


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """For the block, STOP_SIGNALS raise KeyboardInterrupt naming the signal, also in a process
    started with SIGINT ignored (a script's background command): the running cycle records
    its attempt as failed and the job exits INTERRUPTED, instead of dying with its attempt
    'running' (the batch job's entry point runs in this)."""
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def interrupted(exc: KeyboardInterrupt) -> Interrupted:
    """The error of a run stopped by `exc`: its signal is named (a bare KeyboardInterrupt is
    Python's own Ctrl-C)."""
    return Interrupted(f"interrupted by the user ({exc.args[0] if exc.args else 'SIGINT'})")


def verify_stored(conn: Connection) -> None:
    """Score every stored forecast whose ERA5 truth is in; a failure here is only a warning
    (the forecasts are stored either way)."""
    try:
        conn.rollback()
        log.info("verification: %s", scores.verify(conn))
    except psycopg2.Error as exc:
        log.warning("verification failed: %s", first_line(exc))
    except Exception as exc:  # noqa: BLE001 - e.g. a stored truth field of the wrong size
        log.warning("verification failed: %s: %s", type(exc).__name__, first_line(exc))


def _plan(job: Job, spec: ModelSpec, target: datetime | None, catch_up: int
          ) -> list[datetime]:
    """Catch-up cycles without a successful run of this model and source (oldest first),
    then the target (None: the source's latest complete cycle in the store)."""
    target = target or _latest_in_store(job, spec)
    earlier = earlier_cycles(target, catch_up)
    if earlier:
        earlier = ledger.without_success(job.conn, earlier, job.source, spec.model)
    return earlier + [target]


def _latest_in_store(job: Job, spec: ModelSpec) -> datetime:
    """The newest cycle whose T-6 h and T0 inputs of the job's source are complete on the
    model's grid (the live job's default target)."""
    with job.conn, job.conn.cursor() as cur:
        latest = store.latest_complete_cycle(cur, job.source, spec.grid, spec.input_keys(),
                                             spec.static_inputs)
    if latest is None:
        raise MissingDataError(
            f"no complete {job.source.label} cycle in the store on the model grid "
            f"{spec.grid.n_lat}x{spec.grid.n_lon}: fetch one (python -m modules.ifs_opendata "
            "fetch --cycle latest) or run with --fetch")
    return latest


def _fetch_latest(job: Job, spec: ModelSpec) -> None:
    """Fetch the source's newest published cycle into the store on the model's grid."""
    from modules.ifs_opendata.cli import LATEST, fetch_into_store  # the live job only

    code = fetch_into_store(job.settings, LATEST, spec.grid.lat_step)
    if code != ExitCode.OK:
        raise FetchError(f"fetching the latest {job.source.label} cycle failed (exit {code},"
                         " see the line above); nothing forecast", ExitCode(code))


def _locked_run(job: Job, options: JobOptions, target: datetime | None,
                nominal: datetime) -> int:
    spec: ModelSpec | None = None  # known once the API has named its model
    try:
        interrupted_runs = ledger.mark_interrupted(job.conn)
        if interrupted_runs:
            log.warning("marked %d interrupted run(s) as failed", interrupted_runs)
        spec = _read_model_spec(job)
        _check_model_spec(job, spec)
        if options.fetch:
            _fetch_latest(job, spec)
        cycles = _plan(job, spec, target, options.catch_up)
    except JobError as exc:
        return _record_early_failure(job, nominal, exc, spec)
    except psycopg2.Error as exc:
        return _record_early_failure(job, nominal, DatabaseError(f"database error: "
                                                                 f"{first_line(exc)}"), spec)
    log.info("source %s, cycles to run: %s", job.source.value,
             ", ".join(iso_utc(c) for c in cycles))
    exit_code = ExitCode.OK
    for init_time in cycles:
        outcome = run_locked_cycle(job, spec, init_time)
        _log_summary(outcome)
        if outcome.exit_code == ExitCode.INTERRUPTED:
            return ExitCode.INTERRUPTED  # stopped: no later cycle
        if outcome.exit_code and not exit_code:
            exit_code = outcome.exit_code
        if outcome.exit_code in (ExitCode.API_FAILED, ExitCode.DATABASE):
            break  # later cycles would fail the same way
    return exit_code


def _read_model_spec(job: Job) -> ModelSpec:
    """What the API's model needs and produces (GET /v1/model)."""
    return ModelSpec.from_reply(job.client.model_info())


def _check_model_spec(job: Job, spec: ModelSpec) -> None:
    """ConfigError unless the model forecasts the wanted variables and lead times."""
    spec.check_wanted(job.settings.variables, job.settings.lead_hours)
    log.info("model %s: grid %dx%d, %d levels, %d input fields + %d static",
             spec.model, spec.grid.n_lat, spec.grid.n_lon, len(spec.pressure_levels),
             len(spec.input_keys()), len(spec.static_inputs))


def _record_early_failure(job: Job, target: datetime, exc: JobError,
                          spec: ModelSpec | None) -> int:
    """Log and record an attempt that ended before any cycle started; its model is the
    API's once the API has named it (`spec`), else UNKNOWN_MODEL."""
    log.error("%s", exc)
    outcome = RunOutcome(None, target, job.source, exc.status, exc.exit_code, clean(exc))
    if not isinstance(exc, DatabaseError):
        model = spec.model if spec is not None else ledger.UNKNOWN_MODEL
        try:
            outcome.run_id = ledger.record_attempt(job.conn, outcome, model)
        except psycopg2.Error as db_exc:
            log.error("could not record the attempt: %s", first_line(db_exc))
    _log_summary(outcome)
    return exc.exit_code


def _context(job: Job, init_time: datetime) -> ForecastContext:
    return ForecastContext(init_time, job.sites, job.settings.variables, job.settings.lead_hours)


def _prepare(job: Job, spec: ModelSpec, context: ForecastContext) -> BinaryBody:
    """Extract and validate the inputs of the cycle: its forecast request in the binary
    encoding, streamed from the arrays when sent."""
    with job.conn, job.conn.cursor() as cur:
        snapshot = data_preparator.extract_snapshot(cur, spec, context.init_time, job.source)
    return build_binary_body(spec, context, snapshot)


def _ingest(job: Job, outcome: RunOutcome, forecast: CycleForecast) -> None:
    """Write the rows and mark the run succeeded in one transaction (the ingest time
    excludes the commit)."""
    with job.conn, job.conn.cursor() as cur:
        with outcome.timings.measure(Stage.INGEST):
            outcome.rows_written = prediction_db_ingestion.ingest(
                cur, outcome.run_id, job.source, forecast)
        outcome.clamped = forecast.clamped
        if forecast.provenance != Provenance():
            outcome.provenance = forecast.provenance
        outcome.status = "succeeded"
        if not ledger.finish_run(cur, outcome):  # rolled back with the rows
            raise DatabaseError(f"run {outcome.run_id} was ended by another process before "
                                "its rows were committed; nothing written")


def run_locked_cycle(job: Job, spec: ModelSpec, init_time: datetime) -> RunOutcome:
    """Run one cycle under its lock; when another session holds the lock, record a skipped
    attempt (exit ALREADY_RUNNING) and leave the cycle to it."""
    try:
        with ledger.cycle_lock(job.conn, job.source, init_time) as acquired:
            if acquired:
                return _run_cycle(job, spec, init_time)
            error: JobError = AlreadyRunningError(
                f"cycle {iso_utc(init_time)} ({job.source.value}) is being run by another "
                "process (advisory lock held); left to it")
            outcome = RunOutcome(None, init_time, job.source, error.status, error.exit_code,
                                 clean(error))
            log.warning("%s", error)
            outcome.run_id = ledger.record_attempt(job.conn, outcome, spec.model)
            return outcome
    except psycopg2.Error as exc:
        error = DatabaseError(f"database error: {first_line(exc)}")
        log.error("cycle %s: %s", iso_utc(init_time), error)
        return RunOutcome(None, init_time, job.source, error.status, error.exit_code,
                          clean(error))


def _run_cycle(job: Job, spec: ModelSpec, init_time: datetime) -> RunOutcome:
    """Prepare, infer and ingest one cycle; every failure is recorded in its ledger row."""
    outcome = RunOutcome(None, init_time, job.source, "running", ExitCode.OK,
                         provenance=spec.provenance)
    context = _context(job, init_time)
    try:
        outcome.run_id = ledger.start_run(job.conn, init_time, job.source, spec.model,
                                          spec.provenance)
        with outcome.timings.measure(Stage.PREPARE):
            body = _prepare(job, spec, context)
        with outcome.timings.measure(Stage.INFER):
            forecast = parse_forecast_reply(job.client.forecast(body), spec, context)
        _ingest(job, outcome, forecast)
        return outcome
    except JobError as exc:
        error = exc
    except psycopg2.Error as exc:
        error = DatabaseError(f"database error: {first_line(exc)}")
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM (stop_signals_interrupt)
        error = interrupted(exc)
    except Exception as exc:  # a bug: keep the traceback, still close the ledger row
        log.exception("cycle %s: unexpected error", iso_utc(init_time))
        error = JobError(f"unexpected error: {type(exc).__name__}: {first_line(exc)}")
    log.error("cycle %s: %s", iso_utc(init_time), error)
    outcome.status, outcome.exit_code = error.status, error.exit_code
    outcome.reason = clean(error)  # stored: secrets masked, one line
    outcome.rows_written = outcome.clamped = 0
    _finish_failed(job, outcome)
    return outcome


def _finish_failed(job: Job, outcome: RunOutcome) -> None:
    if outcome.run_id is None:
        return
    try:
        if not job.conn.closed:
            job.conn.rollback()
        with job.conn, job.conn.cursor() as cur:
            ended = ledger.finish_run(cur, outcome)
        if not ended:
            log.warning("run %s had ended before that (its end was committed): left as it is",
                        outcome.run_id)
    except psycopg2.Error as exc:
        log.error("could not record the failure of run %s: %s", outcome.run_id, first_line(exc))


def _dry_run(job: Job, target: datetime | None, catch_up: int) -> int:
    """Prepare and validate every planned cycle; no forecast request, nothing written."""
    try:
        spec = _read_model_spec(job)
        _check_model_spec(job, spec)
        cycles = _plan(job, spec, target, catch_up)
    except JobError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except psycopg2.Error as exc:
        log.error("database error: %s", first_line(exc))
        return ExitCode.DATABASE
    exit_code = ExitCode.OK
    for init_time in cycles:
        try:
            body = _prepare(job, spec, _context(job, init_time))
            log.info("dry run %s: inputs valid, request of %.1f MB ready; nothing sent, "
                     "nothing written", iso_utc(init_time), len(body) / 1e6)
        except JobError as exc:
            log.error("dry run %s: %s", iso_utc(init_time), exc)
            exit_code = exit_code or exc.exit_code
        except psycopg2.Error as exc:
            log.error("dry run %s: database error: %s", iso_utc(init_time), first_line(exc))
            return ExitCode.DATABASE
    return exit_code


def _log_summary(outcome: RunOutcome) -> None:
    """The one summary line of a run."""
    log.info("summary source=%s init_time=%s status=%s rows=%d clamped=%d %s exit=%d run_id=%s%s",
             outcome.source.value, iso_utc(outcome.init_time), outcome.status, outcome.rows_written,
             outcome.clamped, outcome.timings.summary(), int(outcome.exit_code), outcome.run_id,
             f" reason={outcome.reason!r}" if outcome.reason else "")
