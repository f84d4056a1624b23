"""The one journaled run (layer L3): what ``lookup batch`` and the service's jobs both call.

::

    with Journal.open(path, header) as journal:
        done = await run_journaled(journal, lambda: read_rows(src, "csv"),
                                   [OutputFile(out, "csv")], runner=runner,
                                   mode="first", max_candidates=20_000)

:func:`run_journaled` runs the rows of an input file that its journal lacks on a
:class:`RowRunner`, and for each result, in this order: redacts every text it carries
(through :mod:`lookup.domain.privacy`), appends it to the journal, and hands it to the
in-order writer. The writer sends rows to every output in input order through a bounded
reorder window: a row done early waits (at most ``window`` rows) for the rows before it,
and the reader stops handing out rows while the window is full. Rows the journal already
has (a resumed run) are copied from the journal file to the outputs at their place, read
one at a time. Memory is O(window), whatever the number of rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import ExitStack, aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from lookup.domain.privacy import Redactor
from lookup.engine.batch import (
    DEFAULT_LOOKUPS_IN_FLIGHT,
    STATUSES,
    BatchRow,
    BatchSummary,
    ResultCallback,
    RowLookup,
    RowResult,
    RowStatus,
    run_batch,
)
from lookup.files.journal import Journal
from lookup.files.write import OutputFile

if TYPE_CHECKING:
    from lookup.domain.segments import SegmentDB
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import Mode

__all__ = [
    "DEFAULT_WINDOW",
    "CheckerRunner",
    "JournaledRun",
    "RowRunner",
    "copy_journal",
    "redact_result",
    "run_journaled",
]

log = logging.getLogger("lookup.batch")

DEFAULT_WINDOW: Final = 4096
"""Rows the in-order writer may hold (done, waiting for an earlier row): with 8 lookups in
flight, one lookup 4,000 rows slower than the rest before the reader waits for it."""
_YIELD_EVERY: Final = 256


class RowRunner(Protocol):
    """What runs a file's pending rows: :class:`CheckerRunner`
    or Ray actors (``lookup.scale.ray``). ``run`` pulls rows from ``rows`` (it may wait:
    the window is full) and calls ``on_result`` once per row on this process's loop, where
    the run journals and writes it: the journal's guarantees hold wherever the lookups run."""

    @property
    def description(self) -> str: ...

    async def run(self, rows: AsyncIterator[BatchRow], *, mode: Mode, max_candidates: int,
                  on_result: ResultCallback) -> BatchSummary: ...  # fmt: skip


@dataclass(frozen=True)
class CheckerRunner:
    """Rows through :func:`~lookup.engine.batch.run_batch` over one checker, as the lookups
    of ``caller`` (the service's jobs: the job's owner)."""

    checker: Checker
    lookups_in_flight: int = DEFAULT_LOOKUPS_IN_FLIGHT
    caller: str = "batch"
    db: SegmentDB | None = None
    group: Hashable = None
    lookup: RowLookup | None = None
    """Runs each row instead of the plain engine call (the one lookup path's ``row``)."""
    description: str = "order API"

    async def run(self, rows: AsyncIterator[BatchRow], *, mode: Mode, max_candidates: int,
                  on_result: ResultCallback) -> BatchSummary:  # fmt: skip
        return await run_batch(rows, checker=self.checker, mode=mode,
                               lookups_in_flight=self.lookups_in_flight,
                               max_candidates=max_candidates, on_result=on_result,
                               caller=self.caller, db=self.db, group=self.group,
                               lookup=self.lookup)  # fmt: skip


