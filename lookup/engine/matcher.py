"""The hierarchical match: tier by tier, concurrently, first positive wins.

Each tier is one pass of a pool of workers over the tier's lazy iterator
(:mod:`lookup.engine.pool`): never one task per candidate. A chunk's size follows the
source's answer times (the checker's :class:`~lookup.engine.policies.ChunkSizer`); a source
that answers a whole segment in one query (PostgreSQL's range scan) is asked a tier of
whole segments (a mask hiding the last four digits) one segment per chunk. A positive
answer ends the tier: nothing new is sent for the lookup, the workers still waiting are
cancelled, and a request already on the wire is left to land (its pooled connection stays
open). The earliest hit in tier order wins.

A tier is negative only when every candidate has a definite answer. A check that failed
after the checker's retries is sent again half a second later (then 1, 2, 4, 8 s),
between fresh candidates, when the retry budget has a token; what is still unanswered at
the end of the tier's first pass is *deferred* and retried at the retry budget's pace
until the tier's share of the lookup's deadline runs out; then the search goes on to the
next tier with those candidates unresolved. A later hit is ``matched`` with
``complete=False``; no hit anywhere with unresolved candidates is ``inconclusive`` (with
time left, the unresolved candidates get another go first). A failed check is never a "no".
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable

from lookup.domain.errors import ConfigError
from lookup.domain.masks import Mask
from lookup.domain.models import (
    Hit,
    Limits,
    LookupRequest,
    LookupResult,
    Mode,
    Status,
    TierReport,
)
from lookup.domain.segments import SegmentDB
from lookup.domain.tiers import DEFAULT_MAX_CANDIDATES, TierPlan, plan
from lookup.engine.checker import Checker, Checks
from lookup.engine.pool import CheckMany, PassRun, Progress, TierRun, retry_deferred, run_pass
from lookup.orders.base import OrderApi, mask_phone

__all__ = ["Mode", "Progress", "audit", "deadline_warning", "find", "match_plan", "run_plan"]


audit_log = logging.getLogger("lookup.audit")
log = logging.getLogger("lookup.matcher")

# A worker is a task, created per pass and cancelled at a hit (tens of µs each): a lookup
# gets one spare worker (beyond its share) per this many candidates of its largest tier.
_CANDIDATES_PER_SPARE_WORKER = 16

SEGMENT_SIZE = 10_000  # the numbers of one 7-digit segment


async def run_plan(
    plan_: TierPlan,
    checks: Checks,
    *,
    mode: Mode = "first",
    workers: int = 16,
    batch_size: int = 1,
    deadline: float = math.inf,
    clock: Callable[[], float] = time.monotonic,
    retry_wait: Callable[[float], Awaitable[bool]] | None = None,
    progress: Progress | None = None,
    retry_now: Callable[[], bool] | None = None,
    chunk_size: Callable[[], int] | None = None,
    segments: bool = False,
    too_slow: str | None = None,
) -> LookupResult:
    """Run a prepared plan against any :class:`~lookup.engine.checker.Checks`. See :func:`find`.

    ``too_slow``: said before the first check that the plan cannot finish in the deadline at
    the rate (:func:`deadline_warning`); repeated in the reason of a lookup the deadline ended.

    ``deadline`` is in ``clock`` time; ``retry_wait(until)`` paces deferred checks (the
    checker's retry budget); ``retry_now()`` takes a budget token if one is there, for a
    failed check sent again within its tier's first pass (without it, failed checks wait
    for the retry pass); ``batch_size`` > 1 sends chunks through ``check_many``, of
    ``chunk_size()`` numbers when given (read at each chunk: it adapts), and with
    ``segments`` a tier of whole segments goes one segment per chunk.
    """
    started = time.perf_counter()
    span = deadline - clock()  # the deadline, in seconds from now
    many: CheckMany | None = getattr(checks, "check_many", None) if batch_size > 1 else None
    r = PassRun(
        checks, max(1, workers), batch_size if many else 1, deadline, clock, retry_wait, many,
        retry_now, chunk_size=chunk_size if many else None,
    )  # fmt: skip
    reports = [TierReport(name=t.name, candidates=t.count) for t in plan_.tiers]
    runs: list[TierRun] = []
    status: Status = "not_found"
    reason: str | None = None
    hit_run: TierRun | None = None
    left = sum(t.count for t in plan_.tiers)
    for tier, report in zip(plan_.tiers, reports, strict=True):
        run = TierRun(tier.name, tier.count, mode, progress)
        runs.append(run)
        if tier.count == 0:
            report.status = "empty"
            continue
        now = clock()
        # This tier's share of the time left, by its share of the candidates left.
        until = now + (deadline - now) * tier.count / left if math.isfinite(deadline) else deadline
        left -= tier.count
        t0 = time.perf_counter()
        if progress is not None:
            progress(tier.name, 0, tier.count)
        if segments and many is not None and len(tier.tails) == SEGMENT_SIZE:
            await run_pass(enumerate(tier), tier.count, run, r, chunk=SEGMENT_SIZE)
        else:
            await run_pass(enumerate(tier), tier.count, run, r, chunk=r.batch, sized=True)
        if not run.found and run.stop is None:
            await retry_deferred(run, r, until)
        _report(run, report, t0)
        if run.stop is not None:
            status, reason = "api_error", f"{tier.name} tier: {run.stop.error}"
            report.status = "aborted"
            break
        if run.hits:
            hit_run = run
            break
        if run.failed:
            report.status = "inconclusive"
            log.info("%s tier: %d of %d candidates unresolved; going on to the next tier",
                     tier.name, len(run.failed), tier.count)  # fmt: skip
        else:
            report.status = "negative"

    if hit_run is None and status != "api_error" and any(x.failed for x in runs):
        # Time left: the unresolved candidates of every tier get another go, in tier order.
        for run, report in zip(runs, reports, strict=True):
            if run.failed and clock() < deadline:
                t0 = time.perf_counter()
                elapsed = report.elapsed_ms
                await retry_deferred(run, r, deadline)
                _report(run, report, t0)
                report.elapsed_ms = round(report.elapsed_ms + elapsed, 3)
                if run.stop is not None:
                    status, reason = "api_error", f"{run.name} tier: {run.stop.error}"
                    report.status = "aborted"
                    break
                if run.hits:
                    hit_run = run
                    break
                report.status = "inconclusive" if run.failed else "negative"

    hits: list[Hit] = []
    complete = True
    if hit_run is not None:
        status = "matched"
        ordered = sorted(hit_run.hits) if mode == "first" else hit_run.hits
        chosen = ordered[:1] if mode == "first" else sorted(ordered)
        hits = [
            Hit(phone=p, tier=hit_run.name, region=plan_.region_of(p), order_count=o.order_count)
            for _, p, o in chosen
        ]
        index = runs.index(hit_run)
        reports[index].status = "hit"
        earlier = {x.name: len(x.failed) for x in runs[:index] if x.failed}
        if earlier:
            complete = False
            parts = ", ".join(f"{name} {n:,}" for name, n in earlier.items())
            reason = (
                f"{sum(earlier.values()):,} candidates of earlier tiers ({parts}) were never "
                "answered (the API kept failing): one of them may have orders too"
            )
        elif hit_run.failed and mode == "all":
            complete = False
            reason = f"{len(hit_run.failed):,} candidates of the {hit_run.name} tier were never answered"
    elif status != "api_error":
        unresolved = {x.name: len(x.failed) for x in runs if x.failed}
        if unresolved:
            status = "inconclusive"
            complete = False
            parts = ", ".join(f"{name} {n:,}" for name, n in unresolved.items())
            failed = sum(x.errors for x in runs)
            if any(x.timed_out for x in runs) or clock() >= deadline:
                failures = f"; {failed:,} checks failed" if failed else "; no check failed"
                reason = (
                    f"the deadline ({span:,.0f} s) came: {sum(unresolved.values()):,} "
                    f"candidates ({parts}) could not be checked{failures}: the answer is "
                    "unknown, not 'no'" + (f"; {too_slow}" if too_slow else "")
                )
            else:
                reason = (
                    f"{sum(unresolved.values()):,} candidates ({parts}) could not be checked "
                    "before the deadline (the API kept failing): the answer is unknown, not 'no'"
                )
    else:
        complete = False
    first = hits[0] if hits else None
    return LookupResult(
        status=status,
        complete=complete,
        mask=str(plan_.mask),
        hint=str(plan_.region) if plan_.region else None,
        mode=mode,
        phone=first.phone if first else None,
        tier=first.tier if first else None,
        region=first.region if first else None,
        hits=hits,
        tiers=reports,
        numbers_checked=sum(t.checked for t in reports),
        requests=r.stats.sent,
        retries=r.stats.retries,
        cache_hits=r.stats.cache_hits,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        reason=reason,
        data_version=plan_.db.version,
    )


def _report(run: TierRun, report: TierReport, t0: float) -> None:
    report.elapsed_ms = round((time.perf_counter() - t0) * 1000, 3)
    report.checked = run.checked
    report.hits = len(run.hits)
    report.errors = run.errors
    report.unresolved = len(run.failed)


def deadline_warning(
    candidates: int, rate: float | None, deadline: float, per_request: int = 1
) -> str | None:
    """What to say before the first check when ``candidates`` cannot all be checked within
    ``deadline`` seconds at ``rate`` requests per second of ``per_request`` numbers each (a
    batch endpoint's chunk); ``rate`` ``None`` (no ceiling): nothing to say."""
    if not rate or not math.isfinite(deadline):
        return None
    per_request = max(1, per_request)
    need = math.ceil(candidates / per_request) / rate
    if need <= deadline:
        return None
    longer = max(60, math.ceil(need * 1.2 / 60) * 60)
    pace = (f"{rate:g} checks/s" if per_request == 1
            else f"{rate:g} requests/s of {per_request} numbers")  # fmt: skip
    return (
        f"at {pace} the {candidates:,} candidates need about {need:,.0f} s, more than the "
        f"{deadline:,.0f} s deadline: give --deadline {longer}, a hint (--city, --province, "
        "--area-code, --zip, --carrier) or more digits of the mask"
    )


def _workers(plan_: TierPlan, share: int, cap: int, batch: int) -> int:
    """Workers for a lookup: its share now, more if it is big enough to widen later."""
    biggest = max((t.count for t in plan_.tiers), default=0)
    units = -(-biggest // batch)
    spare = -(-units // _CANDIDATES_PER_SPARE_WORKER)
    return max(1, min(cap, max(share, spare)))


async def match_plan(
    plan_: TierPlan,
    checker: Checker,
    *,
    mode: Mode = "first",
    max_in_flight: int | None = None,
    progress: Progress | None = None,
    deadline: float | None = None,
    group: Hashable = None,
) -> LookupResult:
    """Run a prepared plan against a shared checker, as one fairly scheduled lookup."""
    limits = checker.limits
    cap = min(max_in_flight or limits.max_in_flight, limits.max_in_flight)
    batch = limits.batch_size if checker.supports_batch else 1
    seconds = deadline or limits.deadline
    too_slow = deadline_warning(plan_.total, limits.max_per_second, seconds, batch)
    async with checker.lookup(group, deadline=seconds) as checks:
        return await run_plan(
            plan_,
            checks,
            mode=mode,
            workers=_workers(plan_, checks.fair_width, cap, batch),
            batch_size=batch,
            deadline=checks.deadline,
            clock=checker.clock,
            retry_wait=checker.wait_retry,
            retry_now=checker.try_retry,
            progress=progress,
            chunk_size=lambda: checker.chunks.size,
            segments=checker.supports_segments,
            too_slow=too_slow,
        )


async def find(
    mask: str | Mask | TierPlan | LookupRequest,
    *,
    api: OrderApi | None = None,
    city: str | None = None,
    province: str | None = None,
    area_code: str | None = None,
    zip: str | None = None,
    carrier: str | None = None,
    limits: Limits | None = None,
    mode: Mode = "first",
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    db: SegmentDB | None = None,
    checker: Checker | None = None,
    seed: int | None = None,
    caller: str | None = None,
    progress: Progress | None = None,
    deadline: float | None = None,
    group: Hashable = None,
    include_nonstandard: bool = False,
    also: Iterable[str | Mask] = (),
) -> LookupResult:
    """Find the number behind ``mask`` by checking candidates against ``api``, tier by tier.

    Tiers run in order city, province, national, unlocated; within a tier the lookup keeps
    its fair share of the checker's in-flight slots busy (at most ``limits.max_in_flight``
    when ``limits`` is given with a shared checker). ``mode="first"`` stops at the first
    positive answer; ``mode="all"`` finishes the hit's tier and reports every hit. Pass a
    shared ``checker`` so that limits, cache and breaker hold across lookups (without
    one, a checker is made for this call from ``api`` and ``limits``). ``mask`` may be a
    ready :class:`~lookup.domain.tiers.TierPlan` (the hints are then ignored), or one
    :class:`~lookup.domain.models.LookupRequest` carrying the mask, its hints, sightings, mode
    and cap (``find(LookupRequest(mask="138****1234", city="杭州"), api=api)``).

    ``deadline`` (seconds, default ``limits.deadline``, 300) bounds the lookup: checks
    that keep failing are retried until then, and an open breaker is waited out until then.
    ``group`` names the caller for fair shares (the service passes the token's name).
    ``also`` lists other sightings of the same number (``find("138****2046",
    also=["1385715****"])``): they are intersected with ``mask`` before planning.

    Input errors (:class:`~lookup.domain.errors.InputError`) are raised before any request.
    API trouble is reported in the result, never raised: ``inconclusive`` when checks
    kept failing, ``api_error`` for a fatal error or a breaker open until the deadline.

    >>> async with HttpOrderApi("http://127.0.0.1:8080/orders?phone={phone}") as api:  # doctest: +SKIP
    ...     result = await find("138****1234", api=api, city="杭州")
    """
    if isinstance(mask, LookupRequest):  # one request object instead of the keywords
        request = mask
        mask, mode, also = request.mask, request.mode, tuple(request.also or ()) or also
        city, province, area_code = request.city, request.province, request.area_code
        zip, carrier = request.zip, request.carrier
        max_candidates = request.max_candidates or max_candidates
    if mode not in ("first", "all"):
        raise ConfigError(f"mode must be 'first' or 'all', got {mode!r}")
    if deadline is not None and not deadline > 0:
        raise ConfigError(f"deadline must be a positive number of seconds, got {deadline!r}")
    if also and isinstance(mask, TierPlan):
        raise ConfigError("also= cannot be combined with a ready plan: pass it to plan()")
    # A ready plan (a shell that showed its counts first) skips planning; hints unused.
    plan_ = mask if isinstance(mask, TierPlan) else plan(
        mask,
        db,
        city=city,
        province=province,
        area_code=area_code,
        zip=zip,
        carrier=carrier,
        max_candidates=max_candidates,
        seed=seed,
        include_nonstandard=include_nonstandard,
        also=also,
    )
    if checker is None:
        if api is None:
            raise TypeError("find() needs api= (an OrderApi) or checker=")
        from lookup.domain.models import DEFAULT_LIMITS

        # A checker of its own serves this lookup only: no cache or single flight to pay for.
        checker = Checker(api, limits or DEFAULT_LIMITS, one_lookup=True)
    cap = limits.max_in_flight if limits is not None else None
    result = await match_plan(
        plan_, checker, mode=mode, max_in_flight=cap, progress=progress, deadline=deadline,
        group=group,
    )  # fmt: skip
    audit(result, caller)
    return result


def audit(result: LookupResult, caller: str | None) -> None:
    """Write the one audit line of a lookup (no full number unless the operator allows)."""
    if not audit_log.isEnabledFor(logging.INFO):
        return
    audit_log.info(
        "lookup mask=%s hint=%s status=%s tier=%s phone=%s checked=%d requests=%d retries=%d "
        "elapsed_ms=%.0f"
        " caller=%s",
        mask_phone(result.mask),  # a mask that hides nothing is a full number
        result.hint or "-",
        result.status,
        result.tier or "-",
        mask_phone(result.phone) if result.phone else "-",
        result.numbers_checked,
        result.requests,
        result.retries,
        result.elapsed_ms,
        caller or "-",
        # The full number travels only as an attribute: the formatters of lookup.runtime.logs print
        # it when the operator turned audit_full_numbers on, and mask it otherwise.
        extra={"audit": True, "status": result.status, "full_phone": result.phone},
    )
