"""Batch runs: many masks from a CSV or JSONL file, one shared checker, a resumable journal.

::

    lookup batch masks.csv --out results.jsonl --api URL [--resume] [--retry-failed]

Rows flow lazily from the reader to ``lookups_in_flight`` workers (never a task per row).
Every lookup's checks go through one :class:`~lookup.checker.Checker`, so the global
limits (in flight, per second, retry budget, breaker) hold however many lookups run at
once. A row whose mask or hints are wrong (any :class:`~lookup.errors.InputError`)
becomes an ``invalid`` result; it never stops the run.

The journal ``OUT.journal`` makes a run resumable after a crash or ``kill -9``:

* line 1 is a header binding it to the input (path, size, sha256 of the content) and to
  the settings that change answers (order API, hit field, method, mode, max_candidates);
  resuming with anything different is refused, naming what changed;
* then one JSON line per finished row, appended and flushed as the row finishes, in
  completion order. The line is the very record the output holds for that row, so a
  resumed run reproduces it byte for byte without asking the API again. When a row
  appears more than once (``--retry-failed``), its last record wins;
* a torn last line (the process died mid-write) is cut off on resume and its row redone.

OUT is rendered from the journal at the end, in input order, through a temporary file and
an atomic rename: it is absent, the previous version, or complete. The journal is kept so
that ``--resume --retry-failed`` can re-run the rows that ended without a definite answer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import hashlib
import inspect
import io
import json
import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Literal, Self, TextIO, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lookup.candidates import DEFAULT_MAX_CANDIDATES, TierName, TierPlan, plan
from lookup.checker import CheckStats
from lookup.errors import ConfigError, InputError, LookupFailure
from lookup.matcher import Mode, audit, match_plan
from lookup.orders.base import mask_phone

if TYPE_CHECKING:
    from lookup.checker import Checker
    from lookup.models import CheckOutcome, Limits, LookupResult
    from lookup.segments import SegmentDB
    from lookup.settings import Settings

__all__ = [
    "DEFAULT_LOOKUPS_IN_FLIGHT",
    "BatchProgress",
    "BatchRow",
    "BatchSummary",
    "Journal",
    "RowRegion",
    "RowResult",
    "RowStatus",
    "cmd_batch",
    "detect_format",
    "journal_header",
    "journal_path",
    "lookup_row",
    "read_rows",
    "run_batch",
    "write_output",
]

log = logging.getLogger("lookup.batch")

RowStatus = Literal["matched", "not_found", "inconclusive", "api_error", "invalid"]
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
CSV_COLUMNS: Final = (
    "id", "row", "mask", "status", "phone", "tier", "province", "city", "carrier", "checks",
    "elapsed_ms", "reason",
)  # fmt: skip
HINTS: Final = ("city", "province", "area_code", "zip", "carrier")
_JOURNAL_KIND: Final = "lookup batch journal"
_JOURNAL_VERSION: Final = 1

InputFormat = Literal["csv", "jsonl"]


# -- models ------------------------------------------------------------------------------


class BatchRow(BaseModel):
    """One input row: a mask, its optional hints and where it came from.

    ``row`` is its 1-based position among the data rows; ``id`` is the caller's (the row
    number when absent). Hint values are stripped, blanks become ``None`` and numbers
    (``"area_code": 571`` in JSON) become text. ``problem`` is set by a reader for a row it
    could not read: the row becomes ``invalid`` with that reason.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    row: int = Field(ge=1)
    id: str | int | None = None
    mask: str = ""
    city: str | None = None
    province: str | None = None
    area_code: str | None = None
    zip: str | None = None
    carrier: str | None = None
    problem: str | None = None

    @field_validator("city", "province", "area_code", "zip", "carrier", mode="before")
    @classmethod
    def _hint_text(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("mask", mode="before")
    @classmethod
    def _mask_text(cls, value: object) -> object:
        if value is None:
            return ""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value

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


class RowResult(BaseModel):
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
    checks_sent: int = 0
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
            checks_sent=result.checks_sent,
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
                r.province or "", r.city or "", r.carrier or "", self.checks_sent,
                self.elapsed_ms, self.reason or ""]  # fmt: skip


