"""The one lookup path: every surface runs a lookup through :class:`LookupPath`.

The CLI's ``find``, ``lookup batch`` (through :meth:`LookupPath.row`, handed to
:func:`~lookup.engine.batch.run_batch`), the service's ``POST /v1/lookups`` as JSON and as the
event stream, ``/v1/lookups/batch``, server-side jobs and the Ray actors. One call owns, in one
place:

* **admission**: a caller may hold ``max_queued`` lookups running or queued; past that
  :class:`~lookup.domain.errors.TooManyQueuedError` (HTTP 429 with ``Retry-After``);
* **fairness**: the caller is the lookup's fair-share group in the checker;
* **the deadline** and the candidate cap (asking above the cap is bad input);
* **the audit line** (one per lookup, ``lookup.audit``);
* **metrics**: lookups by surface and status, their duration, those in progress, refusals
  (through a :class:`LookupMetrics` sink: the service's Prometheus registry, or nothing);
* **privacy** of every text in the result (numbers masked, configured secrets redacted);
* **the learned region order** (opt-in): plans use the counts of a
  :class:`~lookup.files.regions.RegionSink`, and each matched lookup's region is counted
  there once.

A new surface adds a call, never a copy.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, Final, Literal, Protocol

from lookup.domain.errors import CandidateCapError, InputError, TooManyQueuedError
from lookup.domain.models import LookupRequest, LookupResult, Mode
from lookup.domain.order import NEARER, RegionOrder
from lookup.domain.privacy import Redactor
from lookup.domain.tiers import TierPlan, plan
from lookup.engine.batch import BatchRow, RowResult
from lookup.engine.matcher import Progress, audit, match_plan

if TYPE_CHECKING:
    from lookup.domain.segments import SegmentDB
    from lookup.engine.checker import Checker
    from lookup.files.regions import RegionSink

__all__ = ["SURFACES", "LookupMetrics", "LookupPath", "Surface"]

Surface = Literal["cli", "batch", "service", "stream", "service_batch", "job", "ray", "library"]
SURFACES: Final[tuple[Surface, ...]] = (
    "cli", "batch", "service", "stream", "service_batch", "job", "ray", "library",
)  # fmt: skip
_PLANS: Final = 256  # distinct (mask, hints, cap) plans kept: the page asks the same twice


class LookupMetrics(Protocol):
    """Where the lookup path records what it did (the service's Prometheus registry)."""

    def lookup_started(self, surface: Surface) -> None: ...

    def lookup_ended(self, surface: Surface, status: str, seconds: float | None) -> None: ...

    def lookup_refused(self, surface: Surface) -> None: ...


class LookupPath:
    """Admission, fairness, deadline, audit, metrics and privacy around the engine.

    :param checker: the process-wide checker of the order API (``open_engine``).
    :param db: the segment database plans are made from.
    :param max_candidates: the cap on candidates per lookup; a request may ask for less.
    :param max_queued: lookups one caller may have running or queued (``None``: no cap).
    :param deadline: seconds a lookup may take (``None``: the checker's limits decide).
    :param secrets: configured secrets, redacted from every text of a result.
    :param metrics: where to count lookups (``None``: nowhere).
    :param regions: where matched lookups' regions are counted and the learned order comes
        from (``None``: nearer first, nothing counted).
    """

    def __init__(
        self,
        checker: Checker,
        db: SegmentDB,
        *,
        max_candidates: int,
        max_queued: int | None = None,
        deadline: float | None = None,
        secrets: Iterable[str] = (),
        metrics: LookupMetrics | None = None,
        regions: RegionSink | None = None,
    ) -> None:
        self.checker = checker
        self.db = db
        self.max_candidates = max_candidates
        self.max_queued = max_queued
        self.deadline = deadline
        self.metrics = metrics
        self.regions = regions
        self._redact = Redactor(secrets)
        self._queued: Counter[str] = Counter()
        self._plans: dict[tuple[object, ...], TierPlan] = {}
        self.typical_seconds = 1.0  # a moving average of lookup times, for Retry-After

    # -- admission ---------------------------------------------------------------------------

    def queued(self, caller: str) -> int:
        """Lookups ``caller`` has running or queued now."""
        return self._queued[caller]

    @contextlib.contextmanager
    def admit(self, caller: str, lookups: int = 1, *, surface: Surface = "service") -> Iterator[None]:
        """Hold ``lookups`` places of ``caller``'s queue, or raise ``TooManyQueuedError``."""
        cap = self.max_queued
        held = self._queued[caller]
        if cap is not None and held + lookups > cap:
            if self.metrics is not None:
                self.metrics.lookup_refused(surface)
            retry = min(max(math.ceil(self.typical_seconds), 1), 60)
            raise TooManyQueuedError(
                f"{caller} has {held} lookups running or queued and may have {cap} "
                f"(LOOKUP_SERVICE_MAX_QUEUED): retry in {retry} s, or wait for an answer",
                retry_after=retry,
            )
        self._queued[caller] += lookups
        try:
            yield
        finally:
            self._queued[caller] -= lookups
            if self._queued[caller] <= 0:
                del self._queued[caller]

    # -- planning ----------------------------------------------------------------------------

    def cap(self, asked: int | None) -> int:
        """The candidate cap of a request that asked for ``asked`` (at most the path's)."""
        if asked is not None and asked > self.max_candidates:
            raise CandidateCapError(
                f"max_candidates {asked:,} is above this service's cap of "
                f"{self.max_candidates:,}; omit it or ask for less"
            )
        return asked or self.max_candidates

    def order(self) -> tuple[RegionOrder, int]:
        """The order plans use now, and its version (``-1``: nearer first)."""
        if self.regions is None:
            return NEARER, -1
        order = self.regions.current()
        return (order, self.regions.version) if order.learned else (NEARER, -1)

    async def refresh(self) -> None:
        """Read the learned counts again if they are due (a no-op without them)."""
        if self.regions is not None:
            await self.regions.refresh()

    def plan(self, request: LookupRequest) -> TierPlan:
        """The plan of ``request`` (made once per distinct request and version of the learned
        order: a plan made before new counts is made again; input errors raise)."""
        cap = self.cap(request.max_candidates)
        also = tuple(request.also or ())
        order, version = self.order()
        key = (version, request.mask, cap, request.city, request.province, request.area_code,
               request.zip, request.carrier, *also)  # fmt: skip
        found = self._plans.get(key)
        if found is None:
            found = plan(
                request.mask, self.db, city=request.city, province=request.province,
                area_code=request.area_code, zip=request.zip, carrier=request.carrier,
                max_candidates=cap, also=also, order=order,
            )  # fmt: skip
            if len(self._plans) >= _PLANS:
                self._plans.pop(next(iter(self._plans)))
            self._plans[key] = found
        return found

    # -- one lookup --------------------------------------------------------------------------

    async def run(
        self,
        request: LookupRequest,
        *,
        caller: str,
        surface: Surface,
        audit_caller: str | None = None,
        progress: Progress | None = None,
        planned: TierPlan | None = None,
        admit: bool = True,
    ) -> LookupResult:
        """Run one lookup of ``caller`` from ``surface`` and return its result.

        :raises TooManyQueuedError: ``caller``'s queue is full (``admit=False``: the caller
            already holds its places, as a batch does).
        :raises InputError: the request is bad input (nothing was sent).
        """
        with self.admit(caller, surface=surface) if admit else contextlib.nullcontext():
            return await self._run(request, caller, surface, audit_caller, progress, planned)

    async def _run(
        self,
        request: LookupRequest,
        caller: str,
        surface: Surface,
        audit_caller: str | None,
        progress: Progress | None,
        planned: TierPlan | None,
    ) -> LookupResult:
        metrics = self.metrics
        try:
            if planned is None:
                await self.refresh()
            plan_ = planned if planned is not None else self.plan(request)
        except InputError:
            if metrics is not None:
                metrics.lookup_ended(surface, "invalid", None)
            raise
        started = time.perf_counter()
        if metrics is not None:
            metrics.lookup_started(surface)
        status = "inconclusive"
        try:
            result = await match_plan(
                plan_, self.checker, mode=request.mode, progress=progress,
                deadline=self.deadline, group=_group(caller),
            )  # fmt: skip
            result = self._private(result)
            status = result.status
            audit(result, audit_caller or caller)
            if self.regions is not None:
                await self.regions.count(result)  # the one count of this lookup
            return result
        finally:
            seconds = time.perf_counter() - started
            self.typical_seconds = 0.9 * self.typical_seconds + 0.1 * seconds
            if metrics is not None:
                metrics.lookup_ended(surface, status, seconds)

    async def row(self, row: BatchRow, *, caller: str, surface: Surface, mode: Mode = "first",
                  audit_caller: str | None = None, max_candidates: int | None = None,
                  ) -> RowResult:  # fmt: skip
        """One batch row through the path (the batch holds its queue places already):
        a bad row is an ``invalid`` result, never an exception."""
        if row.problem is not None or not row.mask:
            self._invalid(surface)
            return RowResult.invalid(row, self._redact(row.problem or "no mask"))
        t0 = time.perf_counter()
        await self.refresh()
        try:
            request = LookupRequest(
                mask=row.mask, city=row.city, province=row.province, area_code=row.area_code,
                zip=row.zip, carrier=row.carrier, mode=mode, max_candidates=max_candidates,
                also=list(row.also),
            )  # fmt: skip
            planned = self.plan(request)
        except (InputError, ValueError) as exc:
            self._invalid(surface)
            elapsed = round((time.perf_counter() - t0) * 1000, 3)
            return RowResult.invalid(row, self._redact(str(exc)), elapsed)
        result = await self.run(request, caller=caller, surface=surface, admit=False,
                                audit_caller=audit_caller, planned=planned)  # fmt: skip
        return RowResult.from_lookup(row, result)

    def _invalid(self, surface: Surface) -> None:
        if self.metrics is not None:
            self.metrics.lookup_ended(surface, "invalid", None)

    def _private(self, result: LookupResult) -> LookupResult:
        """Every text of ``result`` through privacy (the hit itself is the answer)."""
        reason = self._redact(result.reason) if result.reason else result.reason
        if reason == result.reason:
            return result
        return result.model_copy(update={"reason": reason})


def _group(caller: str) -> Hashable:
    return caller
