"""A tier's pass: a pool of workers pulling its candidates, and what a failed check means.

For each tier a pool of workers pulls candidates (or chunks of them, when the API has a
batch endpoint) from the tier's lazy iterator: never one task per candidate. A pass starts
one worker, and the rest of its pool once that worker waits for an answer (answers that
never wait, from the outcome cache, keep a lookup to one task). A positive answer ends the
tier: nothing new is sent for the lookup, the workers still waiting are cancelled, and a
request already on the wire is left to land.

A check that failed after the checker's retries is sent again half a second later (then
1, 2, 4, 8 s), between fresh candidates, when the retry budget has a token; what is still
unanswered at the end of the pass is retried by :func:`retry_deferred` at the retry
budget's pace until the tier's time is up. A failed check is never a "no". The walk over
the tiers and the result are :mod:`lookup.engine.matcher`'s.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from lookup.domain.errors import (
    CircuitOpenError,
    FatalApiError,
    OrderApiError,
    TransientApiError,
)
from lookup.domain.models import CheckOutcome, Mode
from lookup.engine.checkstate import CheckHalted, Checks, CheckStats, DeadlineReached

__all__ = [
    "CheckMany",
    "Item",
    "PassRun",
    "Progress",
    "Stop",
    "TierRun",
    "retry_deferred",
    "run_pass",
]

log = logging.getLogger("lookup.matcher")  # the matcher's logger: its passes are its own

Progress = Callable[[str, int, int], None]
"""``progress(tier, answered, count)``: called as checks of a tier get answers."""

Item = tuple[int, str]  # (position in the tier, number)

# A check that failed in a tier's first pass is sent again this long after (doubling each
# time it fails, up to the cap), between fresh candidates, when the retry budget has a
# token: a hit whose first check failed is then found in about this time, not after the
# whole rest of its tier.
_REQUEUE_AFTER = 0.5
_REQUEUE_CAP = 8.0


CheckMany = Callable[[Sequence[str], CheckStats], Awaitable[Mapping[str, CheckOutcome]]]


@dataclass(frozen=True)
class Stop:
    """A fatal answer or a breaker that stayed open: the lookup ends as api_error."""

    error: OrderApiError


@dataclass(eq=False)
class TierRun:
    """One tier's state, shared by its workers (one event loop, no locks)."""

    name: str
    count: int
    mode: Mode
    progress: Progress | None
    checked: int = 0
    errors: int = 0
    found: bool = False
    failed: list[Item] = field(default_factory=list)
    requeued: collections.deque[tuple[float, float, list[Item]]] = field(
        default_factory=collections.deque
    )  # (ready at, delay, chunk): failed in the first pass, sent again when the budget allows
    hits: list[tuple[int, str, CheckOutcome]] = field(default_factory=list)
    stop: Stop | None = None
    timed_out: bool = False  # the lookup's deadline came with candidates of this tier unsent
    workers: list[tuple[asyncio.Task[None], CheckStats]] = field(default_factory=list)

    def resend_due(
        self, now: float, take_token: Callable[[], bool] | None
    ) -> tuple[float, list[Item]] | None:
        """The first resend that is due, with its next delay, if the budget has a token."""
        q = self.requeued
        if not q or q[0][0] > now or take_token is None or not take_token():
            return None
        _, delay, batch = q.popleft()
        return min(delay * 2.0, _REQUEUE_CAP), batch

    def resend_later(self, batch: list[Item], now: float, delay: float) -> None:
        self.requeued.append((now + delay, delay, batch))

    def answered(self, n: int) -> None:
        self.checked += n
        if self.progress is not None:
            self.progress(self.name, self.checked, self.count)

    def end(self, stop: Stop | None = None) -> None:
        """Nothing new for this lookup: halt every worker, cancel those not on the wire."""
        if stop is not None and self.stop is None:
            self.stop = stop
        self.found = self.found or stop is None
        current = asyncio.current_task()
        for task, stats in self.workers:
            stats.halt = True
            if task is not current and not stats.on_wire:
                task.cancel()


