"""Batch runs, the library: many lookups over one shared checker (:func:`run_batch`).

Files (readers, the resumable journal, the writer, ``run_file``) are in
:mod:`lookup.files.run`; the ``lookup batch`` command is :mod:`lookup.cli.batch`.

Rows flow lazily from the reader to ``lookups_in_flight`` workers (never a task per row).
Every lookup's checks go through one :class:`~lookup.engine.checker.Checker`, so the global
limits (in flight, per second, retry budget, breaker) hold however many lookups run at
once. A row whose mask or hints are wrong (any :class:`~lookup.domain.errors.InputError`)
becomes an ``invalid`` result; it never stops the run.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypeAliasType

from lookup.domain.errors import ConfigError, InputError
from lookup.domain.models import HINT_FIELDS, MAX_SIGHTINGS, Counted, Hints
from lookup.domain.privacy import mask_phone
from lookup.domain.tiers import DEFAULT_MAX_CANDIDATES, TierName, plan
from lookup.engine.matcher import Mode, audit, match_plan

if TYPE_CHECKING:
    from lookup.domain.models import LookupResult
    from lookup.domain.segments import SegmentDB
    from lookup.engine.checker import Checker

__all__ = [
    "DEFAULT_LOOKUPS_IN_FLIGHT",
    "HINTS",
    "STATUSES",
    "BatchRow",
    "BatchSummary",
    "ResultCallback",
    "RowRegion",
    "RowResult",
    "RowStatus",
    "lookup_row",
    "run_batch",
]

log = logging.getLogger("lookup.batch")

RowStatus = TypeAliasType(
    "RowStatus", Literal["matched", "not_found", "inconclusive", "api_error", "invalid"]
)
STATUSES: Final[tuple[RowStatus, ...]] = (
    "matched",
    "not_found",
    "invalid",
    "inconclusive",
    "api_error",
)
DEFINITE: Final[frozenset[str]] = frozenset({"matched", "not_found", "invalid"})
"""Statuses that are an answer; the others are re-run by ``--retry-failed``."""
DEFAULT_LOOKUPS_IN_FLIGHT: Final = 8
HINTS: Final = HINT_FIELDS


# -- models ------------------------------------------------------------------------------


class BatchRow(Hints):
    """One input row: a mask, its optional hints and where it came from.

    ``row`` is its 1-based position among the data rows; ``id`` is the caller's (the row
    number when absent). Hints are read as :class:`~lookup.domain.models.Hints` reads them
    (stripped, blanks become ``None``, numbers become text). ``problem`` is set by a
    reader for a row it could not read: the row becomes ``invalid`` with that reason.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    row: int = Field(ge=1)
    id: str | int | None = None
    mask: str = ""
    also: tuple[Annotated[str, Field(max_length=64)], ...] = Field((), max_length=MAX_SIGHTINGS)
    """Other sightings of the same number (a file's ``also`` cell: masks separated by ``;``)."""
    problem: str | None = None

    @field_validator("mask", mode="before")
    @classmethod
    def _mask_text(cls, value: object) -> object:
        if value is None:
            return ""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value

    @field_validator("also", mode="before")
    @classmethod
    def _sightings(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, str):
            value = value.split(";")
        if isinstance(value, list | tuple):
            texts = [v.strip() if isinstance(v, str) else v for v in value]
            return tuple(v for v in texts if v != "")
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _id_scalar(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        return json.dumps(value, ensure_ascii=False)

    @property
    def key(self) -> str | int:
        """The id to report: the caller's, else the row number."""
        return self.id if self.id is not None else self.row


class RowRegion(BaseModel):
    """Where the matched number's segment is (all ``None`` for an unlocated segment)."""

    province: str | None = None
    city: str | None = None
    carrier: str | None = None
    area_code: str | None = None
    zip: str | None = None


class RowResult(Counted):
    """The answer for one row: a JSONL output line, and a journal line.

    ``invalid`` is a bad row (mask, hint, too many candidates); ``inconclusive`` and
    ``api_error`` are rows without a definite answer (re-run by ``--retry-failed``).
    ``hits`` lists every hit of the tier in ``mode="all"`` and is left out otherwise.
    """

    id: str | int
    row: int
    mask: str
    status: RowStatus
    phone: str | None = None
    tier: TierName | None = None
    region: RowRegion | None = None
    hits: list[str] | None = None
    numbers_checked: int = 0
    requests: int = 0
    elapsed_ms: float = 0.0
    reason: str | None = None

    @classmethod
    def invalid(cls, row: BatchRow, reason: str, elapsed_ms: float = 0.0) -> RowResult:
        return cls(id=row.key, row=row.row, mask=row.mask, status="invalid",
                   elapsed_ms=elapsed_ms, reason=reason)  # fmt: skip

    @classmethod
    def from_lookup(cls, row: BatchRow, result: LookupResult) -> RowResult:
        region = None
        if result.region is not None:
            r = result.region
            region = RowRegion(province=r.province, city=r.city, carrier=r.carrier,
                               area_code=r.area_code, zip=r.zip)  # fmt: skip
        reason = result.reason
        hits = None
        if result.mode == "all":
            hits = [h.phone for h in result.hits]
            if len(hits) > 1:
                note = f"ambiguous: {len(hits)} numbers of the {result.tier} tier have orders"
                reason = f"{note}; {reason}" if reason else note
        return cls(
            id=row.key,
            row=row.row,
            mask=row.mask,
            status=result.status,
            phone=result.phone,
            tier=result.tier,
            region=region,
            hits=hits,
            numbers_checked=result.numbers_checked,
            requests=result.requests,
            elapsed_ms=result.elapsed_ms,
            reason=reason,
        )

    @property
    def definite(self) -> bool:
        return self.status in DEFINITE

    def as_json(self) -> str:
        """The JSONL (and journal) line, without its newline."""
        data = self.model_dump(mode="json")
        if data["hits"] is None:
            del data["hits"]
        return json.dumps(data, ensure_ascii=False)

    def as_csv(self) -> list[object]:
        r = self.region or RowRegion()
        return [self.id, self.row, self.mask, self.status, self.phone or "", self.tier or "",
                r.province or "", r.city or "", r.carrier or "", self.requests,
                self.elapsed_ms, self.reason or ""]  # fmt: skip


class BatchSummary(Counted):
    """What :func:`run_batch` did: rows by status, numbers checked, requests, wall time."""

    rows: int = 0
    by_status: dict[RowStatus, int] = Field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    numbers_checked: int = 0
    requests: int = 0
    elapsed_s: float = 0.0

    def add(self, result: RowResult) -> None:
        self.rows += 1
        self.by_status[result.status] = self.by_status.get(result.status, 0) + 1
        self.numbers_checked += result.numbers_checked
        self.requests += result.requests

    @property
    def all_definite(self) -> bool:
        """Every row got an answer (matched, not_found or invalid)."""
        return all(n == 0 for s, n in self.by_status.items() if s not in DEFINITE)


# -- the library entry ----------------------------------------------------------------------

ResultCallback = Callable[[RowResult], Awaitable[None] | None]


async def lookup_row(
    row: BatchRow,
    *,
    checker: Checker,
    mode: Mode = "first",
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    caller: str = "batch",
    db: SegmentDB | None = None,
) -> RowResult:
    """Look up one row like :func:`~lookup.engine.matcher.find`; an input error becomes an
    ``invalid`` result instead of raising."""
    return await _lookup(row, checker, mode=mode, max_candidates=max_candidates,
                         caller=caller, db=db, group=caller)  # fmt: skip


async def _lookup(
    row: BatchRow, checker: Checker, *, mode: Mode, max_candidates: int, caller: str,
    db: SegmentDB | None, group: Hashable,
) -> RowResult:  # fmt: skip
    """:func:`~lookup.engine.matcher.find` for one row, as a lookup of ``group``."""
    if row.problem is not None:
        return RowResult.invalid(row, row.problem)
    if not row.mask:
        return RowResult.invalid(row, "no mask")
    t0 = time.perf_counter()
    try:
        plan_ = plan(row.mask, db, city=row.city, province=row.province,
                     area_code=row.area_code, zip=row.zip, carrier=row.carrier,
                     max_candidates=max_candidates, also=row.also)  # fmt: skip
    except InputError as exc:
        return RowResult.invalid(row, str(exc), round((time.perf_counter() - t0) * 1000, 3))
    result = await match_plan(plan_, checker, mode=mode, group=group)
    audit(result, caller)
    return RowResult.from_lookup(row, result)


RowLookup = Callable[[BatchRow], Awaitable["RowResult"]]
"""Runs one row (the one lookup path's ``row``)."""


def _puller(rows: Iterable[BatchRow] | AsyncIterable[BatchRow]) -> Callable[[], Awaitable[BatchRow | None]]:  # fmt: skip
    """``await pull()`` -> the next row or ``None``; safe for concurrent workers."""
    if isinstance(rows, AsyncIterable):
        ait = aiter(rows)
        lock = asyncio.Lock()  # an async generator must not be advanced by two tasks at once
        exhausted = False

        async def pull_async() -> BatchRow | None:
            nonlocal exhausted
            async with lock:
                if exhausted:
                    return None
                try:
                    return await anext(ait)
                except StopAsyncIteration:
                    exhausted = True
                    return None

        return pull_async
    it = iter(rows)

    async def pull() -> BatchRow | None:
        return next(it, None)

    return pull


async def run_batch(
    rows: Iterable[BatchRow] | AsyncIterable[BatchRow],
    *,
    checker: Checker,
    lookups_in_flight: int = DEFAULT_LOOKUPS_IN_FLIGHT,
    mode: Mode = "first",
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    on_result: ResultCallback | None = None,
    caller: str = "batch",
    db: SegmentDB | None = None,
    group: Hashable = None,
    lookup: RowLookup | None = None,
) -> BatchSummary:
    """Look up every row, ``lookups_in_flight`` at a time, over one shared ``checker``.

    Rows are pulled lazily by a fixed set of workers, so a million-row iterator costs
    ``lookups_in_flight`` tasks, not a million. The checker's fair scheduler gives each
    lookup an equal share of the in-flight slots (the batch is one group, ``caller``,
    next to the checker's other callers): together they keep the slots busy, a lookup
    that hits has few checks to waste, and the last lookups of a batch widen to the whole
    pool. The checker's own limits (rate, retries, breaker) hold for all of them together.

    ``lookup(row)``, when given, runs each row instead of the plain engine call: the shells
    pass :meth:`lookup.runtime.lookups.LookupPath.row`, the one lookup path (admission,
    audit, metrics, privacy); ``mode``, ``max_candidates``, ``caller`` and ``group`` are then
    its business.

    ``on_result(result)`` (sync or async) is called as each row finishes, in completion
    order; results carry ``row``, so callers can restore the input order. An exception
    it raises stops the batch and is raised here.

    Bad rows become ``invalid`` results; API trouble becomes ``inconclusive`` or
    ``api_error`` results (see :func:`~lookup.engine.matcher.find`). Nothing is raised for them.

    >>> checker = Checker(api, Limits(max_in_flight=32))  # doctest: +SKIP
    >>> summary = await run_batch(rows, checker=checker, on_result=results.append)
    """
    if lookups_in_flight < 1:
        raise ConfigError(f"lookups_in_flight must be at least 1, got {lookups_in_flight}")
    if mode not in ("first", "all"):
        raise ConfigError(f"mode must be 'first' or 'all', got {mode!r}")
    summary = BatchSummary()
    pull = _puller(rows)
    started = time.perf_counter()

    async def worker() -> None:
        while (row := await pull()) is not None:
            if lookup is not None:
                result = await lookup(row)
            else:
                result = await _lookup(row, checker, mode=mode, caller=caller,
                                       max_candidates=max_candidates, db=db,
                                       group=caller if group is None else group)  # fmt: skip
            summary.add(result)
            log.debug("row %d %s: %s, %d requests", result.row, mask_phone(result.mask),
                      result.status, result.requests)  # fmt: skip
            if on_result is not None:
                done = on_result(result)
                if inspect.isawaitable(done):
                    await done
            # An invalid row (or a cached answer) is done without waiting on anything: a
            # run of them would keep the loop from every other task (a service's requests).
            await asyncio.sleep(0)

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(lookups_in_flight):
                tg.create_task(worker())
    except BaseExceptionGroup as failures:
        # The first failure stopped the batch (workers failing in the same loop turn may
        # add more, often the same one): raise it, the group kept as its cause.
        raise failures.exceptions[0] from failures
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary
