"""FIFO slots: at most ``limit`` holders at once, served in arrival order, with a limit that
can change. The one slot class of the engine: the checker's concurrency limit and each
lookup's fair share (:mod:`lookup.engine.policies.fair`) are both :class:`FifoSlots`."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque

__all__ = ["ConcurrencyLimit", "FifoSlots"]


class FifoSlots:
    """A semaphore whose limit can shrink and grow at run time.

    ``asyncio.Semaphore`` cannot shrink; this is a counter and a FIFO of futures. A slot
    freed is handed to the oldest waiter and counted for it at once, so a newcomer cannot
    take it first. A shrunk limit wakes nobody until enough slots are released.

    :param limit: slots at first (at least 1).
    :param ceiling: the limit never grows above this (default: ``limit``).

    >>> slots = FifoSlots(2)
    >>> slots.try_acquire(), slots.try_acquire(), slots.try_acquire()
    (True, True, False)
    """

    __slots__ = ("_active", "_limit", "_waiters", "ceiling")

    def __init__(self, limit: int, *, ceiling: int | None = None) -> None:
        self.ceiling = ceiling if ceiling is not None else limit
        self._limit = max(1, min(limit, self.ceiling))
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def set_limit(self, limit: int) -> None:
        """Change the limit, within ``1 .. ceiling``; a larger one wakes waiters at once."""
        self._limit = max(1, min(int(limit), self.ceiling))
        if self._waiters:
            self._wake()

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued before us."""
        if self._active < self._limit and not self._waiters:
            self._active += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait for a slot (FIFO). Cancellation while waiting takes no slot."""
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted in the same step as the cancellation: pass it on
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self._active -= 1
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and self._active < self._limit:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self._active += 1


ConcurrencyLimit = FifoSlots
"""The checker's concurrency limit: at most N checks in flight (the name the engine used
before the fair share shared the class)."""

UNBOUNDED: int = sys.maxsize
"""A ceiling that never clamps (for slots whose limit is computed elsewhere)."""
