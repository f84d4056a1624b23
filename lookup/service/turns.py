"""Fair turns at the job slots, and what one caller may have waiting for them.

:class:`Turns` hands out ``slots`` places to run; when a place frees, it goes to the
waiting caller with the fewest jobs running, among equals to the one whose last turn is
oldest (a caller new to the queue first), and to that caller's oldest job. Callers thus
take turns: one with twenty queued jobs holds at most the slots it had when another
caller's job arrived, and that job starts as soon as one of them ends, never behind all
twenty.

:class:`JobCaps` bounds what one caller may have queued or running at once: jobs, rows
and bytes of uploads; past a cap a new job is refused (:class:`JobQuotaError`, a 429).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from lookup.domain.errors import LookupFailure

__all__ = ["DEFAULT_JOB_CAPS", "JobCaps", "JobQuotaError", "Turns"]


class JobQuotaError(LookupFailure):
    """A caller already has as many jobs, rows or bytes queued or running as it may."""

    retry_after: int = 30


@dataclass(frozen=True)
class JobCaps:
    """What one caller may have queued or running at once (ended jobs do not count)."""

    jobs: int = 20
    rows: int = 200_000
    bytes: int = 256 * 2**20

    def check(self, jobs: int, rows: int, size: int) -> None:
        """Refuse a new job that would take a caller past a cap; ``jobs``, ``rows`` and
        ``size`` are the caller's totals *with* the new job.

        :raises JobQuotaError: naming the cap, what the caller has, and what to do.
        """
        wait = "wait for one to end, or cancel one (DELETE /v1/jobs/{id})"
        if jobs > self.jobs:
            had = f"{jobs - 1:,} job{'s' if jobs - 1 != 1 else ''}"
            raise JobQuotaError(f"you have {had} queued or running, at most {self.jobs:,} at "
                                f"once: {wait}")  # fmt: skip
        if rows > self.rows:
            raise JobQuotaError(f"this job would make {rows:,} rows queued or running for you, "
                                f"at most {self.rows:,} at once: {wait}, or split the file")  # fmt: skip
        if size > self.bytes:
            raise JobQuotaError(f"this job would make {size / 2**20:,.1f} MiB of uploads queued "
                                f"or running for you, at most {self.bytes / 2**20:,.0f} MiB: "
                                f"{wait}")  # fmt: skip


DEFAULT_JOB_CAPS: Final = JobCaps()


class Turns:
    """``slots`` places to run, handed out fairly between callers (see the module)."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self.running: Counter[str] = Counter()
        self._waiting: dict[int, tuple[str, asyncio.Future[None]]] = {}
        self._seq = itertools.count()
        self._served: dict[str, int] = {}  # a caller's last turn (while it has jobs here)

    @property
    def busy(self) -> int:
        return sum(self.running.values())

    def waiting(self) -> list[str]:
        """The callers of the jobs waiting, oldest first (for tests and logs)."""
        return [owner for owner, _ in self._waiting.values()]

    @contextlib.asynccontextmanager
    async def turn(self, owner: str) -> AsyncIterator[None]:
        """Wait for a place for one of ``owner``'s jobs and hold it inside the block."""
        if self.busy < self.slots and not self._waiting:
            self._give(owner)
        else:
            seq = next(self._seq)
            got: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting[seq] = (owner, got)
            try:
                await got
            except asyncio.CancelledError:
                if self._waiting.pop(seq, None) is None and not got.cancelled():
                    self._release(owner)  # handed a place in the same instant: pass it on
                else:
                    self._forget(owner)
                raise
        try:
            yield
        finally:
            self._release(owner)

    def _give(self, owner: str) -> None:
        self.running[owner] += 1
        self._served[owner] = next(self._seq)

    def _forget(self, owner: str) -> None:
        if owner not in self.running and all(o != owner for o, _ in self._waiting.values()):
            self._served.pop(owner, None)

    def _release(self, owner: str) -> None:
        self.running[owner] -= 1
        if self.running[owner] <= 0:
            del self.running[owner]
        self._forget(owner)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting and self.busy < self.slots:
            first: dict[str, int] = {}  # each caller's oldest waiting job
            for seq, (owner, _) in self._waiting.items():
                first.setdefault(owner, seq)
            seq = min(first.values(), key=lambda s: self._rank(self._waiting[s][0], s))
            owner, got = self._waiting.pop(seq)
            if got.done():  # its job was cancelled while it waited
                self._forget(owner)
                continue
            self._give(owner)
            got.set_result(None)

    def _rank(self, owner: str, seq: int) -> tuple[int, int, int]:
        return self.running[owner], self._served.get(owner, -1), seq