@dataclass
class PassRun:
    """What a pass needs besides the tier: how to check, and when to give up."""

    checks: Checks
    workers: int
    batch: int
    deadline: float
    clock: Callable[[], float]
    retry_wait: Callable[[float], Awaitable[bool]] | None
    many: CheckMany | None
    retry_now: Callable[[], bool] | None = None
    stats: CheckStats = field(default_factory=CheckStats)
    chunk_size: Callable[[], int] | None = None  # the adaptive size of a first-pass chunk


async def _worker(
    items: Iterator[Item], run: TierRun, r: PassRun, stats: CheckStats, chunk: int, retry: bool,
    until: float, sized: bool = False, grow: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """A worker of a source with a batch endpoint: chunks through ``r.many``. ``grow``:
    called once, as it takes its first chunk (the pool's first worker)."""
    checks = r.checks
    while not run.found and run.stop is None:
        now = r.clock()
        due = None if retry or now >= until else run.resend_due(now, r.retry_now)
        delay = 0.0  # > 0: a resend of the first pass, next time after this long
        if due is not None:
            delay, batch = due
        else:
            if retry and r.retry_wait is not None and not await r.retry_wait(until):
                return  # the tier's time is up: the rest stays unresolved
            size = r.chunk_size() if sized and r.chunk_size is not None else chunk
            batch = [item for _, item in zip(range(size), items, strict=False)]
            if not batch:
                return
            if grow is not None:
                grow()
                grow = None
        if r.clock() >= until:
            run.failed.extend(batch)
            return
        stats.deferred = retry or delay > 0  # a resend: counted as a retry, token refunded
        try:
            if r.many is not None and len(batch) > 1:
                answers = await r.many([p for _, p in batch], stats)
                outcomes = [(i, p, answers[p]) for i, p in batch]
            else:
                i, p = batch[0]
                outcomes = [(i, p, await checks.check(p, stats))]
        except Exception as exc:  # noqa: BLE001 - sorted out by _failed, never a "no"
            if _failed(exc, batch, run, r, retry, delay):
                return
            continue
        run.answered(len(outcomes))
        positive = [o for o in outcomes if o[2].has_orders]
        if positive:
            run.hits.extend(positive)
            if run.mode == "first":
                run.end()
                return


async def _one_worker(
    items: Iterator[Item], run: TierRun, r: PassRun, stats: CheckStats, retry: bool, until: float,
    grow: Callable[[], None] | None = None,
) -> None:  # fmt: skip
    """A worker checking one number at a time (no batch endpoint): :func:`_worker` without
    a list or a tuple per check, and no clock read while the tier has no time limit."""
    check = r.checks.check
    clock = r.clock
    bounded = until < math.inf
    while not run.found and run.stop is None:
        delay = 0.0  # > 0: a resend of the first pass, next time after this long
        due = None
        if run.requeued and not retry:
            now = clock()
            if now < until:
                due = run.resend_due(now, r.retry_now)
        if due is not None:
            delay, batch = due
            item = batch[0]
        else:
            if retry and r.retry_wait is not None and not await r.retry_wait(until):
                return  # the tier's time is up: the rest stays unresolved
            fresh = next(items, None)
            if fresh is None:
                return
            item = fresh
            if grow is not None:
                grow()
                grow = None
        if bounded and clock() >= until:
            run.failed.append(item)
            return
        stats.deferred = retry or delay > 0  # a resend: counted as a retry, token refunded
        i, p = item
        try:
            outcome = await check(p, stats)
        except Exception as exc:  # noqa: BLE001 - sorted out by _failed, never a "no"
            if _failed(exc, [item], run, r, retry, delay):
                return
            continue
        run.checked += 1
        if run.progress is not None:
            run.progress(run.name, run.checked, run.count)
        if outcome.has_orders:
            run.hits.append((i, p, outcome))
            if run.mode == "first":
                run.end()
                return


def _failed(
    exc: Exception, batch: list[Item], run: TierRun, r: PassRun, retry: bool, delay: float
) -> bool:
    """A check (or chunk) of ``batch`` raised ``exc``: what it means for the tier.
    ``True``: the worker stops."""
    if isinstance(exc, CheckHalted):
        return True
    if isinstance(exc, DeadlineReached):  # not the API's failure: unresolved, the time is up
        run.failed.extend(batch)
        run.timed_out = True
        return True
    if isinstance(exc, TransientApiError):
        if retry or r.retry_now is None:
            run.failed.extend(batch)  # to the next retry pass
        else:
            run.resend_later(batch, r.clock(), delay or _REQUEUE_AFTER)
        run.errors += len(batch)
        return False
    if isinstance(exc, OrderApiError):  # fatal, or the breaker stayed open until the deadline
        if retry and isinstance(exc, CircuitOpenError):
            run.failed.extend(batch)  # deferred checks the breaker kept out: unresolved
            return True
        run.end(Stop(exc))
        return True
    # A plug-in's bug: report it, don't read it as a "no".
    log.error("the order API raised %s", type(exc).__name__, exc_info=exc)
    run.end(Stop(FatalApiError(f"the order API raised {type(exc).__name__}: {exc}")))
    return True


async def run_pass(
    items: Iterable[Item], n: int, run: TierRun, r: PassRun, *, chunk: int = 1,
    retry: bool = False, until: float = math.inf, sized: bool = False,
) -> None:  # fmt: skip
    """Check ``items`` (``n`` of them) with a pool of workers; stop early on a hit.
    ``sized``: chunks take the adaptive size (``r.chunk_size``) rather than ``chunk``."""
    it = iter(items)
    units = -(-n // chunk)
    size = max(1, min(r.workers, units))
    tasks: list[tuple[asyncio.Task[None], CheckStats]] = []
    running = True

    def spawn(grow: Callable[[], None] | None = None) -> None:
        stats = CheckStats(deferred=retry)
        if r.many is None:  # one number per check (chunk is 1)
            work = _one_worker(it, run, r, stats, retry, until, grow)
        else:
            work = _worker(it, run, r, stats, chunk, retry, until, sized, grow)
        tasks.append((asyncio.create_task(work), stats))

    def grow() -> None:
        # The first worker is still waiting for an answer: start the rest of the pool. A
        # lookup whose answers never wait (the outcome cache) keeps its one worker.
        if running and not tasks[0][0].done() and not run.found and run.stop is None:
            while len(tasks) < size:
                spawn()

    def grow_soon() -> None:  # the first worker takes its first item
        asyncio.get_running_loop().call_soon(grow)

    run.workers = tasks
    spawn(grow_soon if size > 1 else None)
    try:
        # Cancelled workers end quietly; a request on the wire lands before its worker ends.
        done = 0
        while done < len(tasks):  # workers started meanwhile are awaited too
            started = len(tasks)
            outcomes = await asyncio.gather(
                *(t for t, _ in tasks[done:started]), return_exceptions=True
            )
            done = started
            for outcome in outcomes:
                if isinstance(outcome, Exception):  # a bug of ours: never swallowed
                    raise outcome
    finally:
        running = False
        for t, _ in tasks:
            t.cancel()
        for _, stats in tasks:
            r.stats.add(stats)
        run.workers = []
        while run.requeued:  # not sent again in this pass: the retry pass has them
            run.failed.extend(run.requeued.popleft()[2])
    if not run.found and run.stop is None:
        run.failed.extend(it)  # what the workers left when the tier's time ran out


async def retry_deferred(run: TierRun, r: PassRun, until: float) -> None:
    """Retry what failed at the retry budget's pace until ``until`` (or a hit, in order)."""
    chunk = r.batch
    while run.failed and not (run.hits and run.mode == "first") and run.stop is None:
        if r.clock() >= until:
            return
        failed, run.failed = sorted(run.failed), []
        chunk = max(1, chunk // 2)  # a failed chunk is retried split: one bad number sinks fewer
        log.info("%s tier: retrying %d deferred candidates at the retry budget's pace "
                 "(%.0f s left for the tier)", run.name, len(failed), until - r.clock())  # fmt: skip
        await run_pass(failed, len(failed), run, r, chunk=chunk, retry=True, until=until)
        if run.hits and run.mode == "all" and not run.failed:
            return
