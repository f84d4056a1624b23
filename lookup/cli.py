"""The ``lookup`` command line: a thin shell over the library.

Exit codes: 0 matched (or the command did its job), 1 not found, 2 bad input or usage,
3 inconclusive or API failure. Heavy imports happen inside the subcommands so that a
cold ``lookup segment`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from lookup.candidates import TierPlan

__all__ = ["ExitStatus", "main"]


class ExitStatus(IntEnum):
    OK = 0
    MATCHED = 0
    NOT_FOUND = 1
    BAD_INPUT = 2
    FAILED = 3


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message style."""


def _add_region_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the customer is (all optional; several must agree)")
    g.add_argument("--city", help="city name: 杭州, 杭州市, 恩施土家族苗族自治州, 襄樊 ...")
    g.add_argument("--province", help="province name: 浙江, 浙江省, 广西壮族自治区, 粤 ...")
    g.add_argument("--area-code", dest="area_code", help="area code: 0571 (may mean several)")
    g.add_argument("--zip", help="zip code: 310000, 71000 (leading 0 may be dropped)")
    g.add_argument("--carrier", help="移动 / 联通 / 电信 / 广电 (or mobile, unicom ...)")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lookup",
        description="Find the order behind a masked Chinese mobile number (138****1234).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    seg = sub.add_parser("segment", help="what the database knows of a 7-digit segment")
    seg.add_argument("segment", help="the first 7 digits (or a whole number)")
    seg.add_argument("--json", action="store_true", help="print JSON")
    seg.add_argument("--data", help="a data folder other than the bundled one")
    seg.set_defaults(func=_cmd_segment)

    pl = sub.add_parser("plan", help="which numbers fit a mask, tier by tier (no requests)")
    pl.add_argument("mask", help="masked number: 138****1234, 138xxxx1234, +86 138 **** 1234")
    _add_region_options(pl)
    pl.add_argument("--max-candidates", type=int, default=10_000, dest="max_candidates")
    pl.add_argument("--seed", type=int, help="shuffle the order within tiers reproducibly")
    pl.add_argument("--list", dest="list_tier", metavar="TIER",
                    choices=["city", "province", "national", "unlocated"],
                    help="print the numbers of one tier")  # fmt: skip
    pl.add_argument("--json", action="store_true", help="print JSON")
    pl.add_argument("--data", help="a data folder other than the bundled one")
    pl.set_defaults(func=_cmd_plan)
    return parser


def _cmd_segment(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.segments import SegmentDB

    db = SegmentDB.load(args.data) if args.data else SegmentDB.default()
    info = db.segment(args.segment)
    if info is None:
        if args.json:
            out.write(json.dumps({"segment": args.segment[:7], "known": False}) + "\n")
        else:
            out.write(f"{args.segment[:7]}: not a segment the numbering plan allows\n")
        return ExitStatus.NOT_FOUND
    if args.json:
        out.write(json.dumps(info.as_dict(), ensure_ascii=False) + "\n")
        return ExitStatus.OK
    if not info.located:
        out.write(f"{info.segment}: allowed by the numbering plan, region unknown (unlocated)")
        out.write(f"; carrier {info.carrier}\n" if info.carrier else "\n")
        return ExitStatus.OK
    out.write(
        f"{info.segment}  {info.province} {info.city}  carrier {info.carrier}  "
        f"area code {info.area_code}  zip {info.zip}\n"
    )
    return ExitStatus.OK


def plan_summary(p: TierPlan) -> dict[str, Any]:
    """The JSON shape of a plan (used by ``plan --json`` and the service)."""
    return {
        "mask": str(p.mask),
        "region": p.region.as_dict() if p.region else None,
        "carrier": p.carrier,
        "total": p.total,
        "tiers": [{"name": t.name, "count": t.count} for t in p.tiers],
        "data_version": p.db.version,
    }


def _cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.candidates import plan
    from lookup.segments import SegmentDB

    db = SegmentDB.load(args.data) if args.data else SegmentDB.default()
    p = plan(
        args.mask,
        db,
        city=args.city,
        province=args.province,
        area_code=args.area_code,
        zip=args.zip,
        carrier=args.carrier,
        max_candidates=args.max_candidates,
        seed=args.seed,
    )
    if args.list_tier:
        tier = p.tier(args.list_tier)
        if args.json:
            out.write(json.dumps({"tier": tier.name, "numbers": list(tier)}) + "\n")
        else:
            out.writelines(n + "\n" for n in tier)
        return ExitStatus.OK
    if args.json:
        out.write(json.dumps(plan_summary(p), ensure_ascii=False) + "\n")
        return ExitStatus.OK
    where = f" in {p.region}" if p.region else ""
    out.write(f"{p.mask}{where}: {p.total:,} candidates\n")
    out.writelines(f"  {t.name:<10} {t.count:>7,}\n" for t in p.tiers)
    return ExitStatus.OK


_Handler = Callable[[argparse.Namespace, TextIO], int]


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:  # fmt: skip
    """Run the CLI; returns the exit status instead of exiting (``__main__`` exits)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    from lookup.errors import InputError, LookupFailure

    func: _Handler = args.func
    try:
        return func(args, out)
    except InputError as exc:
        err.write(f"lookup: error: {exc}\n")
        return ExitStatus.BAD_INPUT
    except LookupFailure as exc:
        err.write(f"lookup: error: {exc}\n")
        return ExitStatus.FAILED
    except BrokenPipeError:  # `lookup plan ... --list city | head`
        sys.stdout = None  # no flush error at exit
        return ExitStatus.OK
    except KeyboardInterrupt:
        err.write("lookup: interrupted\n")
        return 130
