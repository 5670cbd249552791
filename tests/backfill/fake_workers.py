"""Stand-ins for `CycleWorker` without a model or a database, for the driver's tests: each
returns an outcome per cycle naming itself, or dies, or fails in the model."""
from __future__ import annotations

import os
from datetime import datetime

from graphcast_contract.errors import ExitCode
from graphcast_contract.sources import InputSource
from modules.job.ledger import RunOutcome

MODEL_FAILED = "in-process model failed: RuntimeError: NaN"


class FakeWorker:
    """`name` in the reason of each outcome; `broken`: its model does not load; `dies`: its
    process exits inside every cycle; `dies_on`: inside these cycles; `model_fails`: the
    cycles (all if None) that fail in the model (exit 4)."""

    def __init__(self, name: str, broken: bool = False, dies: bool = False,
                 dies_on: frozenset[datetime] = frozenset(),
                 model_fails: frozenset[datetime] | None = frozenset()) -> None:
        if broken:
            raise RuntimeError("no checkpoint on this node")
        self.name, self.dies, self.dies_on, self.model_fails = name, dies, dies_on, model_fails

    def model_info(self) -> str:
        return self.name

    def run_cycle(self, init_time: datetime, source: InputSource) -> RunOutcome:
        if self.dies or init_time in self.dies_on:
            os._exit(1)
        if self.model_fails is None or init_time in self.model_fails:
            return RunOutcome(None, init_time, source, "failed", ExitCode.API_FAILED,
                              MODEL_FAILED)
        return RunOutcome(None, init_time, source, "succeeded", ExitCode.OK, self.name)