class BatchSummary(BaseModel):
    """What :func:`run_batch` did: rows by status, checks sent, wall time."""

    rows: int = 0
    by_status: dict[RowStatus, int] = Field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    checks_sent: int = 0
    elapsed_s: float = 0.0

    def add(self, result: RowResult) -> None:
        self.rows += 1
        self.by_status[result.status] = self.by_status.get(result.status, 0) + 1
        self.checks_sent += result.checks_sent

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
    """Look up one row like :func:`~lookup.matcher.find`; an input error becomes an
    ``invalid`` result instead of raising."""
    return await _lookup(row, checker, lambda _: checker.limits.max_in_flight, mode=mode,
                         max_candidates=max_candidates, caller=caller, db=db)  # fmt: skip


async def _lookup(
    row: BatchRow, checker: Checker, workers: Callable[[TierPlan], int], *, mode: Mode,
    max_candidates: int, caller: str, db: SegmentDB | None,
) -> RowResult:  # fmt: skip
    """:func:`~lookup.matcher.find`, with the number of workers chosen from the plan."""
    if row.problem is not None:
        return RowResult.invalid(row, row.problem)
    if not row.mask:
        return RowResult.invalid(row, "no mask")
    t0 = time.perf_counter()
    try:
        plan_ = plan(row.mask, db, city=row.city, province=row.province,
                     area_code=row.area_code, zip=row.zip, carrier=row.carrier,
                     max_candidates=max_candidates)  # fmt: skip
    except InputError as exc:
        return RowResult.invalid(row, str(exc), round((time.perf_counter() - t0) * 1000, 3))
    result = await match_plan(plan_, checker, mode=mode, max_in_flight=workers(plan_))
    audit(result, caller)
    return RowResult.from_lookup(row, result)


# A worker is a task, created per tier and cancelled at a hit (tens of µs each): a lookup
# gets one spare worker (beyond its share) per this many candidates of its largest tier.
_CANDIDATES_PER_SPARE_WORKER: Final = 16


