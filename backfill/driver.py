"""The backfill driver: plan the cycles, start or join Ray, hand cycles to the workers.

Order: check the range and the settings, connect to the database, check that the store has
inputs in the range, start or join Ray, start the workers (each loads the model once), leave
out the cycles that already succeeded for this model and source, then keep one cycle in
flight per worker until all are done. Ctrl-C stops handing out cycles; those running finish
(or roll back), the summary is printed and the exit code says the backfill was interrupted; a
second Ctrl-C (or one before the first cycle is handed out) stops at once.
"""
from __future__ import annotations

import logging
import os
import re
import signal
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from types import FrameType, ModuleType
from typing import Any

import psutil
import psycopg2
from psycopg2.extensions import connection as Connection

from backfill.progress import Progress
from backfill.worker import CycleWorker
from config.settings import Settings
from graphcast_api.settings import CacheFolderUnwritable, ServiceSettings, use_kernel_cache
from graphcast_contract.cycles import INPUT_OFFSETS, cycles_between, iso_utc
from graphcast_contract.errors import (
    ClusterError,
    ConfigError,
    ExitCode,
    JobError,
    MissingDataError,
    first_line,
)
from graphcast_contract.model_spec import ModelSpec
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import InputSource
from graphcast_contract.urls import is_loopback_host
from modules.forecast_job import verify_stored
from modules.job import ledger
from modules.job.ledger import RunOutcome
from modules.job.sites import load_sites
from modules.storage.db import open_database, resolve_url

log = logging.getLogger("forecast_job")

WORKER_MEMORY_BYTES = 4 * 1024**3  # one worker's model and inference (GraphCast_small, 1 deg)
CLUSTER_WORKER_CPUS = 4  # CPUs (torch threads) of one CPU worker on a cluster
TASK_RETRIES = 3  # times a cycle is retried when its worker dies (the actor restarts)
# Cycles failing in the model (exit 4) with no success between them that stop the backfill:
# a model that fails every cycle stops it, a single failing cycle does not.
MODEL_FAILURES_TO_STOP = 3
WAIT_S = 0.5  # how often the driver looks up from waiting (Ctrl-C, progress)
_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # terminal colours in Ray's error messages
# Ray's multi-node switch (on by default on Linux), read once when Ray is first imported. Off,
# a new local instance takes 127.0.0.1 as its node address, and then every one of its
# processes (GCS, raylet, workers, agents) listens on loopback only, not on all interfaces.
RAY_MULTI_NODE_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class BackfillOptions:
    """The `--backfill` command line: range, source, workers, cluster, model, verify."""

    start: datetime
    end: datetime
    model: ServiceSettings
    source: InputSource | None = None
    workers: int | None = None  # None: what this machine (or the cluster) allows
    cluster: str | None = None  # ray://HOST:PORT or auto; None: a local Ray instance
    verify: bool = False


class ModelLoadError(JobError):
    """The workers could not load the model (checkpoint, statistics, device)."""

    exit_code = ExitCode.MODEL_FAILED


class CacheFolderError(JobError):
    """The engine's cache folder (graphs, compiled kernels) cannot be written on this machine."""

    exit_code = ExitCode.OUTPUT_FAILED


@dataclass(frozen=True)
class Placement:
    """How many workers, and the CPUs (torch threads) and GPUs each takes."""

    workers: int
    cpus: int
    gpus: int


