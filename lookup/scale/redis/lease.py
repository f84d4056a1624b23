"""Start slots leased from the shared budget, served in this process without a round trip.

A lease is a block of ``count`` consecutive slots of the shared GCRA, granted by one Redis
call (:data:`~lookup.scale.redis.scripts.ADMIT`). This process starts at most ``count``
requests from it, spaced at least one interval apart, from the block's first slot until
the block's *end* (its first slot plus the longer of its slots' span and
:data:`LEASE_SPAN`). A slot not used by then is lost, never banked: no burst after idle
time. So every start comes at or after the slot reserved for it and at most
:data:`LEASE_SPAN` later, and over any window the combined starts of every process exceed
the budget by at most :data:`LEASE_SPAN` of it (less than the 2 % headroom paced under
the ceiling at 20 ms).

:class:`Leases` is the local part only (no I/O, times on the local clock): what
:class:`~lookup.scale.redis.quota.RedisQuota` asks before and after its Redis calls.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["LEASE_SPAN", "MAX_LEASE", "Block", "Leases"]

LEASE_SPAN = 0.02
"""Seconds of the shared budget one lease takes at most, and the longest a leased slot may
wait for its start."""
MAX_LEASE = 4096
"""Slots in one lease at most."""


class Block:
    """One lease: ``left`` slots from ``first`` (local clock) until ``end``."""

    __slots__ = ("count", "end", "first", "interval", "left", "redis_end", "redis_first")

    def __init__(
        self, count: int, first: float, interval: float, redis_first: str, redis_end: str
    ) -> None:
        self.count = self.left = count
        self.first = first
        self.interval = interval
        self.end = first + max(count * interval, LEASE_SPAN)
        self.redis_first = redis_first  # the slots as Redis knows them (for a return)
        self.redis_end = redis_end


class Leases:
    """The blocks this process holds, oldest first, and the local spacing between starts."""

    __slots__ = ("_asked_at", "_blocks", "_taken_at_ask", "_want", "last", "left", "next")

    def __init__(self) -> None:
        self._blocks: deque[Block] = deque()
        self.next = -math.inf  # no start before this (local spacing)
        self.left = 0  # slots left in every block (some may have expired: see try_take)
        self.last = -math.inf  # local clock time of the latest start (or reserved slot)
        self._want = 1  # slots asked for in the last lease
        self._asked_at = -math.inf  # local clock time of the last ask
        self._taken_at_ask = 0  # starts counted then

    def __bool__(self) -> bool:
        return bool(self._blocks)

    @property
    def tail(self) -> Block | None:
        """The latest block (the only one that can be given back)."""
        return self._blocks[-1] if self._blocks else None

    @property
    def booked_until(self) -> float:
        """Local clock time of the latest slot reserved (``-inf``: none)."""
        return self.next

    def size(self, now: float, taken: int, leased_before: bool, most: int) -> int:
        """Slots to ask for now: what this process started (``taken`` in all) per
        :data:`LEASE_SPAN` since its last ask (twice the last lease when that one ran out
        while callers waited), at least one, at most ``most``."""
        since = taken - self._taken_at_ask
        elapsed = now - self._asked_at
        want = math.ceil(since / elapsed * LEASE_SPAN) if elapsed > 0 and since > 0 else 1
        if not self._blocks and leased_before and since >= self._want:
            want = max(want, 2 * self._want)
        self._want = want = max(1, min(want, most))
        self._asked_at, self._taken_at_ask = now, taken
        return want

    def add(self, block: Block) -> None:
        self._blocks.append(block)
        self.left += block.left

    def clear(self) -> int:
        """Forget every block (a throttle, a pause, a return, Redis away); the slots left."""
        left = self.left
        self._blocks.clear()
        self.left = 0
        return left

    def try_take(self, now: float) -> bool:
        """Start now if a block serves ``now`` and the spacing allows (the fast path)."""
        if now < self.next:
            return False
        blocks = self._blocks
        while blocks:
            block = blocks[0]
            if now >= block.end:
                self.left -= block.left
                blocks.popleft()
                continue
            if now < block.first:
                return False
            self._take(block)
            self.next = now + block.interval
            self.last = now
            return True
        return False

    def reserve(self, now: float, deadline: float) -> float | None:
        """The slot (clock time) reserved for a caller that will sleep until it; ``None``
        when no block can serve one (lease more), ``math.inf`` when the slot would come
        after ``deadline`` (nothing reserved). A slot that serves now, or a block's first
        (granted in time by Redis, received a round trip later), is never late."""
        blocks = self._blocks
        while blocks:
            block = blocks[0]
            slot = max(now, self.next, block.first)
            if slot >= block.end:
                self.left -= block.left
                blocks.popleft()
                continue
            if slot > deadline and slot > max(now, block.first):
                return math.inf
            self._take(block)
            self.next = slot + block.interval
            self.last = slot
            return slot
        return None

    def _take(self, block: Block) -> None:
        block.left -= 1
        self.left -= 1
        if block.left == 0:
            self._blocks.popleft()
