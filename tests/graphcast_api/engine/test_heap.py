"""While the rule is held (a network call, a rollout) large blocks come from the heap and are
reused; after the last holder leaves, glibc's rule (large blocks mmapped) is back and the
freed memory is handed back to the system."""
from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest

from graphcast_api.engine import heap

pytestmark = pytest.mark.skipif(heap._LIBC is None, reason="glibc only (this is not glibc)")

BLOCK = 64 * 2 ** 20  # above glibc's largest mmap threshold (32 MiB)
# Larger than any free block the heap may hold from earlier tests (malloc serves a request from
# a free heap block before it thinks of mmap); np.empty leaves its pages untouched.
HUGE = 2 ** 30


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mmapped_blocks() -> int:
    """How many blocks malloc serves with their own mmap now."""
    mallinfo2 = heap._LIBC.mallinfo2
    mallinfo2.restype = _MallInfo2
    return mallinfo2().hblks


def _resident_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _mmaps_a_big_block() -> bool:
    before = _mmapped_blocks()
    block = np.empty(HUGE, np.uint8)
    mmapped = _mmapped_blocks() > before
    del block
    return mmapped


def test_big_blocks_come_from_the_heap_only_while_held() -> None:
    assert _mmaps_a_big_block()
    with heap.reuse_freed_memory():
        assert heap.active()
        assert not _mmaps_a_big_block()
        with heap.reuse_freed_memory():          # nested: still held
            assert not _mmaps_a_big_block()
        assert not _mmaps_a_big_block()
    assert not heap.active()
    assert _mmaps_a_big_block()


def test_the_rule_is_held_until_the_last_thread_leaves() -> None:
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with heap.reuse_freed_memory():
            inside.set()
            release.wait(10)

    other = threading.Thread(target=hold)
    other.start()
    assert inside.wait(10)
    with heap.reuse_freed_memory():
        pass
    assert heap.active() and not _mmaps_a_big_block()   # the other thread still holds it
    release.set()
    other.join(10)
    assert not heap.active() and _mmaps_a_big_block()


def _call_touching(mib: int) -> None:
    """A network call's worth: touch `mib` MiB in large blocks under the rule, free them."""
    with heap.reuse_freed_memory():
        blocks = [np.ones(BLOCK, np.uint8) for _ in range(mib * 2 ** 20 // BLOCK)]
        del blocks


def test_freed_memory_is_handed_back_after_a_call() -> None:
    baseline = _resident_mib()
    with heap.reuse_freed_memory():
        blocks = [np.ones(BLOCK, np.uint8) for _ in range(8)]   # 512 MiB, touched
        assert _resident_mib() > baseline + 400
        del blocks
        assert _resident_mib() > baseline + 400              # kept for reuse meanwhile
    assert _resident_mib() < baseline + 100


def test_a_rollout_keeps_what_its_steps_freed_until_it_ends() -> None:
    baseline = _resident_mib()
    with heap.reuse_freed_memory():                           # the rollout
        _call_touching(512)
        assert _resident_mib() > baseline + 400               # resident for the next step
        _call_touching(512)                                   # which reuses it
        assert _resident_mib() < baseline + 600
    assert not heap.active()
    assert _resident_mib() < baseline + 100
