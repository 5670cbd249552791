"""Bounded admission, then one forecast at a time, both first come first served.

A forecast first takes one of `waiting_slots + 1` slots, before its body is read: at most that
many bodies are in memory at once. Then it waits for the model. The wait limit counts from
arrival to the start of the forecast.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

T = TypeVar("T")


class QueueTimeout(Exception):
    """The queue did not free up within the wait limit; retry after `retry_after_s`."""

    def __init__(self, waited_s: float, retry_after_s: int) -> None:
        super().__init__(f"the forecast queue did not free up within {waited_s:g} s")
        self.retry_after_s = retry_after_s


class ClientGone(Exception):
    """The client disconnected before its forecast ran: the forecast is not run. The message
    says when ("before its turn", "while sending its body")."""


class ForecastQueue:
    """Admits forecasts to a bounded number of slots, runs their jobs in a worker thread one
    at a time.

    `asyncio.Semaphore` and `asyncio.Lock` hand themselves to waiters in the order they
    started waiting (Python 3.11.1 and later).
    """

    def __init__(self, wait_limit_s: float, waiting_slots: int) -> None:
        self.wait_limit_s = wait_limit_s
        self.slots = waiting_slots + 1
        self._admission = asyncio.Semaphore(self.slots)
        self._model = asyncio.Lock()
        self._queued = 0  # forecasts holding or waiting for a slot
        self._last_run_s = 1.0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Hold a slot while the body is read and the forecast waits and runs; yields the
        deadline (time.monotonic) for the model to be free. QueueTimeout past the limit."""
        deadline = time.monotonic() + self.wait_limit_s
        self._queued += 1
        try:
            try:
                await asyncio.wait_for(self._admission.acquire(), self.wait_limit_s)
            except TimeoutError:
                raise QueueTimeout(self.wait_limit_s, self.retry_after_s()) from None
            try:
                yield deadline
            finally:
                self._admission.release()
        finally:
            self._queued -= 1

    async def run(self, job: Callable[[], T], deadline: float,
                  still_wanted: Callable[[], Awaitable[bool]]) -> T:
        """`job()`'s result once the model is free; QueueTimeout past `deadline`, ClientGone
        when `still_wanted()` says no at the forecast's turn."""
        remaining = max(deadline - time.monotonic(), 0.001)
        try:
            await asyncio.wait_for(self._model.acquire(), remaining)
        except TimeoutError:
            raise QueueTimeout(self.wait_limit_s, self.retry_after_s()) from None
        try:
            if not await still_wanted():
                raise ClientGone("before its turn")
            began = time.perf_counter()
            try:
                return await asyncio.to_thread(job)
            finally:
                self._last_run_s = time.perf_counter() - began
        finally:
            self._model.release()

    def retry_after_s(self) -> int:
        """Estimated seconds until a new request would start: queue length x last run time."""
        return max(1, math.ceil(self._last_run_s * (self._queued + 1)))
