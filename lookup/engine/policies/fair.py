"""Fair scheduling: every running lookup gets an equal share of the in-flight slots.

Shares are split first between *groups* (callers: the service passes the token's name, a
batch run its own name), then between the lookups of a group, and widen as others finish:
``ceil(limit / groups) / lookups in the group``, at least 1. Within a lookup, checks wait
in FIFO order, so candidates still go in tier order.

A share is computed when shares change (a lookup opens or closes, the checker's limit
moves: :meth:`FairScheduler.rebalance`), not per check: a :class:`Gate` is a
:class:`~lookup.engine.policies.concurrency.FifoSlots` whose limit is its share.

Without shares the first lookups would queue a whole pool's worth of checks each in the
checker and send them all before their hit's answer came back (24 lookups at once sent
1.7x the checks); with fixed shares the last lookup of a batch would crawl on a few slots
while the rest sat idle.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from lookup.engine.policies.concurrency import UNBOUNDED, FifoSlots

__all__ = ["FairScheduler", "Gate"]


class Gate(FifoSlots):
    """One lookup's door: at most its fair share of checks past it at once (FIFO). Waiting
    here sends nothing, so checks a hit makes unnecessary cost nothing."""

    __slots__ = ("_scheduler", "group")

    def __init__(self, scheduler: FairScheduler, group: Hashable) -> None:
        super().__init__(1, ceiling=UNBOUNDED)
        self._scheduler = scheduler
        self.group = group

    @property
    def share(self) -> int:
        """Checks this lookup may have in flight now (its limit)."""
        return self._limit

    def share_of(self, limit: int) -> int:
        """This gate's share of ``limit`` slots, were that the checker's limit."""
        return self._scheduler.share(self.group, limit)

    # The names the checker's lookup view uses.
    try_enter = FifoSlots.try_acquire
    enter = FifoSlots.acquire
    leave = FifoSlots.release

    def wake(self) -> None:
        """Let waiters in up to the share (the slot is counted for them here)."""
        self._wake()


class FairScheduler:
    """Hands out :class:`Gate` objects and sets their shares of ``limit()``."""

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
        self.rebalance()
        return gate

    def close(self, gate: Gate) -> None:
        members = self._groups.get(gate.group)
        if members is not None:
            members.discard(gate)
            if not members:
                del self._groups[gate.group]
        self.rebalance()

    def rebalance(self) -> None:
        """Shares changed (a lookup came or left, the limit moved): set every gate's share;
        a wider one lets its waiters in."""
        total = self._limit()
        per_group = -(-total // max(1, len(self._groups)))
        for members in self._groups.values():
            share = max(1, -(-per_group // len(members)))
            for gate in members:
                gate.set_limit(share)

    wake_all = rebalance