def run_backfill(settings: Settings, options: BackfillOptions) -> int:
    """Run the backfill; return the process exit code (INTERRUPTED after a Ctrl-C before the
    cycles are handed out, while Ray starts or the workers load the model, or a second one).

    Ctrl-C raises KeyboardInterrupt here even in a process started with SIGINT ignored (the
    background of a non-interactive shell, and whatever it starts), where Python installs no
    handler of its own.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _run_backfill(settings, options)
    except KeyboardInterrupt:
        log.warning("Ctrl-C: backfill stopped")
        return ExitCode.INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_backfill(settings: Settings, options: BackfillOptions) -> int:
    source = options.source or settings.source
    try:
        cycles = _cycles(options)
        if options.cluster and not settings.database_url:
            raise ConfigError("--cluster needs DATABASE_URL: the embedded database is a local "
                              "socket that other machines cannot reach")
        if options.model.checkpoint is None:
            raise ConfigError("--backfill needs the model: --checkpoint or "
                              "GRAPHCAST_API_CHECKPOINT")
        if not options.cluster:
            _check_cache_folder(options.model)
        sites = load_sites(settings.sites_file)
        conn = open_database(settings)
    except JobError as exc:
        log.error("%s", exc)
        return exc.exit_code
    try:
        _check_inputs(conn, source, cycles)
        database_url = resolve_url(settings.database_url, settings.embedded_pg_dir)
        return _on_ray(conn, settings, options, source, cycles,
                       lambda placement: _start_workers(placement, settings, database_url,
                                                        sites, options.model))
    except JobError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except psycopg2.Error as exc:
        log.error("database error: %s", first_line(exc))
        return ExitCode.DATABASE
    finally:
        conn.close()


def _check_cache_folder(model: ServiceSettings) -> None:
    """CacheFolderError before Ray starts when the local workers could not write their cache
    folder (they would each fail to load the model: exit 12, the wrong cause). On a cluster
    each node has its own folder, which its workers report."""
    try:
        use_kernel_cache(model.cache_dir)
    except CacheFolderUnwritable as exc:
        raise CacheFolderError(str(exc)) from None


def _cycles(options: BackfillOptions) -> list[datetime]:
    try:
        return cycles_between(options.start, options.end)
    except ValueError as exc:
        raise ConfigError(f"--backfill {exc}") from None


def _check_inputs(conn: Connection, source: InputSource, cycles: list[datetime]) -> None:
    """MissingDataError when the store has no input frame of `source` at all for the range
    (cycles with some frames missing are tried, and skipped with their reason)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM input_fields WHERE source = %s"
                    " AND valid_time BETWEEN %s AND %s)",
                    (source, cycles[0] + min(INPUT_OFFSETS), cycles[-1] + max(INPUT_OFFSETS)))
        if not cur.fetchone()[0]:
            raise MissingDataError(f"no {source.label} input in the store from "
                                   f"{iso_utc(cycles[0])} to "
                                   f"{iso_utc(cycles[-1])}: load it first (graphcast-inputs)")


def _on_ray(conn: Connection, settings: Settings, options: BackfillOptions,
            source: InputSource, cycles: list[datetime], start_workers: Any) -> int:
    """Join or start Ray, run the cycles on its workers, leave Ray (a local one stops)."""
    ray = _import_ray(options)
    try:
        with _StopFlag() as stop:
            _join_ray(options)
            stop.check()
            placement = _placement(options)
            workers = start_workers(placement)
            spec = _model_spec(workers, settings, stop)
            todo = ledger.without_success(conn, cycles, source, spec.model)
            log.info("backfill %s to %s (%s, model %s): %d cycles, %d already done; %d workers "
                     "x %d CPUs%s", iso_utc(cycles[0]), iso_utc(cycles[-1]), source.value,
                     spec.model, len(cycles), len(cycles) - len(todo), placement.workers,
                     placement.cpus, f" + {placement.gpus} GPU" if placement.gpus else "")
            exit_code = _dispatch(workers, todo, source, stop)
    finally:
        ray.shutdown()
    if options.verify and exit_code != ExitCode.INTERRUPTED:
        verify_stored(conn)
    return exit_code


def _import_ray(options: BackfillOptions) -> ModuleType:
    """Ray, imported with its multi-node switch off for a local instance (no `--cluster`):
    a local instance reachable from the network would run anyone's code, and its workers
    hold DATABASE_URL."""
    if not options.cluster:
        os.environ[RAY_MULTI_NODE_VARIABLE] = "0"
    import ray

    return ray


