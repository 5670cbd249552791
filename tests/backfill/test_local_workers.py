"""How many workers a local backfill starts without --workers: from the cores and the
available memory, read portably (Windows has no os.sysconf, macOS no SC_AVPHYS_PAGES)."""
from __future__ import annotations

import os
from collections import namedtuple

import psutil
import pytest

from backfill import driver

Memory = namedtuple("Memory", "available")


@pytest.mark.parametrize("models", [0, 1, 3, 10_000])
def test_workers_without_os_sysconf(monkeypatch: pytest.MonkeyPatch, models: int) -> None:
    monkeypatch.delattr(os, "sysconf", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(psutil, "virtual_memory",
                        lambda: Memory(models * driver.WORKER_MEMORY_BYTES + 1))
    assert driver._local_workers() == max(1, min(8, models))


def test_workers_from_this_machines_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert 1 <= driver._local_workers() <= (os.cpu_count() or 1)