@dataclass
class JournaledRun:
    """What :func:`run_journaled` did: this run's summary, the rows written by status."""

    summary: BatchSummary
    by_status: dict[RowStatus, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    kept: int = 0
    """Rows copied from the journal (done by an earlier run)."""
    written: int = 0


def redact_result(result: RowResult, redact: Callable[[str], str]) -> RowResult:
    """``result`` with every free text (the reason: API error texts, quoted input) redacted."""
    if not result.reason:
        return result
    reason = redact(result.reason)
    return result if reason == result.reason else result.model_copy(update={"reason": reason})


class _InOrder:
    """The bounded reorder window in front of the outputs."""

    def __init__(self, journal: Journal, outputs: Sequence[OutputFile], window: int,
                 retry_failed: bool, done: JournaledRun) -> None:  # fmt: skip
        self._journal = journal
        self._outputs = outputs
        self._window = max(1, window)
        self._retry_failed = retry_failed
        self._order: deque[tuple[int, bool]] = deque()  # (row, from the journal), in input order
        self._results: dict[int, RowResult] = {}
        self._room = asyncio.Event()
        self._done = done

    def _write(self, result: RowResult) -> None:
        for out in self._outputs:
            out.write(result)
        self._done.by_status[result.status] = self._done.by_status.get(result.status, 0) + 1
        self._done.written += 1

    def _drain(self) -> None:
        order, results = self._order, self._results
        while order:
            row, kept = order[0]
            if kept:
                self._write(self._journal.result(row))
                self._done.kept += 1
            elif row in results:
                self._write(results.pop(row))
            else:
                break
            order.popleft()
        if len(order) < self._window:
            self._room.set()

    def finish(self, result: RowResult) -> None:
        """A row looked up: out now, or when the rows before it are."""
        self._results[result.row] = result
        self._drain()

    async def feed(self, rows: Iterator[BatchRow]) -> AsyncGenerator[BatchRow, None]:
        """The rows to look up, handed out while the window has room; the journal's rows
        are written at their place on the way."""
        copied = 0
        for row in rows:
            while len(self._order) >= self._window:
                self._room.clear()
                await self._room.wait()
            kept = self._journal.done(row.row, retry_failed=self._retry_failed)
            self._order.append((row.row, kept))
            if not kept:
                yield row
                continue
            self._drain()
            copied += 1
            if copied % _YIELD_EVERY == 0:  # a long resume: give the loop its turn
                await asyncio.sleep(0)

    def close(self) -> None:
        self._drain()
        if self._order:  # every row read was looked up: this would be a bug
            raise RuntimeError(f"{len(self._order)} rows have no result")


async def run_journaled(
    journal: Journal,
    rows: Callable[[], Iterable[BatchRow]],
    outputs: Sequence[OutputFile],
    *,
    runner: RowRunner,
    mode: Mode,
    max_candidates: int,
    retry_failed: bool = False,
    redact: Callable[[str], str] | None = None,
    on_result: ResultCallback | None = None,
    on_start: Callable[[int, dict[str, int]], None] | None = None,
    total: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> JournaledRun:
    """Run the rows of ``rows()`` that ``journal`` lacks on ``runner``; every row, old and
    new, goes to each of ``outputs`` in input order. The journal must be entered (``with
    journal:``); the outputs are committed when every row is written, and left uncommitted
    (OUT untouched) when the run fails.

    ``redact`` (default :class:`~lookup.domain.privacy.Redactor`: numbers masked, URL
    credentials hidden) is applied to each result before the journal or an output sees
    it. ``on_start(total, done_by_status)`` is called once the journal's rows are counted
    (``total``: the rows of the input, when known); ``on_result(result)`` as each row
    finishes, after it is journaled.
    """
    redact = redact or Redactor()
    if total is not None:
        journal.check_rows(rows(), total)  # a forged or mixed-up record: refused up front
    if journal.torn_bytes:
        log.warning("ignored a torn last line of %s (%d bytes); its row is looked up again",
                    journal.name, journal.torn_bytes)  # fmt: skip
    if journal.unreadable:
        log.warning("%d lines of %s failed their checksum or did not parse (edited, or from "
                    "another journal); their rows are looked up again",
                    journal.unreadable, journal.name)  # fmt: skip
    counts: dict[str, int] = {}
    for row in journal.rows():
        if journal.done(row, retry_failed=retry_failed):
            status = journal.status(row)
            if status is not None:
                counts[status] = counts.get(status, 0) + 1
    kept = sum(counts.values())
    if kept:
        todo = "" if total is None else f", {total - kept:,} to look up"
        log.info("resuming from %s: %d rows done%s", journal.name, kept, todo)
    if on_start is not None:
        on_start(total if total is not None else kept, counts)
    done = JournaledRun(BatchSummary())
    with ExitStack() as stack:
        for out in outputs:
            stack.enter_context(out)
        order = _InOrder(journal, outputs, window, retry_failed, done)

        async def record(result: RowResult) -> None:
            result = redact_result(result, redact)
            journal.append(result)
            order.finish(result)
            if on_result is not None:
                called = on_result(result)
                if called is not None:
                    await called

        async with aclosing(order.feed(iter(rows()))) as feed:
            if total is not None and kept >= total:  # all done before: only copy them out
                async for _ in feed:
                    raise RuntimeError("a row the journal holds was handed out")
            else:
                log.info("batch of %s rows against the %s",
                         "the" if total is None else f"{total - kept:,}", runner.description)  # fmt: skip
                done.summary = await runner.run(feed, mode=mode, max_candidates=max_candidates,
                                                on_result=record)  # fmt: skip
        order.close()
        for out in outputs:
            out.commit()
    return done


def copy_journal(journal: Journal, outputs: Sequence[OutputFile]) -> JournaledRun:
    """Write every row ``journal`` holds to ``outputs`` in row order, one at a time (the
    results of a job that stopped part way), and commit them."""
    done = JournaledRun(BatchSummary())
    with ExitStack() as stack:
        for out in outputs:
            stack.enter_context(out)
        for row in journal.rows():
            result = journal.result(row)
            for out in outputs:
                out.write(result)
            done.by_status[result.status] = done.by_status.get(result.status, 0) + 1
            done.written += 1
        done.kept = done.written
        for out in outputs:
            out.commit()
    return done
