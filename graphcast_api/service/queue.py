"""One forecast at a time, first come first served, with a bounded wait."""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class QueueTimeout(Exception):
    """The queue did not free up within the wait limit; retry after `retry_after_s`."""

    def __init__(self, waited_s: float, retry_after_s: int) -> None:
        super().__init__(f"the forecast queue did not free up within {waited_s:g} s")
        self.retry_after_s = retry_after_s


class ForecastQueue:
    """Runs blocking jobs in a worker thread one at a time, in arrival order.

    `asyncio.Lock` hands the lock to its waiters in the order they started waiting.
    """

    def __init__(self, wait_limit_s: float) -> None:
        self.wait_limit_s = wait_limit_s
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._last_run_s = 1.0

    async def run(self, job: Callable[[], T]) -> T:
        """`job()`'s result once its turn came; QueueTimeout past the wait limit."""
        self._waiting += 1
        try:
            await asyncio.wait_for(self._lock.acquire(), self.wait_limit_s)
        except TimeoutError:
            raise QueueTimeout(self.wait_limit_s, self.retry_after_s()) from None
        finally:
            self._waiting -= 1
        began = time.perf_counter()
        try:
            return await asyncio.to_thread(job)
        finally:
            self._last_run_s = time.perf_counter() - began
            self._lock.release()

    def retry_after_s(self) -> int:
        """Estimated seconds until a new request would start: queue length x last run time."""
        return max(1, math.ceil(self._last_run_s * (self._waiting + 1)))
