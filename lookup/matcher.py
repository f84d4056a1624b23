"""The hierarchical match: tier by tier, concurrently, first positive wins.

For each tier a fixed pool of workers pulls candidates from the tier's lazy iterator
(never one task per candidate). The first positive outcome ends the tier: the
worker raises a private ``_Found``, the task group cancels and awaits every other
check of this lookup, and the result is returned. A tier is negative only when every
candidate has a definite answer; checks that failed after the checker's retries are
tried once more at the end of the tier, and what still fails makes the lookup
``inconclusive``: a failed check is never a "no".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from lookup.candidates import DEFAULT_MAX_CANDIDATES, Tier, TierPlan, plan
from lookup.checker import Checker, CheckStats
from lookup.errors import ConfigError, FatalApiError, OrderApiError, TransientApiError
from lookup.masks import Mask
from lookup.models import (
    DEFAULT_LIMITS,
    CheckOutcome,
    Hit,
    Limits,
    LookupResult,
    Status,
    TierReport,
)
from lookup.orders.base import OrderApi, mask_phone
from lookup.segments import SegmentDB

__all__ = ["Mode", "find", "match_plan"]

Mode = Literal["first", "all"]
audit_log = logging.getLogger("lookup.audit")
log = logging.getLogger("lookup.matcher")


class _Found(Exception):
    """Raised by a worker on the first positive outcome to stop its tier."""


class _Abort(Exception):
    """Raised by a worker on a fatal API error or an open breaker."""

    def __init__(self, error: OrderApiError) -> None:
        super().__init__(str(error))
        self.error = error


Progress = Callable[[str, int, int], None]
"""``progress(tier, answered, count)``: called as checks of a tier get answers."""


class _TierRun:
    """The state of one tier (shared by its workers; one event loop, no locks)."""

    __slots__ = ("checked", "count", "failed", "found", "hits", "mode", "name", "progress")

    def __init__(self, name: str, count: int, mode: Mode, progress: Progress | None) -> None:
        self.name = name
        self.count = count
        self.mode = mode
        self.progress = progress
        self.checked = 0
        self.found = False
        self.failed: list[str] = []
        self.hits: list[tuple[str, CheckOutcome]] = []


async def _worker(
    candidates: Iterator[str], checker: Checker, stats: CheckStats, run: _TierRun
) -> None:
    # ``run.found`` is checked before pulling each candidate: workers whose check returns
    # in the same loop turn as the hit must not send another one before the group cancels.
    while not run.found:
        phone = next(candidates, None)
        if phone is None:
            return
        try:
            outcome = await checker.check(phone, stats)
        except TransientApiError:
            run.failed.append(phone)
            continue
        except OrderApiError as exc:  # fatal, or the breaker is open: no point going on
            raise _Abort(exc) from exc
        except Exception as exc:  # a plug-in's bug: report it, don't read it as a "no"
            log.exception("the order API raised %s", type(exc).__name__)
            error = FatalApiError(f"the order API raised {type(exc).__name__}: {exc}")
            raise _Abort(error) from exc
        run.checked += 1
        if run.progress is not None:
            run.progress(run.name, run.checked, run.count)
        if outcome.has_orders:
            run.hits.append((phone, outcome))
            if run.mode == "first":
                run.found = True
                raise _Found


async def _pass(
    candidates: Iterable[str], count: int, checker: Checker, stats: CheckStats, run: _TierRun,
    workers: int,
) -> None:  # fmt: skip
    """Check ``candidates`` with at most ``workers`` in flight; stop early on ``_Found``."""
    it = iter(candidates)
    n = max(1, min(workers, count))
    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(_worker(it, checker, stats, run))
    except* _Found:
        pass


async def match_plan(
    plan_: TierPlan,
    checker: Checker,
    *,
    mode: Mode = "first",
    max_in_flight: int | None = None,
    progress: Progress | None = None,
) -> LookupResult:
    """Run a prepared plan against a checker. See :func:`find`."""
    started = time.perf_counter()
    stats = CheckStats()
    workers = max_in_flight or checker.limits.max_in_flight
    reports = [TierReport(name=t.name, candidates=t.count) for t in plan_.tiers]
    hits: list[Hit] = []
    status: Status = "not_found"
    reason: str | None = None
    for tier, report in zip(plan_.tiers, reports, strict=True):
        if tier.count == 0:
            report.status = "empty"
            continue
        t0 = time.perf_counter()
        run = _TierRun(tier.name, tier.count, mode, progress)
        if progress is not None:
            progress(tier.name, 0, tier.count)
        try:
            await _run_tier(tier, checker, stats, run, workers, report)
        except* _Abort as group:
            error = group.exceptions[0]
            assert isinstance(error, _Abort)
            report.status = "aborted"
            status, reason = "api_error", f"{tier.name} tier: {error.error}"
        finally:
            report.elapsed_ms = round((time.perf_counter() - t0) * 1000, 3)
            report.checked = run.checked
            report.hits = len(run.hits)
        hits.extend(
            Hit(phone=p, tier=tier.name, region=plan_.region_of(p), order_count=o.order_count)
            for p, o in run.hits
        )
        if hits:
            status = "matched"
            if report.unresolved:
                reason = (
                    f"{report.unresolved} candidates of the {tier.name} tier could not be "
                    "checked: there may be more hits"
                )
            report.status = "hit"
            break
        if status == "api_error":
            break
        if report.unresolved:
            report.status = "inconclusive"
            status = "inconclusive"
            reason = (
                f"{report.unresolved} of {tier.count} candidates in the {tier.name} tier could "
                "not be checked (the API kept failing); later tiers were not tried"
            )
            break
        report.status = "negative"
    first = hits[0] if hits else None
    return LookupResult(
        status=status,
        mask=str(plan_.mask),
        hint=str(plan_.region) if plan_.region else None,
        mode=mode,
        phone=first.phone if first else None,
        tier=first.tier if first else None,
        region=first.region if first else None,
        hits=hits,
        tiers=reports,
        checks_sent=stats.sent,
        retries=stats.retries,
        cache_hits=stats.cache_hits,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
        reason=reason,
        data_version=plan_.db.version,
    )


async def _run_tier(
    tier: Tier, checker: Checker, stats: CheckStats, run: _TierRun, workers: int,
    report: TierReport,
) -> None:  # fmt: skip
    await _pass(tier, tier.count, checker, stats, run, workers)
    report.errors = len(run.failed)
    if run.hits and run.mode == "first":
        return
    # One more try for what failed after the checker's retries, at the end of the tier.
    failed, run.failed = run.failed, []
    if failed:
        await _pass(failed, len(failed), checker, stats, run, workers)
    report.unresolved = len(run.failed)


async def find(
    mask: str | Mask | TierPlan,
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
    include_nonstandard: bool = False,
) -> LookupResult:
    """Find the number behind ``mask`` by checking candidates against ``api``, tier by tier.

    Tiers run in order city, province, national, unlocated; within a tier up to
    ``max_in_flight`` checks of this lookup run at once (``limits``, else the checker's). ``mode="first"`` stops at the first
    positive answer and cancels the checks still in flight; ``mode="all"`` finishes the
    hit's tier and reports every hit. Pass a shared ``checker`` so that limits, cache and
    breaker hold across lookups (without one, a checker is made for this call from ``api`` and
    ``limits``, default :data:`~lookup.models.DEFAULT_LIMITS`).

    Input errors (:class:`~lookup.errors.InputError`) are raised before any request.
    API trouble is reported in the result, never raised: ``inconclusive`` when checks
    kept failing, ``api_error`` for a fatal error or an open breaker.

    >>> async with HttpOrderApi("http://127.0.0.1:8080/orders?phone={phone}") as api:  # doctest: +SKIP
    ...     result = await find("138****1234", api=api, city="杭州")
    """
    if mode not in ("first", "all"):
        raise ConfigError(f"mode must be 'first' or 'all', got {mode!r}")
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
    )
    if checker is None:
        if api is None:
            raise TypeError("find() needs api= (an OrderApi) or checker=")
        checker = Checker(api, limits or DEFAULT_LIMITS)
    workers = (limits or checker.limits).max_in_flight
    result = await match_plan(plan_, checker, mode=mode, max_in_flight=workers, progress=progress)
    audit(result, caller)
    return result


def audit(result: LookupResult, caller: str | None) -> None:
    """Write the one audit line of a lookup (no full number unless the operator allows)."""
    if not audit_log.isEnabledFor(logging.INFO):
        return
    audit_log.info(
        "lookup mask=%s hint=%s status=%s tier=%s phone=%s checks=%d retries=%d elapsed_ms=%.0f"
        " caller=%s",
        mask_phone(result.mask),  # a mask that hides nothing is a full number
        result.hint or "-",
        result.status,
        result.tier or "-",
        mask_phone(result.phone) if result.phone else "-",
        result.checks_sent,
        result.retries,
        result.elapsed_ms,
        caller or "-",
        # The full number travels only as an attribute: the formatters of lookup.logs print
        # it when the operator turned audit_full_numbers on, and mask it otherwise.
        extra={"audit": True, "status": result.status, "full_phone": result.phone},
    )
