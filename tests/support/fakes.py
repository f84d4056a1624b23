"""The one fake clock of the tests: virtual monotonic time for policies, the checker, the
matcher, the mock server's fault windows, the job store and the Ray token budget.

:class:`FakeTime` is a clock (call it, or pass ``time.clock``) whose ``now`` a test moves by
hand, and an ``asyncio.sleep`` stand-in (``time.sleep``) in one of two modes:

* timers (the default): ``sleep(d)`` parks on a timer at ``now + d``; a driver task lets
  every runnable task run (:attr:`FakeTime.SETTLE` loop turns), then fires the earliest
  timer and moves ``now`` to it. For many concurrent sleepers (the checker, the matcher).
* ``step=True``: ``sleep(d)`` moves ``now`` by ``d`` at once and yields one loop turn. For
  one policy driven by one caller, where the order of sleeps is the test's own.

Every sleep asked for is recorded in ``sleeps``.
"""

from __future__ import annotations

import asyncio
import heapq

__all__ = ["FakeTime"]


class FakeTime:
    SETTLE = 20
    """Loop turns the driver lets pass before it fires the next timer."""

    def __init__(self, now: float = 0.0, *, step: bool = False) -> None:
        self.now = now
        self.step = step
        self.sleeps: list[float] = []
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._driver: asyncio.Task[None] | None = None

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if self.step:
            self.now += max(delay, 0.0)
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(delay, 0.0), self._seq, fut))
        self._seq += 1
        if self._driver is None:
            self._driver = asyncio.create_task(self._drive())
        await fut

    async def _drive(self) -> None:
        try:
            while self._timers:
                for _ in range(self.SETTLE):
                    await asyncio.sleep(0)
                deadline, _, fut = heapq.heappop(self._timers)
                if not fut.done():  # a cancelled sleeper just drops out
                    self.now = max(self.now, deadline)
                    fut.set_result(None)
        finally:
            self._driver = None

    async def idle(self) -> None:
        """Wait until no timer is pending."""
        while self._driver is not None:
            await self._driver
