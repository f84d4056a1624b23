"""``lookup demo``: the planted example lookups against the bundled mock order API.

stdout carries the table (or JSON lines); the header and the verdict go to stderr. The
audit lines go nowhere unless ``--audit-file`` (or ``LOOKUP_AUDIT_FILE``) names a file:
the demo's lookups are synthetic, and six audit lines between the table's rows hid it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from lookup.cli.common import ExitStatus, settings_from_args
from lookup.cli.conventions import audit_off_terminal
from lookup.cli.terminal import pad
from lookup.domain.i18n import _, pgettext
from lookup.runtime.logs import configure_logging

if TYPE_CHECKING:
    from lookup.domain.models import LookupResult

__all__ = ["cmd_demo"]


def _demo_cases() -> list[dict[str, Any]]:
    from lookup.domain.segments import SegmentDB

    path = SegmentDB.default().path.with_name("demo_cases.json")
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    # The demo always talks to the bundled mock, whatever API the environment configures.
    settings = settings_from_args(args).model_copy(
        update={
            "api_url": "demo",
            "api_plugin": None,
            "api_method": "GET",
            "api_headers": {},
            "api_token": None,
            "hit_field": "total",
            "batch_url": None,
        }
    )
    configure_logging(settings)
    if not settings.audit_file:
        audit_off_terminal()
    err = sys.stderr
    cases = _demo_cases()

    async def run() -> list[LookupResult]:
        from lookup.domain.models import LookupRequest
        from lookup.domain.segments import SegmentDB
        from lookup.runtime.engine import open_engine
        from lookup.runtime.lookups import LookupPath

        results = []
        async with open_engine(settings) as engine:
            path = LookupPath(engine.checker, SegmentDB.default(),
                              max_candidates=settings.max_candidates,
                              secrets=settings.secret_values())  # fmt: skip
            if not args.json:
                if not args.quiet:
                    err.write(_("lookup demo: {api}").format(api=engine.description) + "\n")
                    err.flush()
                out.write(
                    f"{pad(_('case'), 20)} {pad(_('mask'), 12)} {pad(_('hint'), 16)} "
                    f"{pad(_('status'), 10)} {pad(_('tier'), 10)} {pad(_('phone'), 12)} "
                    f"{_('numbers'):>7} {_('requests'):>8} {_('time'):>7}\n"
                )
            for case in cases:
                request = LookupRequest(mask=case["mask"], **case["hints"])
                result = await path.run(request, caller="demo", surface="cli")
                results.append(result)
                if args.json:
                    out.write(json.dumps({"case": case["name"], **result.model_dump(mode="json")},
                                         ensure_ascii=False) + "\n")  # fmt: skip
                else:
                    hint = " ".join(f"{v}" for v in case["hints"].values())
                    tier = pgettext("tier", result.tier) if result.tier else "-"
                    out.write(
                        f"{case['name']:<20} {case['mask']:<12} {pad(hint, 16)} "
                        f"{result.status:<10} "
                        f"{pad(tier, 10)} {result.phone or '-':<12} "
                        f"{result.numbers_checked:>7,} {result.requests:>8,} "
                        f"{result.elapsed_ms / 1000:>6.2f}s\n"
                    )
                out.flush()
        return results

    from lookup.runtime.loop import run as run_loop

    results = run_loop(run())
    wrong = [
        c["name"]
        for c, r in zip(cases, results, strict=True)
        if r.status != c["expected_status"] or r.phone != c["expected_phone"]
    ]
    if wrong:
        err.write(_("unexpected answers for: {cases}").format(cases=", ".join(wrong)) + "\n")
    elif not (args.json or args.quiet):
        err.write(
            _("all {n} demo lookups gave the expected answer (the orders are synthetic and "
              "planted one per tier).").format(n=len(cases)) + "\n"
            + _("try one yourself: {command}").format(
                command="lookup find '138****2046' --city 杭州 --api demo") + "\n"
        )  # fmt: skip
    return ExitStatus.FAILED if wrong else ExitStatus.OK