class _FairShare:
    """Splits a shared checker's ``max_in_flight`` among the lookups running right now.

    Every lookup of a batch sees the shared checker through a :class:`_LookupView` that
    lets at most ``ceil(max_in_flight / lookups running)`` of its checks into the checker
    at once. Together the lookups fill the checker's slots; alone (the tail of a batch, or
    one big lookup among quick ones) a lookup widens to all of them. Without a share, the
    first lookups would queue a whole pool's worth of checks each in the checker's FIFO
    and send them all before their hit's answer came back; with a fixed share, the last
    lookup of a batch would crawl on a few slots while the rest sat idle.
    """

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.views: set[_LookupView] = set()

    def limit(self) -> int:
        """A lookup's share now: ``ceil(max_in_flight / lookups running)``."""
        return -(-self.checker.limits.max_in_flight // max(1, len(self.views)))

    def workers(self, plan_: TierPlan) -> int:
        """Workers for a lookup: its share now, more if it is big enough to widen later."""
        biggest = max((t.count for t in plan_.tiers), default=0)
        spare = -(-biggest // _CANDIDATES_PER_SPARE_WORKER)
        return max(self.limit(), min(self.checker.limits.max_in_flight, spare))

    @contextlib.asynccontextmanager
    async def view(self) -> AsyncIterator[_LookupView]:
        """A view for one lookup; on leaving, its last requests land (or, on error, are
        cancelled) before its share goes back to the others."""
        view = _LookupView(self)
        self.views.add(view)
        try:
            yield view
            await view.drain()
        finally:
            await view.abandon()
            self.views.discard(view)
            for other in self.views:  # their share just grew
                other.wake()


class _LookupView:
    """One lookup's door to the shared checker: at most its fair share of checks inside.

    Waiting here sends nothing, so the checks a hit cancels are cheap, and waiters keep
    their order (FIFO), so candidates still go in the tier's order.

    A check whose request is on the wire when the lookup is cancelled (its tier had a
    hit) is left to land rather than cut: the API has the request anyway, and cutting it
    closes a pooled connection, a reconnect (with TLS, a handshake) for nearly every hit
    of a batch: about a fifth of the throughput at 0 ms latency. It keeps its checker
    slot until it lands, so the global limits hold, and :meth:`drain` waits for it before
    the batch takes another row. A check not yet sent (queued in the checker, or backing
    off before a retry) is cancelled as usual. (If the landing request fails, the
    checker may still retry it once the backoff is over, within its retry budget.)
    """

    def __init__(self, share: _FairShare) -> None:
        self._share = share
        self._checker = share.checker
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._landing: set[asyncio.Task[CheckOutcome]] = set()

    def as_checker(self) -> Checker:
        # The matcher needs only ``limits`` and ``check``: to it, the view is a checker.
        return cast("Checker", self)

    @property
    def limits(self) -> Limits:
        return self._checker.limits

    def __getattr__(self, name: str) -> Any:  # anything else the matcher may read
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._checker, name)

    async def check(self, phone: str, stats: CheckStats | None = None) -> CheckOutcome:
        if self._waiters or self._active >= self._share.limit():
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # granted, then cancelled
                    self._release()
                else:
                    with contextlib.suppress(ValueError):  # wake() may have dropped it
                        self._waiters.remove(waiter)
                raise
        else:
            self._active += 1
        # Own counters per call, to tell a check on the wire from one still queued.
        mine = CheckStats()
        call = asyncio.ensure_future(self._checker.check(phone, mine))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            if call.done():
                if not call.cancelled():
                    call.exception()  # landed in the same turn: retrieved, not needed
            else:
                if mine.sent <= mine.retries:  # not on the wire (queued, or backing off)
                    call.cancel()  # so it is never sent
                self._landing.add(call)
            raise
        finally:
            if stats is not None:
                _add_stats(stats, mine)
            self._release()

    def _release(self) -> None:
        self._active -= 1
        if self._waiters:
            # Not at once: when this answer was a hit, the matcher is about to cancel the
            # lookup, and a waiter let in now would send one more check for nothing.
            asyncio.get_running_loop().call_soon(self.wake)

    def wake(self) -> None:
        """Let waiters in up to the share (the slot is counted for them here)."""
        limit = self._share.limit()
        while self._waiters and self._active < limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._active += 1
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait for the checks left to land; their answers (or errors) are not needed."""
        if self._landing:
            await asyncio.wait(self._landing)
        self._settle()

    async def abandon(self) -> None:
        """Cancel the checks still landing (the batch is stopping) and wait for them."""
        for call in self._landing:
            call.cancel()
        if self._landing:
            await asyncio.wait(self._landing)
        self._settle()

    def _settle(self) -> None:
        for call in self._landing:
            if call.done() and not call.cancelled():
                call.exception()  # retrieved: no "exception was never retrieved"
        self._landing.clear()


_STATS_FIELDS: Final = tuple(f.name for f in dataclasses.fields(CheckStats))


def _add_stats(total: CheckStats, part: CheckStats) -> None:
    for name in _STATS_FIELDS:
        if value := getattr(part, name):
            setattr(total, name, getattr(total, name) + value)


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
) -> BatchSummary:
    """Look up every row, ``lookups_in_flight`` at a time, over one shared ``checker``.

    Rows are pulled lazily by a fixed set of workers, so a million-row iterator costs
    ``lookups_in_flight`` tasks, not a million. Each lookup keeps at most its fair share
    of the checker's ``max_in_flight`` in flight (``ceil(max_in_flight / lookups
    running)``): together they keep the checker's slots busy, a lookup that hits has few
    checks to waste, and the last lookups of a batch widen to the whole pool. The
    checker's own limits (rate, retries, breaker) hold for all of them together.

    ``on_result(result)`` (sync or async) is called as each row finishes, in completion
    order; results carry ``row``, so callers can restore the input order. An exception
    it raises stops the batch and is raised here.

    Bad rows become ``invalid`` results; API trouble becomes ``inconclusive`` or
    ``api_error`` results (see :func:`~lookup.matcher.find`). Nothing is raised for them.

    >>> checker = Checker(api, Limits(max_in_flight=32))  # doctest: +SKIP
    >>> summary = await run_batch(rows, checker=checker, on_result=results.append)
    """
    if lookups_in_flight < 1:
        raise ConfigError(f"lookups_in_flight must be at least 1, got {lookups_in_flight}")
    if mode not in ("first", "all"):
        raise ConfigError(f"mode must be 'first' or 'all', got {mode!r}")
    share = _FairShare(checker)
    summary = BatchSummary()
    pull = _puller(rows)
    started = time.perf_counter()

    async def worker() -> None:
        while (row := await pull()) is not None:
            async with share.view() as view:
                result = await _lookup(row, view.as_checker(), share.workers, mode=mode,
                                       caller=caller, max_candidates=max_candidates, db=db)  # fmt: skip
                summary.add(result)
                log.debug("row %d %s: %s, %d checks", result.row, mask_phone(result.mask),
                          result.status, result.checks_sent)  # fmt: skip
                if on_result is not None:
                    done = on_result(result)
                    if inspect.isawaitable(done):
                        await done

    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(lookups_in_flight):
                tg.create_task(worker())
    except BaseExceptionGroup as group:
        # The first failure stopped the batch (workers failing in the same loop turn may
        # add more, often the same one): raise it, the group kept as its cause.
        raise group.exceptions[0] from group
    summary.elapsed_s = round(time.perf_counter() - started, 3)
    return summary


# -- reading input ------------------------------------------------------------------------------

_COLUMN_SEP = re.compile(r"[\s\-]+")


def _column(name: str) -> str:
    return _COLUMN_SEP.sub("_", name.strip().lstrip("\ufeff").lower())


def detect_format(path: Path) -> InputFormat:
    """``csv`` or ``jsonl``: by extension, else by the first non-blank character."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with path.open(encoding="utf-8-sig", errors="replace") as stream:
        head = stream.read(4096).lstrip()
    return "jsonl" if head.startswith("{") else "csv"


