"""Fair scheduling: every running lookup gets an equal share of the in-flight slots.

Shares are split first between *groups* (callers: the service passes the token's name, a
batch run its own name), then between the lookups of a group, and widen as others finish:
``ceil(limit / groups) / lookups in the group``, at least 1. Within a lookup, checks wait
in FIFO order, so candidates still go in tier order.

Without shares the first lookups would queue a whole pool's worth of checks each in the
checker and send them all before their hit's answer came back (24 lookups at once sent
1.7x the checks); with fixed shares the last lookup of a batch would crawl on a few slots
while the rest sat idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Hashable

__all__ = ["FairScheduler", "Gate"]


class Gate:
    """One lookup's door: at most its fair share of checks past it at once. Waiting here
    sends nothing, so checks a hit makes unnecessary cost nothing."""

    __slots__ = ("_active", "_scheduler", "_waiters", "group")

    def __init__(self, scheduler: FairScheduler, group: Hashable) -> None:
        self._scheduler = scheduler
        self.group = group
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def share(self) -> int:
        return self._scheduler.share(self.group)

    @property
    def active(self) -> int:
        return self._active

    def share_of(self, limit: int) -> int:
        """This gate's share of ``limit`` slots, were that the checker's limit."""
        return self._scheduler.share(self.group, limit)

    def try_enter(self) -> bool:
        if not self._waiters and self._active < self._scheduler.share(self.group):
            self._active += 1
            return True
        return False

    async def enter(self) -> None:
        if self.try_enter():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # granted, then cancelled
                self.leave()
            else:
                with contextlib.suppress(ValueError):  # wake() may have dropped it
                    self._waiters.remove(waiter)
            raise

    def leave(self) -> None:
        self._active -= 1
        if self._waiters:
            self.wake()

    def wake(self) -> None:
        """Let waiters in up to the share (the slot is counted for them here)."""
        limit = self._scheduler.share(self.group)
        while self._waiters and self._active < limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._active += 1
                waiter.set_result(None)


class FairScheduler:
    """Hands out :class:`Gate` objects and computes their shares of ``limit()``."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._groups: dict[Hashable, set[Gate]] = {}

    @property
    def lookups(self) -> int:
        return sum(len(g) for g in self._groups.values())

    def share(self, group: Hashable, limit: int | None = None) -> int:
        members = self._groups.get(group)
        n = len(members) if members else 1
        total = self._limit() if limit is None else limit
        per_group = -(-total // max(1, len(self._groups)))
        return max(1, -(-per_group // n))

    def open(self, group: Hashable = None) -> Gate:
        gate = Gate(self, group)
        self._groups.setdefault(group, set()).add(gate)
        return gate

    def close(self, gate: Gate) -> None:
        members = self._groups.get(gate.group)
        if members is not None:
            members.discard(gate)
            if not members:
                del self._groups[gate.group]
        self.wake_all()

    def wake_all(self) -> None:
        """Shares changed (a lookup left, the limit grew): let waiters in."""
        for members in self._groups.values():
            for gate in members:
                gate.wake()
