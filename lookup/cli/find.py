"""``lookup find MASK`` (or ``lookup find -``: masks from stdin, one per line).

stdout carries the answer only: the ``matched ...`` / ``not found ...`` line, or the
:class:`~lookup.domain.models.LookupResult` as JSON. The plan line, "asking the order API",
the tier table, the counts, progress and warnings go to stderr; ``--quiet`` leaves only
the answer (and errors).

With ``-``: one answer per input line, in input order (``MASK<TAB>answer``, or one JSON
object per line; a line that is bad input gets its problem object and the others still
run). The exit status is the highest of the lines' statuses: 3 when any line was
inconclusive or failed, else 2 when any was bad input, else 1 when any was not found,
else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

from lookup.cli.common import ExitStatus, exit_status, settings_from_args
from lookup.cli.plan import hints, region_counts, sightings
from lookup.cli.terminal import Terminal, pad
from lookup.domain.i18n import _, pgettext, translate
from lookup.runtime.logs import configure_logging

if TYPE_CHECKING:
    from lookup.domain.hints import HintArgs
    from lookup.domain.models import LookupResult
    from lookup.domain.order import RegionOrder
    from lookup.domain.tiers import TierPlan
    from lookup.files.regions import RegionCounts
    from lookup.runtime.settings import Settings

__all__ = ["answer_line", "cmd_find", "format_result", "report_lines"]

Redact = Callable[[str], str]


def _tier(name: str) -> str:
    return pgettext("tier", name)


def report_lines(result: LookupResult, redact: Redact = str) -> list[str]:
    """The tier table and the counts (stderr)."""
    lines = []
    for t in result.tiers:
        name, status = _tier(t.name), pgettext("tier status", t.status)
        if t.status in ("empty", "skipped"):
            lines.append(f"  {pad(name, 10)} {t.candidates:>7,}  {status}")
            continue
        extra = _(", {n} failed checks").format(n=f"{t.errors:,}") if t.errors else ""
        extra += _(", {n} unresolved").format(n=f"{t.unresolved:,}") if t.unresolved else ""
        lines.append(f"  {pad(name, 10)} {t.candidates:>7,}  {pad(status, 12)} " + _(
            "{n} answered{extra} in {seconds} s").format(
            n=f"{t.checked:,}", extra=extra, seconds=f"{t.elapsed_ms / 1000:.2f}"))  # fmt: skip
    lines.append(_("numbers checked: {checked} ({cached} from cache); requests: {requests} "
                   "({retries} retries) in {seconds} s")
                 .format(checked=f"{result.numbers_checked:,}", cached=f"{result.cache_hits:,}",
                         requests=f"{result.requests:,}", retries=f"{result.retries:,}",
                         seconds=f"{result.elapsed_ms / 1000:.2f}"))  # fmt: skip
    return lines


def answer_line(result: LookupResult, redact: Redact = str) -> str:
    """The answer (stdout): ``matched PHONE ...`` per hit, ``not found: ...`` or the status
    and its reason, in the reader's language."""
    if result.status == "matched":
        lines = []
        for hit in result.hits:
            r = hit.region
            if r is not None and r.located:
                where = _("{province} {city}, {carrier}, area code {area_code}").format(
                    province=r.province, city=r.city, carrier=r.carrier, area_code=r.area_code)
            elif r and r.carrier:
                where = _("unlocated segment, {carrier}").format(carrier=r.carrier)
            else:
                where = _("unlocated segment")
            orders = (_(", {n} orders").format(n=f"{hit.order_count:,}")
                      if hit.order_count is not None else "")  # fmt: skip
            lines.append(_("matched {phone}  tier {tier}  ({where}){orders}").format(
                phone=hit.phone, tier=_tier(hit.tier), where=where, orders=orders))
        return "\n".join(lines)
    if result.status == "not_found":
        return _("not found: no number that fits {mask} has orders").format(mask=result.mask)
    return f"{result.status}: {translate(redact(result.reason or ''))}"


def format_result(result: LookupResult, redact: Redact = str) -> str:
    """The whole human report of a lookup: the tier table, the answer, the note, the counts."""
    lines = report_lines(result, redact)
    lines.insert(-1, answer_line(result, redact))
    if result.reason and result.status == "matched":
        lines.insert(-1, _("note: {reason}").format(reason=translate(redact(result.reason))))
    return "\n".join(lines) + "\n"


def _json(result: LookupResult, redact: Redact, *, indent: int | None) -> str:
    data = result.model_dump(mode="json")
    data["reason"] = redact(data["reason"]) if data["reason"] else data["reason"]
    return json.dumps(data, indent=indent, ensure_ascii=False) + "\n"


def cmd_find(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.domain.privacy import Redactor

    settings = settings_from_args(args)
    term = Terminal(sys.stderr)
    configure_logging(settings, stream=term)
    redact = Redactor(settings.secret_values())
    hint = hints(args)
    # The local learned counts order the plan now; shared ones (Redis) once it is open.
    learned = None if settings.shared_url else region_counts(args)
    if args.mask == "-":
        if args.also:
            from lookup.domain.errors import ConfigError

            raise ConfigError("--also goes with one MASK, not with '-' (masks from stdin)")
        masks = [line.strip() for line in sys.stdin if line.strip()]
        return _find_many(masks, args, out, term, settings, hint, learned, redact)
    # Input errors surface before any API is opened or request sent.
    p = _plan(args.mask, args, settings, hint, learned)
    replan = partial(_plan, args.mask, args, settings, hint)
    result = _run([p], args, settings, term, redact, talk=not args.quiet, one=True,
                  replan=replan)[0]  # fmt: skip
    _show(result, args, out, term, redact)
    return exit_status(result)


def _plan(mask: str, args: argparse.Namespace, settings: Settings, hint: HintArgs,
          learned: RegionCounts | RegionOrder | None) -> TierPlan:  # fmt: skip
    """The plan of ``mask``: in the learned order (counts, or an order read already),
    else nearer regions first."""
    from lookup.domain.order import NEARER, RegionOrder
    from lookup.domain.tiers import plan

    if learned is None:
        order = NEARER
    else:
        order = learned if isinstance(learned, RegionOrder) else learned.order()
    return plan(mask, max_candidates=settings.max_candidates, seed=args.seed,
                include_nonstandard=args.include_nonstandard, also=args.also,
                order=order, **hint)  # fmt: skip


def _plan_line(p: TierPlan, args: argparse.Namespace, term: Terminal) -> None:
    counts = ", ".join(f"{_tier(t.name)} {t.count:,}" for t in p.tiers)
    where = _(" in {region}").format(region=p.region) if p.region else ""
    term.write(_("{mask}{where}: {total} candidates ({counts})").format(
        mask=sightings(p, args), where=where, total=f"{p.total:,}",
        counts=counts) + "\n")  # fmt: skip
    if p.excluded:
        term.write(_("  left out: {reason}").format(reason=translate(p.excluded_reason or ""))
                   + "\n")  # fmt: skip
    term.flush()


def _show(result: LookupResult, args: argparse.Namespace, out: TextIO, term: Terminal,
          redact: Redact) -> None:  # fmt: skip
    """The answer on stdout; the rest (unless --quiet) and the note on stderr."""
    if args.json:
        out.write(_json(result, redact, indent=2))
        return
    if not args.quiet:
        for line in report_lines(result, redact)[:-1]:
            term.write(line + "\n")
    out.write(answer_line(result, redact) + "\n")
    out.flush()
    if result.reason and result.status == "matched":  # a warning: shown even with --quiet
        term.write(_("note: {reason}").format(reason=translate(redact(result.reason))) + "\n")
    if not args.quiet:
        term.write(report_lines(result, redact)[-1] + "\n")
    term.flush()


def _run(plans: list[TierPlan], args: argparse.Namespace, settings: Settings, term: Terminal,
         redact: Redact, *, talk: bool, one: bool = False,
         replan: Callable[[RegionOrder], TierPlan] | None = None) -> list[LookupResult]:  # fmt: skip
    """Look up every plan, one after the other, through one engine; ``one``: the plan
    line first (once the engine opened: an API that cannot open is a one-line error).
    Matched lookups are counted by region on the path when learning is on; with
    ``--shared`` the one plan is made again (``replan``) in the shared counts' order."""
    import asyncio

    async def run() -> list[LookupResult]:
        from lookup.cli.terminal import FindProgress
        from lookup.domain.models import LookupRequest
        from lookup.domain.segments import SegmentDB
        from lookup.engine.matcher import deadline_warning
        from lookup.runtime.engine import open_engine
        from lookup.runtime.lookups import LookupPath
        from lookup.runtime.regions import region_sink

        results = []
        # One lookup: a checker of its own, with no outcome cache or single flight to pay for.
        async with open_engine(settings, one_lookup=len(plans) == 1) as engine:
            regions = region_sink(settings, engine.checker)
            path = LookupPath(engine.checker, SegmentDB.default(),
                              max_candidates=settings.max_candidates,
                              secrets=settings.secret_values(), regions=regions)  # fmt: skip
            if regions is not None and settings.shared_url and replan is not None:
                order = await regions.refresh()
                if order.learned:  # the same tiers, the shared counts' order inside them
                    plans[0] = replan(order)
            if talk and one:
                _plan_line(plans[0], args, term)
            if talk:
                term.write(redact(_("asking the {api}").format(api=engine.description)) + "\n")
                term.flush()
            for p in plans:
                limits = engine.limits
                per_request = limits.batch_size if engine.checker.supports_batch else 1
                too_slow = deadline_warning(p.total, limits.max_per_second, limits.deadline,
                                            per_request)  # fmt: skip
                if too_slow is not None and not args.quiet:  # said before the first check
                    term.write(redact(_("lookup: warning: {text}").format(
                        text=translate(too_slow))) + "\n")  # fmt: skip
                    term.flush()
                # planned already (input errors before the API opened): the request
                # carries the mode
                request = LookupRequest.model_construct(mask=str(p.mask), mode=args.mode)
                if not talk:
                    results.append(await path.run(request, caller="cli", surface="cli",
                                                  planned=p))  # fmt: skip
                    continue
                progress = FindProgress(term, engine.checker)

                async def tick(progress: FindProgress = progress) -> None:
                    while True:  # a stalled lookup (API down, paused) still says so
                        await asyncio.sleep(1.0)
                        progress.tick()

                ticker = asyncio.create_task(tick())
                try:
                    results.append(await path.run(request, caller="cli", surface="cli",
                                                  planned=p, progress=progress))  # fmt: skip
                finally:
                    ticker.cancel()
                    progress.done()
        return results

    from lookup.runtime.loop import run as run_loop

    return run_loop(run())


def _find_many(masks: list[str], args: argparse.Namespace, out: TextIO, term: Terminal,
               settings: Settings, hint: HintArgs, learned: RegionCounts | None,
               redact: Redact) -> int:  # fmt: skip
    """``lookup find -``: plan every line first (a bad line is answered as bad input),
    then look up the rest through one engine; answers in input order."""
    from lookup.cli.conventions import problem
    from lookup.domain.errors import InputError
    from lookup.domain.privacy import escape_controls

    planned: list[TierPlan | InputError] = []
    for mask in masks:
        try:
            planned.append(_plan(mask, args, settings, hint, learned))
        except InputError as exc:
            planned.append(exc)
    plans = [p for p in planned if not isinstance(p, InputError)]
    talk = not args.quiet
    if talk:
        term.write(_("{n} masks from stdin, {bad} of them bad input").format(
            n=f"{len(masks):,}", bad=f"{len(masks) - len(plans):,}") + "\n")  # fmt: skip
    results = iter(_run(plans, args, settings, term, redact, talk=talk) if plans else [])
    worst: int = ExitStatus.OK
    for mask, p in zip(masks, planned, strict=True):
        shown = escape_controls(redact(mask[:64]))
        if isinstance(p, InputError):
            worst = max(worst, ExitStatus.BAD_INPUT)
            detail = escape_controls(redact(str(p)))
            if args.json:
                data: dict[str, Any] = problem(detail, kind=type(p).__name__)
                out.write(json.dumps({"mask": shown, **data}, ensure_ascii=False) + "\n")
            else:
                out.write(f"{shown}\t" + _("bad input: {detail}").format(
                    detail=translate(detail)) + "\n")  # fmt: skip
            continue
        result = next(results)
        worst = max(worst, exit_status(result))
        if args.json:
            out.write(_json(result, redact, indent=None))
        else:
            answer = answer_line(result, redact).replace("\n", f"\n{shown}\t")
            out.write(f"{shown}\t{answer}\n")
    out.flush()
    return worst