def _row(n: int, data: dict[str, Any]) -> BatchRow:
    fields = {k: data[k] for k in ("id", "mask", *HINTS) if k in data}
    try:
        return BatchRow(row=n, **fields)
    except ValidationError as exc:
        where = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        return BatchRow(row=n, problem=f"row {n}: unreadable value in {where or 'the row'}")


def _csv_rows(stream: IO[str], name: str) -> Iterator[BatchRow]:
    reader = csv.reader(stream)
    header = next(reader, None)
    columns = [_column(c) for c in header or ()]
    if "mask" not in columns:
        found = ", ".join(repr(c) for c in columns if c) or "nothing"
        raise ConfigError(
            f"{name}: the first line must be a header with a 'mask' column (and optionally "
            f"id, {', '.join(HINTS)}); found {found}"
        )
    n = 0
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue  # blank line
        n += 1
        yield _row(n, {c: v for c, v in zip(columns, cells, strict=False) if c})


def _jsonl_rows(stream: IO[str], name: str) -> Iterator[BatchRow]:
    n = 0
    for line_no, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        n += 1
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            yield BatchRow(row=n, problem=f"line {line_no} of {name} is not a JSON object")
            continue
        yield _row(n, {_column(str(k)): v for k, v in data.items()})


def read_rows(path: str | Path, fmt: InputFormat | None = None) -> Iterator[BatchRow]:
    """The rows of a CSV (with a header) or JSONL file, lazily; UTF-8 with or without BOM.

    Raises :class:`~lookup.errors.ConfigError` when the file is missing, not UTF-8, or a
    CSV without a ``mask`` column. Rows that cannot be read come back with ``problem`` set.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"input file {p} does not exist")
    fmt = fmt or detect_format(p)
    with p.open(encoding="utf-8-sig", newline="") as stream:
        try:
            if fmt == "csv":
                yield from _csv_rows(stream, p.name)
            else:
                yield from _jsonl_rows(stream, p.name)
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as "
                "UTF-8 (in Excel: CSV UTF-8)"
            ) from None
        except csv.Error as exc:
            raise ConfigError(f"{p}: not a readable CSV file: {exc}") from None


# -- the journal ---------------------------------------------------------------------------------


def journal_path(out: str | Path) -> Path:
    """Where the journal of ``out`` lives: ``OUT.journal`` next to it."""
    p = Path(out)
    return p.with_name(p.name + ".journal")


def _sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


# Query parameters whose values are credentials (as lookup.orders.http redacts them).
_SECRET_PARAMS: Final = ("token", "key", "secret", "sig", "auth", "pass", "credential")


def _api_identity(settings: Settings) -> str:
    """Which order API answers, with no credential in it.

    The URL loses its user info and credential-like query values: a rotated key is the
    same API, while another host, path or (other) query parameter is not.
    """
    if settings.api_plugin:
        return f"plug-in {settings.api_plugin}"
    url = settings.api_url or ""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    fields = []
    for item in parts.query.split("&") if parts.query else ():
        name, eq, _ = item.partition("=")
        secret = eq and any(k in name.lower() for k in _SECRET_PARAMS)
        fields.append(f"{name}=***" if secret else item)
    return parts._replace(netloc=netloc, query="&".join(fields)).geturl()


def journal_header(input_path: Path, settings: Settings, mode: Mode) -> dict[str, Any]:
    """The header line: the input and the settings that change answers."""
    size, digest = _sha256(input_path)
    return {
        "journal": _JOURNAL_KIND,
        "version": _JOURNAL_VERSION,
        "input": {"path": str(input_path.resolve()), "size": size, "sha256": digest},
        "settings": {
            "api": _api_identity(settings),
            "hit_field": settings.hit_field,
            "method": settings.api_method,
            "mode": mode,
            "max_candidates": settings.max_candidates,
        },
    }


_SETTING_NAMES: Final = {
    "hit_field": "the hit field (--hit-field)",
    "method": "the HTTP method (--method)",
    "mode": "the mode (--mode)",
    "max_candidates": "max candidates (--max-candidates)",
}


def _header_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a journal's header and this run's, in words."""
    changes: list[str] = []
    was, now = old.get("input", {}), new["input"]
    if was.get("path") != now["path"]:
        changes.append(f"the input file is another one (journal: {was.get('path')}, "
                       f"now: {now['path']})")  # fmt: skip
    if (was.get("size"), was.get("sha256")) != (now["size"], now["sha256"]):
        changes.append(
            f"the input file's content changed (journal: {was.get('size')} bytes, sha256 "
            f"{str(was.get('sha256'))[:12]}…; now: {now['size']} bytes, sha256 "
            f"{now['sha256'][:12]}…)"
        )
    was, now = old.get("settings", {}), new["settings"]
    if was.get("api") != now["api"]:
        changes.append(f"the order API changed (journal: {was.get('api')}, now: {now['api']})")
    for key, label in _SETTING_NAMES.items():
        if was.get(key) != now[key]:
            changes.append(f"{label} changed (journal: {was.get(key)!r}, now: {now[key]!r})")
    return changes