def _join_ray(options: BackfillOptions) -> None:
    """Join the cluster of `--cluster`, else start a local instance on loopback only (Ray
    imported by `_import_ray`); workers import this checkout (its root on PYTHONPATH: on a
    cluster, the same path on every node)."""
    import ray

    if not options.cluster:
        address = ray.util.get_node_ip_address()  # the one a new local instance takes
        if not is_loopback_host(address):
            raise ClusterError(f"a local Ray instance would listen on {address}, beyond this "
                               f"machine (Ray was imported before {RAY_MULTI_NODE_VARIABLE}=0 "
                               "was set); not starting it")

    runtime_env = {"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}}
    try:
        if options.cluster:
            ray.init(address=options.cluster, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False,
                     runtime_env=runtime_env, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, grpc errors...
        raise ClusterError(f"cannot join the Ray cluster at {options.cluster}: "
                           f"{type(exc).__name__}: {first_line(exc)}" if options.cluster else
                           f"cannot start a local Ray instance: {first_line(exc)}") from None


def _local_workers() -> int:
    """Workers this machine allows: one per core, as far as the memory available now holds a
    model each. psutil reads it on every platform (os.sysconf is absent on Windows, and
    macOS has no SC_AVPHYS_PAGES)."""
    memory = psutil.virtual_memory().available
    return max(1, min(os.cpu_count() or 1, memory // WORKER_MEMORY_BYTES))


def _placement(options: BackfillOptions) -> Placement:
    """One GPU per worker where the cluster has GPUs; else this machine's cores shared out
    (local: --workers 1 on 2 cores runs 2 torch threads) or CLUSTER_WORKER_CPUS each. On a
    cluster (or with GPUs) as many workers as its nodes have room for, at most: a worker
    without room would never start, and the driver would wait for it forever."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    if not gpus and not options.cluster:  # the local instance: at most a worker per core
        if options.workers and options.workers > cpus:  # each holds a model (~4 GiB)
            log.warning("--workers %d: this machine has %d cores; starting %d",
                        options.workers, cpus, cpus)
        workers = min(options.workers or _local_workers(), cpus)
        return Placement(workers, max(1, cpus // workers), 0)
    each = Placement(1, 1, 1) if gpus else Placement(1, CLUSTER_WORKER_CPUS, 0)
    room = _room(ray.nodes(), each)
    need = f"{each.cpus} CPUs" + (f" and {each.gpus} GPU" if each.gpus else "")
    if not room:
        raise ClusterError(f"no node of the Ray cluster has the {need} a worker needs")
    if options.workers and options.workers > room:
        log.warning("--workers %d: the Ray cluster has room for %d workers (%s each); "
                    "starting %d", options.workers, room, need, room)
    return Placement(min(options.workers or room, room), each.cpus, each.gpus)


def _room(nodes: list[dict], each: Placement) -> int:
    """How many workers of `each` (CPUs and GPUs) the live nodes of `ray.nodes()` hold."""
    room = 0
    for node in nodes:
        if node.get("Alive"):
            resources = node.get("Resources", {})
            fits = int(resources.get("CPU", 0)) // each.cpus
            if each.gpus:
                fits = min(fits, int(resources.get("GPU", 0)) // each.gpus)
            room += fits
    return room


def _start_workers(placement: Placement, settings: Settings, database_url: str,
                   sites: tuple, model: ServiceSettings) -> list[Any]:
    actor = worker_actor(CycleWorker, placement)
    return [actor.remote(settings, database_url, sites, model, placement.cpus)
            for _ in range(placement.workers)]


def worker_actor(worker_class: type, placement: Placement) -> Any:
    """`worker_class` as a Ray actor class with one worker's resources; Ray restarts a dead
    worker TASK_RETRIES times in its life (then it is dead for good) and retries its task."""
    import ray

    return ray.remote(worker_class).options(
        num_cpus=placement.cpus, num_gpus=placement.gpus, max_restarts=TASK_RETRIES,
        max_task_retries=TASK_RETRIES)


def _model_spec(workers: list[Any], settings: Settings, stop: _StopFlag) -> ModelSpec:
    """The model's description, from the first worker that has loaded the model (one that
    could not is left out by `_dispatch`); ModelLoadError when none could; KeyboardInterrupt
    after a Ctrl-C (`stop`)."""
    import ray

    pending = [worker.model_info.remote() for worker in workers]
    while True:
        ready, pending = ray.wait(pending, num_returns=1, timeout=WAIT_S)
        stop.check()
        if not ready:
            continue
        try:
            spec = ModelSpec.from_reply(ray.get(ready[0]))
            break
        except ray.exceptions.RayError as exc:
            if not pending:
                raise ModelLoadError(f"the workers could not load the model: "
                                     f"{_one_line(exc)}") from None
    spec.check_wanted(settings.variables, settings.lead_hours)
    return spec


def _cause(exc: Exception) -> Exception:
    """The worker's own exception inside Ray's wrapper, where there is one."""
    cause = getattr(exc, "cause", None) or getattr(exc, "error", None)
    return cause if isinstance(cause, Exception) else exc


def _dispatch(workers: list[Any], todo: list[datetime], source: InputSource,
              stop: _StopFlag) -> int:
    """Keep one cycle in flight per live worker (see _Dispatch); Ctrl-C (`stop`) stops
    handing out new ones, a second one stops at once (the running cycles roll back when Ray
    ends their workers). With no worker left, the remaining cycles are not run
    (ClusterError's code)."""
    dispatch = _Dispatch(workers, todo, source)
    with Progress(len(todo)) as progress:
        try:
            dispatch.run(stop, progress)
        except KeyboardInterrupt:  # the second Ctrl-C
            log.warning("second Ctrl-C: stopping now; the %d running cycles roll back",
                        len(dispatch.in_flight))
            dispatch.queue.extend(init_time for _, init_time in dispatch.in_flight.values())
    exit_code = progress.summary(dispatch.outcomes, not_run=len(dispatch.queue),
                                 interrupted=stop.by_user)
    if dispatch.queue and not dispatch.idle and not dispatch.in_flight and not stop.set:
        error = ClusterError("no worker left: every worker died for good (killed "
                             f"{TASK_RETRIES + 1} times, or its model did not load); "
                             f"{len(dispatch.queue)} cycles not run")
        log.error("%s", error)
        return error.exit_code
    return exit_code


class _Dispatch:
    """The cycles queued, the workers idle, the tasks in flight, the outcomes so far.

    A worker dead for good (killed TASK_RETRIES + 1 times, or its model did not load) is left
    out and its cycle put back in the queue: once if the worker had started (a cycle that
    kills every worker it runs on fails on the second), always if it never had (it ran
    nothing).
    """

    def __init__(self, workers: list[Any], todo: list[datetime], source: InputSource) -> None:
        self.queue, self.idle, self.source = deque(todo), list(workers), source
        self.in_flight: dict[Any, tuple[Any, datetime]] = {}
        self.outcomes: list[RunOutcome] = []
        self._lost_a_worker: set[datetime] = set()
        self._model_failures = 0  # exit-4 outcomes since the last success

    def run(self, stop: _StopFlag, progress: Progress) -> None:
        """Hand out cycles and collect outcomes until none is in flight and none can start."""
        import ray

        while self.in_flight or (self.queue and self.idle and not stop.set):
            while self.queue and self.idle and not stop.set:
                worker, init_time = self.idle.pop(), self.queue.popleft()
                self.in_flight[worker.run_cycle.remote(init_time, self.source)] = (worker,
                                                                                  init_time)
            done, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_S)
            for ref in done:
                outcome = self._collect(ref)
                if outcome is not None:
                    progress.record(outcome)
                    stop.set = self._stops(outcome) or stop.set

    def _collect(self, ref: Any) -> RunOutcome | None:
        """The finished task's outcome, its worker idle again if alive; None when the cycle
        went back to the queue (its worker died for good)."""
        import ray

        worker, init_time = self.in_flight.pop(ref)
        try:
            outcome = ray.get(ref)
            self.idle.append(worker)
        except ray.exceptions.ActorDiedError as exc:
            log.warning("a worker died for good and is left out (%d left): %s",
                        len(self.idle) + len(self.in_flight), _one_line(exc))
            if not exc.actor_init_failed and init_time in self._lost_a_worker:
                outcome = _failed(init_time, self.source,
                                  f"lost two workers for good: {_one_line(exc)}")
            else:
                if not exc.actor_init_failed:
                    self._lost_a_worker.add(init_time)
                self.queue.appendleft(init_time)
                return None
        except ray.exceptions.RayError as exc:
            outcome = _failed(init_time, self.source, f"worker error: {_one_line(exc)}")
            self.idle.append(worker)
        self.outcomes.append(outcome)
        return outcome

    def _stops(self, outcome: RunOutcome) -> bool:
        """Whether no new cycle should start after `outcome`: the database failed (the next
        cycles would fail the same way), or the model failed MODEL_FAILURES_TO_STOP cycles
        with no success between them."""
        if outcome.status == "succeeded":
            self._model_failures = 0
        elif outcome.exit_code == ExitCode.API_FAILED:
            self._model_failures += 1
        if outcome.exit_code == ExitCode.DATABASE:
            return True
        if self._model_failures == MODEL_FAILURES_TO_STOP:
            log.error("the model failed %d cycles with no success between them: no new "
                      "cycles", self._model_failures)
            return True
        return False


def _failed(init_time: datetime, source: InputSource, reason: str) -> RunOutcome:
    """The outcome of a cycle that ended in Ray, not in the job (no ledger row of its own)."""
    error = JobError(reason)
    return RunOutcome(None, init_time, source, error.status, error.exit_code, str(error))


def _one_line(exc: Exception) -> str:
    """Ray's error on one line, without the colours of its traceback: for a worker that
    failed in its constructor (the model did not load), the last line of the traceback (the
    constructor's own exception); else the first line of the worker's exception."""
    import ray

    if isinstance(exc, ray.exceptions.RayActorError) and exc.actor_init_failed:
        lines = str(exc).strip().splitlines()
        return _COLOURS.sub("", lines[-1] if lines else type(exc).__name__)
    return _COLOURS.sub("", first_line(_cause(exc)))


class _StopFlag:
    """SIGINT (Ctrl-C) sets the flag instead of raising, for the `with` block; a second one
    raises KeyboardInterrupt. Before the first cycle is handed out, `check` raises at the next
    step: an interrupt raised by the handler itself would be lost when it lands while Ray
    forks its processes (Python ignores exceptions in fork handlers: logging has one)."""

    def __init__(self) -> None:
        self.set = False
        self.by_user = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.by_user:
            raise KeyboardInterrupt
        self.set = self.by_user = True
        log.warning("Ctrl-C: no new cycles; waiting for the running ones to finish "
                    "(Ctrl-C again to stop now)")

    def check(self) -> None:
        """KeyboardInterrupt if Ctrl-C was pressed (start-up: nothing to wait for)."""
        if self.by_user:
            raise KeyboardInterrupt

    def __enter__(self) -> _StopFlag:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)
