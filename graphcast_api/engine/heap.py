"""Freed memory is reused while a forecast runs and handed back after it (glibc's malloc).

glibc serves every allocation above 32 MB with a fresh mmap and unmaps it when it is freed,
so each per-step temporary of the network (an 84 MB edge tensor at 1.0°, GBs at 0.25°) is
page-faulted in anew: the kernel zeroes every page of it, every time. On a 2-core host that
made an element-wise kernel over a GraphCast_small edge tensor 2.4× slower and a whole bf16
rollout 1.5× slower. While the rule is held (each network call, and a whole rollout: its
steps and the work between them), large blocks come from the heap instead and freed ones are
reused, not unmapped, so each step reuses the memory the one before it faulted in (handing
it back after each step and between the network's stages faulted 3.3 GiB in again every
0.25° step); when the last holder leaves, the mmap rule is restored and the freed memory is
handed back to the system (malloc_trim), so an idle service does not keep its peak.
Elsewhere than glibc (musl, macOS, Windows) it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import platform
import sys
import threading
from collections.abc import Iterator

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4             # mallopt parameters (malloc.h)
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65_536
_NEVER_TRIM = -1                                     # "disables trimming completely"


def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()
_lock = threading.Lock()
_holders = 0


def _set(trim_threshold: int, mmap_max: int) -> None:
    _LIBC.mallopt(_M_MMAP_MAX, mmap_max)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, trim_threshold)


@contextlib.contextmanager
def reuse_freed_memory() -> Iterator[None]:
    """Within: large allocations reuse freed heap memory. Nests and works across threads."""
    global _holders
    if _LIBC is None:
        yield
        return
    with _lock:
        _holders += 1
        if _holders == 1:
            _set(_NEVER_TRIM, 0)
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _set(_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX)
                _LIBC.malloc_trim(0)


def active() -> bool:
    """Whether the heap rule is held now (for tests)."""
    return _holders > 0