def _lock(f: IO[bytes], path: Path) -> None:
    """Lock the journal against a second ``lookup batch`` on the same output (POSIX only)."""
    if sys.platform == "win32":  # pragma: no cover - no advisory locks
        return
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            f"{path} is in use by another `lookup batch` writing the same output"
        ) from None


@dataclass
class Journal:
    """``OUT.journal`` open for appending, locked against a second writer.

    ``records`` maps row numbers to their last record, old and new.
    """

    path: Path
    header: dict[str, Any]
    records: dict[int, RowResult] = field(default_factory=dict)
    started: bool = False
    """The journal had its header already (this run resumes it)."""
    torn_bytes: int = 0
    """Bytes of a torn last line that were cut off when the journal was opened."""
    unreadable: int = 0
    """Complete lines that did not parse (their rows are looked up again)."""
    _file: IO[bytes] | None = None

    @classmethod
    def open(cls, path: Path, header: dict[str, Any]) -> Journal:
        """Create, or open and check an existing journal (``ConfigError`` on a mismatch)."""
        journal = cls(path, header)
        f = path.open("a+b")  # O_APPEND: every write lands at the end
        try:
            _lock(f, path)
            f.seek(0)
            journal._load(f.read())
        except BaseException:
            f.close()
            raise
        journal._file = f
        return journal

    def _load(self, raw: bytes) -> None:
        assert self._file is None
        end = raw.rfind(b"\n") + 1  # complete lines end with a newline; the rest is torn
        self.torn_bytes = len(raw) - end
        lines = raw[:end].splitlines()
        if not lines:
            return  # new, or only a torn header: (re)start it
        try:
            old = json.loads(lines[0])
        except ValueError:
            old = None
        if not isinstance(old, dict) or old.get("journal") != _JOURNAL_KIND:
            raise ConfigError(f"{self.path} is not a lookup batch journal: move or delete it")
        if old.get("version") != _JOURNAL_VERSION:
            raise ConfigError(f"{self.path} was written by another version of lookup: "
                              "delete it to start over")  # fmt: skip
        self.started = True
        changes = _header_changes(old, self.header)
        if changes:
            raise ConfigError(
                f"cannot resume from {self.path}: {'; '.join(changes)}. Run with what the "
                "journal was made with, or delete it to start over"
            )
        for line in lines[1:]:
            try:
                record = RowResult.model_validate_json(line)
            except ValidationError:
                self.unreadable += 1
                continue
            self.records[record.row] = record

    def _start(self) -> None:
        """Cut a torn tail; write the header to a new journal."""
        f = self._file
        assert f is not None
        if not self.started:  # new, or only a torn header
            f.truncate(0)
            f.write(json.dumps(self.header, ensure_ascii=False).encode() + b"\n")
            f.flush()
        elif self.torn_bytes:
            f.seek(0, os.SEEK_END)
            f.truncate(f.tell() - self.torn_bytes)

    def append(self, result: RowResult) -> None:
        """Record a finished row: one write of one line, flushed."""
        assert self._file is not None
        self._file.write(result.as_json().encode() + b"\n")
        self._file.flush()
        self.records[result.row] = result

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # also releases the lock
            self._file = None

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- writing output ----------------------------------------------------------------------------


