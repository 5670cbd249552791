"""The driver against a real local Ray instance with stand-in workers (no model, no
database): workers dead for good are left out, a model failing every cycle stops the
backfill, and no more workers are started than the cluster has room for."""
from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from backfill import driver
from backfill.driver import BackfillOptions, Placement
from graphcast_contract.errors import ExitCode
from graphcast_contract.project import PROJECT_ROOT
from graphcast_contract.sources import InputSource
from tests.backfill.fake_workers import FakeWorker
from tests.backfill.helpers import FIRST_CYCLE, stop_ray_processes

CPUS = 4  # of the local Ray instance: one CLUSTER_WORKER_CPUS worker, or 4 one-CPU workers
CYCLES = [FIRST_CYCLE + timedelta(hours=6 * k) for k in range(6)]


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    import ray

    ray_dir = Path(tempfile.mkdtemp(prefix="rd-"))  # short: Ray's socket paths
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(ray_dir),
                 runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}})
        yield
        ray.shutdown()
    stop_ray_processes(ray_dir)


def workers(*kinds: dict) -> list:
    """One stand-in worker per `kinds` entry (FakeWorker's options), as the driver starts
    its own (same restarts and retries)."""
    actor = driver.worker_actor(FakeWorker, Placement(len(kinds), 1, 0))
    return [actor.remote(f"w{k}", **kind) for k, kind in enumerate(kinds)]


def dispatch(workers: list, cycles: list, source: InputSource) -> int:
    """The driver's dispatch, with no Ctrl-C."""
    return driver._dispatch(workers, cycles, source, driver._StopFlag())


def summary(caplog: pytest.LogCaptureFixture) -> str:
    return next(r.getMessage() for r in caplog.records if "backfill summary" in r.getMessage())


@pytest.mark.parametrize("lost", [{"broken": True}, {"dies": True}],
                         ids=["model does not load", f"killed {driver.TASK_RETRIES + 1} times"])
def test_a_worker_dead_for_good_is_left_out_and_the_other_does_every_cycle(
    ray_instance: None, caplog: pytest.LogCaptureFixture, lost: dict
) -> None:
    caplog.set_level(logging.INFO)
    code = dispatch(workers(lost, {}), CYCLES, InputSource.ERA5)
    assert code == ExitCode.OK, caplog.text
    assert f"{len(CYCLES)} succeeded, 0 skipped, 0 failed, 0 not run" in summary(caplog)
    assert "a worker died for good and is left out (1 left)" in caplog.text


def test_no_worker_left_stops_with_one_error(
    ray_instance: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    code = dispatch(workers({"broken": True}, {"broken": True}), CYCLES,
                            InputSource.ERA5)
    assert code == ExitCode.CLUSTER_UNREACHABLE, caplog.text
    assert f"0 succeeded, 0 skipped, 0 failed, {len(CYCLES)} not run" in summary(caplog)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("no worker left"), errors


def test_a_cycle_that_kills_every_worker_fails_once_and_the_others_run(
    ray_instance: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    poison = {"dies_on": frozenset(CYCLES[:1])}
    code = dispatch(workers(poison, poison), CYCLES, InputSource.ERA5)
    assert code != ExitCode.OK, caplog.text
    assert f"{len(CYCLES) - 1} succeeded, 0 skipped, 1 failed, 0 not run" in summary(caplog)
    assert "lost two workers for good" in caplog.text
    deaths = [r for r in caplog.records if "a worker died for good" in r.getMessage()]
    assert len(deaths) == 2, caplog.text


def test_a_model_failing_every_cycle_stops_the_backfill(
    ray_instance: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    code = dispatch(workers({"model_fails": None}, {"model_fails": None}), CYCLES,
                            InputSource.ERA5)
    assert code == ExitCode.API_FAILED
    stop = driver.MODEL_FAILURES_TO_STOP
    # the cycle running on the other worker when the last failure came finishes too
    assert any(f"0 succeeded, 0 skipped, {failed} failed, {len(CYCLES) - failed} not run"
               in summary(caplog) for failed in (stop, stop + 1)), summary(caplog)
    assert f"the model failed {stop} cycles" in caplog.text


def test_a_single_cycle_failing_in_the_model_does_not_stop_it(
    ray_instance: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fails = frozenset(CYCLES[1:1 + driver.MODEL_FAILURES_TO_STOP - 1])  # one short of a stop
    code = dispatch(workers({"model_fails": fails}), CYCLES, InputSource.ERA5)
    assert code == ExitCode.API_FAILED
    assert (f"{len(CYCLES) - len(fails)} succeeded, 0 skipped, {len(fails)} failed, 0 not run"
            in summary(caplog))


class _Spec:
    """ModelSpec.from_reply's stand-in: the reply is the worker's name."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def from_reply(cls, reply: str) -> _Spec:
        return cls(reply)

    def check_wanted(self, *wanted: object) -> None:
        pass


def test_the_model_spec_comes_from_a_worker_that_loaded_it(
    ray_instance: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "ModelSpec", _Spec)
    settings = type("Settings", (), {"variables": (), "lead_hours": ()})()
    spec = driver._model_spec(workers({"broken": True}, {}), settings, driver._StopFlag())
    assert spec.name == "w1"
    with pytest.raises(driver.ModelLoadError, match="no checkpoint on this node"):
        driver._model_spec(workers({"broken": True}, {"broken": True}), settings,
                           driver._StopFlag())


@pytest.mark.parametrize("asked", [None, 1, 3])
def test_no_more_workers_than_the_cluster_has_room_for(
    ray_instance: None, caplog: pytest.LogCaptureFixture, asked: int | None
) -> None:
    """4 CPUs hold one CLUSTER_WORKER_CPUS worker: a second would never start."""
    options = BackfillOptions(FIRST_CYCLE, FIRST_CYCLE, model=None, workers=asked,
                              cluster="auto")
    assert driver._placement(options) == Placement(1, driver.CLUSTER_WORKER_CPUS, 0)
    assert ("the Ray cluster has room for 1 workers" in caplog.text) == (asked == 3)


@pytest.mark.parametrize(("asked", "placed"), [(2, Placement(2, 2, 0)), (9, Placement(4, 1, 0))])
def test_local_workers_are_at_most_one_per_core(
    ray_instance: None, caplog: pytest.LogCaptureFixture, asked: int, placed: Placement
) -> None:
    """A local instance of 4 CPUs: --workers 9 started 9 model-holding workers (~4 GiB each)."""
    options = BackfillOptions(FIRST_CYCLE, FIRST_CYCLE, model=None, workers=asked)
    assert driver._placement(options) == placed
    assert ("this machine has 4 cores; starting 4" in caplog.text) == (asked == 9)


def test_room_counts_each_live_node_apart() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 6.0}},
             {"Alive": True, "Resources": {"CPU": 6.0, "GPU": 2.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
             {"Alive": True, "Resources": {"CPU": 1.0, "GPU": 4.0}}]
    assert driver._room(nodes, Placement(1, 4, 0)) == 2  # 12 CPUs, but 6 + 6 on two nodes
    assert driver._room(nodes, Placement(1, 1, 1)) == 3  # 2, and 1 for lack of CPUs