def write_output(path: Path, records: Iterable[RowResult], fmt: InputFormat, *,
                 bom: bool = False) -> None:  # fmt: skip
    """Write ``records`` (already in order) to ``path`` atomically: temp file, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            if fmt == "csv":
                if bom:
                    stream.write("\ufeff")
                writer = csv.writer(stream)
                writer.writerow(CSV_COLUMNS)
                writer.writerows(r.as_csv() for r in records)
            else:
                stream.writelines(r.as_json() + "\n" for r in records)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- progress ------------------------------------------------------------------------------------


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class BatchProgress:
    """A live line on a terminal; on anything else, a plain line every ~5 s or 10 %.

    Only counts are shown: never a number, not even a mask.
    """

    def __init__(self, stream: TextIO, total: int, done: int = 0, *,
                 counts: dict[str, int] | None = None, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 every: float = 5.0) -> None:  # fmt: skip
        self.stream = stream
        self.total = total
        self.done = done
        self.counts = dict.fromkeys(STATUSES, 0) | (counts or {})
        self.live = stream.isatty() if live is None else live
        self._clock = clock
        self._every = every
        self._started = clock()
        self._first = done
        self._last_draw = float("-inf")
        self._last_line = self._started
        self._next_decile = self._decile(done) + 1
        self._width = 0

    def _decile(self, done: int) -> int:
        return done * 10 // self.total if self.total else 10

    def text(self) -> str:
        now = self._clock()
        new = self.done - self._first
        rate = new / (now - self._started) if now > self._started else 0.0
        pct = f" ({self.done * 100 // self.total}%)" if self.total else ""
        left = self.total - self.done
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left > 0 else ""
        counts = ", ".join(f"{s} {n:,}" for s, n in self.counts.items() if n)
        return (f"{self.done:,}/{self.total:,} rows{pct}, {rate:.1f} rows/s{eta}"
                + (f"; {counts}" if counts else ""))  # fmt: skip

    def update(self, result: RowResult) -> None:
        self.done += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        now = self._clock()
        if self.live:
            if now - self._last_draw >= 0.1 or self.done == self.total:
                self._last_draw = now
                line = self.text()
                pad = " " * max(0, self._width - len(line))
                self._width = len(line)
                self.stream.write(f"\r{line}{pad}")
                self.stream.flush()
            return
        decile = self._decile(self.done)
        if decile >= self._next_decile or now - self._last_line >= self._every:
            self._next_decile = decile + 1
            self._last_line = now
            self.stream.write(f"lookup batch: {self.text()}\n")
            self.stream.flush()

    def close(self) -> None:
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


# -- the command -------------------------------------------------------------------------------


def _output_format(args: argparse.Namespace, out: Path) -> InputFormat:
    if args.format:
        fmt: InputFormat = args.format
        return fmt
    return "csv" if out.suffix.lower() == ".csv" else "jsonl"


def _count_rows(path: Path, fmt: InputFormat) -> int:
    """A first pass: checks the whole file reads (header, UTF-8) and counts its rows."""
    return sum(1 for _ in read_rows(path, fmt))


def _pending(path: Path, fmt: InputFormat, skip: set[int]) -> Iterator[BatchRow]:
    for row in read_rows(path, fmt):
        if row.row not in skip:
            yield row


def cmd_batch(args: argparse.Namespace, out: TextIO) -> int:
    """``lookup batch IN --out OUT ...``: see the module docstring. Returns the exit status."""
    from lookup.cli import ExitStatus, configure_logging, settings_from_args

    settings = settings_from_args(args)
    configure_logging(settings)
    in_path, out_path = Path(args.input), Path(args.out)
    mode: Mode = args.mode
    out_fmt = _output_format(args, out_path)
    # Everything that can be wrong with the usage is checked before the API is opened.
    if not in_path.is_file():
        raise ConfigError(f"input file {in_path} does not exist")
    if not out_path.parent.is_dir():
        raise ConfigError(f"the folder of --out {out_path} does not exist")
    if out_path.resolve() == in_path.resolve():
        raise ConfigError("--out is the input file: pick another name")
    if args.lookups_in_flight < 1:
        raise ConfigError("--lookups-in-flight must be at least 1")
    if not settings.api_url and not settings.api_plugin:
        raise ConfigError("no order API configured: pass --api URL (a template with {phone}), "
                          "--api demo or --api-plugin package.module:attr; or set "
                          "LOOKUP_API_URL")  # fmt: skip
    if args.csv_bom and out_fmt != "csv":
        log.warning("--csv-bom applies to CSV output only; %s is JSONL", out_path.name)
    in_fmt = detect_format(in_path)
    total = _count_rows(in_path, in_fmt)
    jpath = journal_path(out_path)
    if jpath.exists() and not (args.resume or args.retry_failed):
        raise ConfigError(
            f"{jpath} exists: an earlier run of this output was interrupted or done. Pass "
            "--resume to continue it (--retry-failed to re-run its failed rows), or delete "
            "it to start over"
        )
    header = journal_header(in_path, settings, mode)
    try:
        journal = Journal.open(jpath, header)
    except OSError as exc:
        raise ConfigError(f"cannot write the journal {jpath}: {exc.strerror or exc}") from None
    try:
        with journal:
            summary, resumed = _run_journaled(args, settings, journal, in_path, in_fmt, total)
    except BaseException as exc:
        if not journal.started and not journal.records:
            jpath.unlink(missing_ok=True)  # nothing done: do not make the next run --resume
        if isinstance(exc, OSError):  # say, the disk filled up
            raise LookupFailure(f"writing {jpath} failed: {exc.strerror or exc}; the rows "
                                "done so far are kept: fix it and run again with --resume") from exc  # fmt: skip
        raise
    records = journal.records
    final = [records[row] for row in sorted(records) if row <= total]
    if len(final) != total:  # every row read was looked up: this would be a bug
        raise RuntimeError(f"{total - len(final)} rows have no result")
    try:
        write_output(out_path, final, out_fmt, bom=args.csv_bom)
    except OSError as exc:
        raise LookupFailure(f"writing {out_path} failed: {exc.strerror or exc}; the results "
                            "are in the journal: run again with --resume") from exc  # fmt: skip
    by_status = dict.fromkeys(STATUSES, 0)
    for r in final:
        by_status[r.status] += 1
    out.write(_summary_text(summary, by_status, total, resumed, out_path, out_fmt, jpath))
    out.flush()
    undecided = by_status["inconclusive"] + by_status["api_error"]
    return ExitStatus.FAILED if undecided else ExitStatus.OK


def _run_journaled(args: argparse.Namespace, settings: Settings, journal: Journal,
                   in_path: Path, in_fmt: InputFormat, total: int) -> tuple[BatchSummary, int]:  # fmt: skip
    """Run the rows the journal lacks, recording each; returns the summary and rows kept."""
    jpath = journal.path
    if journal.torn_bytes:
        log.warning("ignored a torn last line of %s (%d bytes); its row is looked up again",
                    jpath.name, journal.torn_bytes)  # fmt: skip
    if journal.unreadable:
        log.warning("%d unreadable lines in %s; their rows are looked up again",
                    journal.unreadable, jpath.name)  # fmt: skip
    kept = {row for row, r in journal.records.items() if r.definite or not args.retry_failed}
    if journal.records:
        log.info("resuming from %s: %d rows done, %d to look up", jpath.name, len(kept),
                 total - len(kept))  # fmt: skip
    counts: dict[str, int] = {}
    for row in kept:
        status = journal.records[row].status
        counts[status] = counts.get(status, 0) + 1
    progress = BatchProgress(sys.stderr, total, len(kept), counts=counts)

    def on_result(result: RowResult) -> None:
        journal.append(result)
        progress.update(result)

    async def run() -> BatchSummary:
        from lookup.checker import Checker
        from lookup.runtime import open_api

        async with open_api(settings) as opened:
            log.info("batch of %d rows against the %s", total - len(kept), opened.description)
            checker = Checker(opened.api, opened.limits)
            return await run_batch(
                _pending(in_path, in_fmt, kept),
                checker=checker,
                lookups_in_flight=args.lookups_in_flight,
                mode=args.mode,
                max_candidates=settings.max_candidates,
                on_result=on_result,
            )

    if len(kept) == total:  # all done before (say, a run that only lost its output)
        return BatchSummary(), len(kept)
    try:
        from lookup._loop import run as run_loop

        summary = run_loop(run())
    except KeyboardInterrupt:
        progress.close()
        sys.stderr.write(f"lookup batch: interrupted; {len(journal.records):,} rows are in "
                         f"{jpath}: run the same command with --resume to continue\n")  # fmt: skip
        raise
    progress.close()
    return summary, len(kept)


def _summary_text(summary: BatchSummary, by_status: dict[RowStatus, int], total: int,
                  resumed: int, out_path: Path, fmt: str, jpath: Path) -> str:  # fmt: skip
    buf = io.StringIO()
    buf.write(f"lookup batch: {total:,} rows -> {out_path} ({fmt})\n")
    buf.write("  " + ", ".join(f"{s} {n:,}" for s, n in by_status.items()) + "\n")
    resumed_text = f" ({resumed:,} done before, from the journal)" if resumed else ""
    buf.write(f"  this run: {summary.rows:,} rows looked up{resumed_text}, "
              f"{summary.checks_sent:,} checks sent, {summary.elapsed_s:.2f} s\n")  # fmt: skip
    undecided = by_status["inconclusive"] + by_status["api_error"]
    if undecided:
        buf.write(f"  {undecided:,} rows got no definite answer: run again with --resume "
                  f"--retry-failed (journal {jpath})\n")  # fmt: skip
    return buf.getvalue()
