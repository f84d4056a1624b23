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
from typing import TYPE_CHECKING, Any, Final, NoReturn, TextIO

from lookup.cli.common import (
    ExitStatus,
    Terminal,
    add_api_options,
    add_hint_options,
    add_logging_options,
    exit_status,
    pad,
    settings_from_args,
)
from lookup.runtime.logs import configure_logging

if TYPE_CHECKING:
    from lookup.domain.hints import HintArgs
    from lookup.domain.models import LookupResult
    from lookup.domain.tiers import TierName, TierPlan
    from lookup.files.regions import RegionCounts

__all__ = ["ExitStatus", "main"]


_Handler = Callable[[argparse.Namespace, TextIO], int]

_EPILOG: Final = """\
examples:
  lookup find '138****2046' --city 杭州 --api demo     try it against the bundled mock
  lookup find '138****1234' --city 杭州 --api 'https://orders.example/v1?phone={phone}' \\
      --header 'X-Api-Key: ...' --rate 20
  lookup plan '138****1234' --city 杭州                 count the candidates, no requests
  lookup segment 1380571                              what a 7-digit segment is
  lookup batch masks.csv --out results.csv --api demo  many masks, resumable
  lookup serve --port 8000 --api demo                  the HTTP service
  lookup config --format env                          the effective settings

exit codes:
  0  matched (or the command did its job)
  1  not found: no number that fits has orders
  2  bad input or usage (nothing was sent to the order API)
  3  inconclusive (some checks kept failing) or order-API failure
"""

_BATCH_EPILOG: Final = """\
examples:
  lookup batch masks.csv --out results.csv --api demo       CSV in, CSV out (cells made safe)
  lookup batch masks.csv --out results.csv --api demo --resume   after an interruption
  cat masks.jsonl | lookup batch - --out - --journal run.journal --api demo

exit codes:
  0  every row got a definite answer (matched, not_found or invalid)
  2  bad input or usage (no row was looked up)
  3  some rows ended inconclusive or api_error: run again with --resume --retry-failed
"""

_SERVE_EPILOG: Final = """\
examples:
  lookup serve --port 8000 --api demo
  LOOKUP_SERVICE_TOKENS='<16+ random characters>' lookup serve --host 0.0.0.0 --api ...

exit codes:
  0  stopped (SIGINT / SIGTERM)
  2  bad input: settings, a busy port, an address this machine cannot bind
"""


class _Parser(argparse.ArgumentParser):
    """Usage errors: one line and exit 2 (argparse would print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def _add_nonstandard_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--include-nonstandard",
        dest="include_nonstandard",
        action="store_true",
        help="also check segments the numbering plan rejects (data-only/IoT ranges), last",
    )


def _add_also_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--also", action="append", default=[], metavar="MASK",
        help="another sighting of the same number (1385715****), intersected with MASK; "
        "repeat for more",
    )  # fmt: skip


def _add_learn_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--learn-regions", dest="learn_regions", action="store_const", const=True,
        help="check the regions of your own past hits first (counts per region only, in "
        "$XDG_STATE_HOME/lookup/regions.json; LOOKUP_LEARN_REGIONS)",
    )  # fmt: skip


def _build_parser() -> argparse.ArgumentParser:
    from lookup import __version__

    parser = _Parser(
        prog="lookup",
        description="Find the order behind a masked Chinese mobile number (138****1234).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lookup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    seg = sub.add_parser("segment", help="what the database knows of a 7-digit segment")
    seg.add_argument("segment", help="the first 7 digits (or a whole number)")
    seg.add_argument("--json", action="store_true", help="print JSON")
    seg.add_argument("--data", help="a data folder other than the bundled one")
    seg.set_defaults(func=_cmd_segment)

    pl = sub.add_parser("plan", help="which numbers fit a mask, tier by tier (no requests)")
    pl.add_argument("mask", help="masked number: 138****1234, 138xxxx1234, +86 138 **** 1234")
    _add_also_option(pl)
    add_hint_options(pl)
    pl.add_argument("--max-candidates", type=int, default=10_000, dest="max_candidates")
    pl.add_argument("--seed", type=int, help="shuffle the order within tiers reproducibly")
    pl.add_argument("--list", dest="list_tier", metavar="TIER",
                    choices=["city", "province", "national", "unlocated", "nonstandard"],
                    help="print the numbers of one tier")  # fmt: skip
    _add_nonstandard_option(pl)
    _add_learn_option(pl)
    pl.add_argument("--json", action="store_true", help="print JSON")
    pl.add_argument("--data", help="a data folder other than the bundled one")
    pl.set_defaults(func=_cmd_plan)

    fd = sub.add_parser(
        "find",
        help="find the number behind a mask by asking the order API",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fd.add_argument("mask", help="masked number: 138****1234, 138xxxx1234, +86 138 **** 1234")
    _add_also_option(fd)
    add_hint_options(fd)
    add_api_options(fd)
    fd.add_argument(
        "--mode",
        choices=["first", "all"],
        default="first",
        help="first: stop at the first hit (default); all: every hit of its tier",
    )
    fd.add_argument("--seed", type=int, help="shuffle the order within tiers reproducibly")
    _add_nonstandard_option(fd)
    _add_learn_option(fd)
    fd.add_argument("--json", action="store_true", help="print the result as JSON")
    fd.set_defaults(func=_cmd_find)

    st = sub.add_parser("stats", help="what this machine has learned: hits per region")
    st.add_argument("what", choices=["regions"], help="regions: the learned region counts")
    st.add_argument("--json", action="store_true", help="print JSON")
    add_logging_options(st)
    st.set_defaults(func=_cmd_stats)

    dm = sub.add_parser("demo", help="run example lookups against the bundled mock order API")
    dm.add_argument("--json", action="store_true", help="print the results as JSON lines")
    add_logging_options(dm)
    dm.set_defaults(func=_cmd_demo)

    mk = sub.add_parser(
        "mock-api",
        add_help=False,
        help="run the bundled mock order API (synthetic orders, fault knobs)",
    )
    mk.add_argument("args", nargs=argparse.REMAINDER)
    mk.set_defaults(func=_cmd_mock_api)

    cf = sub.add_parser("config", help="print the effective settings (secrets redacted)")
    add_api_options(cf)
    cf.add_argument("--format", dest="config_format", choices=["env", "json"], default="env",
                    help="env: LOOKUP_*=value lines a shell can source back (default); json")
    cf.add_argument("--json", dest="config_format", action="store_const", const="json",
                    help="the same as --format json")
    cf.set_defaults(func=_cmd_config)

    bt = sub.add_parser("batch", help="look up many masks from a CSV or JSONL file",
                        epilog=_BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    bt.add_argument("input", metavar="IN",
                    help="CSV with a header (mask, id, city, ...) or JSONL; '-' reads stdin")  # fmt: skip
    bt.add_argument("--out", required=True, metavar="OUT",
                    help="where the results go: a new path or a regular file; '-' = stdout")  # fmt: skip
    bt.add_argument("--journal", metavar="PATH",
                    help="the journal (default OUT.journal; needed with --out - to resume)")  # fmt: skip
    bt.add_argument("--format", choices=["jsonl", "csv"], help="output format (default: by OUT)")
    bt.add_argument("--encoding", metavar="NAME",
                    help="input encoding (default: UTF-8 with or without BOM, else GB18030)")  # fmt: skip
    bt.add_argument("--csv-bom", action="store_true", help="write a UTF-8 BOM (for Excel)")
    bt.add_argument("--resume", action="store_true", help="continue an interrupted run")
    bt.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-run the rows that ended inconclusive or api_error",
    )
    bt.add_argument(
        "--lookups-in-flight",
        type=int,
        default=8,
        metavar="N",
        help="lookups at once (their checks share one limit; default 8)",
    )
    bt.add_argument("--mode", choices=["first", "all"], default="first")
    bt.add_argument("--engine", choices=["local", "ray"], default="local",
                    help="local: this process (default); ray: Ray actors, the journal here "
                         "(the [ray] extra)")  # fmt: skip
    bt.add_argument("--ray-address", metavar="ADDR",
                    help="the Ray cluster: 'auto', ray://HOST:PORT or HOST:PORT (default: "
                         "start a local Ray)")  # fmt: skip
    bt.add_argument("--ray-actors", type=int, metavar="N",
                    help="lookup actors, each one API session and checker (default: the "
                         "cluster's CPUs); --lookups-in-flight is per actor")  # fmt: skip
    add_api_options(bt)
    bt.set_defaults(func=_cmd_batch)

    sv = sub.add_parser("serve", help="run the HTTP service (POST /v1/lookups ...)",
                        epilog=_SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sv.add_argument("--host", dest="service_host", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", dest="service_port", type=int, help="port (default 8000)")
    sv.add_argument("--workers", type=int, default=1, metavar="N",
                    help="worker processes behind the port, on gunicorn (needs --shared and "
                    "the [workers] extra; default 1: one process, no gunicorn)")  # fmt: skip
    add_api_options(sv)
    sv.set_defaults(func=_cmd_serve)
    return parser


def _cmd_batch(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.cli.batch import cmd_batch  # imported when it runs: keeps `lookup plan` fast

    return cmd_batch(args, out)


def _cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.cli.serve import cmd_serve  # imported when it runs: keeps `lookup plan` fast

    return cmd_serve(args, out)


def _cmd_segment(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.domain.segments import SegmentDB

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
    if not info.standard:
        out.write(
            f"{info.segment}: outside the numbering plan (data-only/IoT or unassigned block): "
            "not a candidate unless --include-nonstandard\n"
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
        "first_regions": {
            name: first_regions(p, name) for name in ("province", "national")
        },
        "excluded": p.excluded,
        "excluded_reason": p.excluded_reason,
        "data_version": p.db.version,
    }


def first_regions(p: TierPlan, name: TierName, n: int = 5) -> list[str]:
    """The first ``n`` regions a tier checks (cities in the province tier, provinces in the
    national tier, the city itself in the city tier), in its order."""
    seen: list[str] = []
    if name == "unlocated" or name == "nonstandard":
        return seen
    for seg in p.tier(name).segments:
        info = p.db.segment(seg)
        label = (info.province if name == "national" else info.city) if info else None
        if label and label not in seen:
            seen.append(label)
            if len(seen) == n:
                break
    return seen


def _region_counts(args: argparse.Namespace) -> RegionCounts | None:
    """The learned counts when --learn-regions / LOOKUP_LEARN_REGIONS is on (or a --config
    may say so). Without any of them the settings are not loaded: ``plan`` starts fast."""
    import os

    env = {k.upper(): v for k, v in os.environ.items()}
    if not (getattr(args, "learn_regions", False) or getattr(args, "config", None)
            or env.get("LOOKUP_LEARN_REGIONS") or env.get("LOOKUP_CONFIG")):  # fmt: skip
        return None
    settings = settings_from_args(args)
    if not settings.learn_regions:
        return None
    from lookup.files.regions import RegionCounts

    return RegionCounts(settings.regions_file)


def _cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.files.regions import RegionCounts

    settings = settings_from_args(args)
    store = RegionCounts(settings.regions_file)
    counts = sorted(store.counts().items(), key=lambda kv: (-kv[1], kv[0]))
    total = sum(n for _, n in counts)
    if args.json:
        out.write(json.dumps({"file": str(store.path), "learning": settings.learn_regions,
                              "threshold": store.threshold, "hits": total,
                              "counts": dict(counts)}, ensure_ascii=False) + "\n")  # fmt: skip
        return ExitStatus.OK
    state = "on" if settings.learn_regions else "off (--learn-regions, LOOKUP_LEARN_REGIONS)"
    used = "in use" if total >= store.threshold else f"used from {store.threshold} hits"
    out.write(f"{store.path}: {total:,} hits in {len(counts)} regions ({used}); learning {state}\n")
    out.writelines(f"  {pad(label, 10)} {n:>7,}\n" for label, n in counts)
    if not counts:
        out.write("  (no hits counted yet; delete the file to reset the counts)\n")
    return ExitStatus.OK


def _cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.domain.order import NEARER
    from lookup.domain.segments import SegmentDB
    from lookup.domain.tiers import plan

    db = SegmentDB.load(args.data) if args.data else SegmentDB.default()
    hints = _hints(args)
    counts = _region_counts(args)
    p = plan(args.mask, db, max_candidates=args.max_candidates, seed=args.seed,
             include_nonstandard=args.include_nonstandard, also=args.also,
             order=counts.order() if counts else NEARER, **hints)  # fmt: skip
    if args.list_tier:
        if args.list_tier == "nonstandard" and not args.include_nonstandard:
            from lookup.domain.errors import ConfigError

            raise ConfigError("--list nonstandard needs --include-nonstandard")
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
    out.write(f"{_sightings(p, args)}{where}: {p.total:,} candidates\n")
    width = max(10, *(len(t.name) for t in p.tiers))
    out.writelines(f"  {t.name:<{width}} {t.count:>7,}\n" for t in p.tiers)
    for name in ("province", "national"):
        first = first_regions(p, name)
        if len(first) > 1:
            out.write(f"  {name} checks first: {', '.join(first)}\n")
    if p.excluded:
        out.write(f"  {'excluded':<{width}} {p.excluded:>7,}  {p.excluded_reason}\n")
    return ExitStatus.OK


def _sightings(p: TierPlan, args: argparse.Namespace) -> str:
    """The mask as the header shows it: the sightings as given, not their (maybe full)
    intersection, which is not yet known to be anyone's number."""
    if not args.also:
        return str(p.mask)
    from lookup.domain.masks import parse_mask

    return " + ".join(str(parse_mask(m)) for m in (args.mask, *args.also))


def _hints(args: argparse.Namespace) -> HintArgs:
    """The hint options, read as :class:`~lookup.domain.models.Hints` reads them, without
    pydantic (``plan`` sends nothing and starts without it); a bad value is exit 2."""
    from lookup.domain.hints import HINT_FIELDS, hint_args

    return hint_args({name: getattr(args, name, None) for name in HINT_FIELDS})


def format_result(result: LookupResult, redact: Callable[[str], str] = str) -> str:
    """The human report of a lookup; ``redact`` cleans the reasons (API error texts)."""
    lines = []
    for t in result.tiers:
        extra = f", {t.errors} failed checks" if t.errors else ""
        extra += f", {t.unresolved} unresolved" if t.unresolved else ""
        if t.status in ("empty", "skipped"):
            lines.append(f"  {t.name:<10} {t.candidates:>7,}  {t.status}")
        else:
            lines.append(
                f"  {t.name:<10} {t.candidates:>7,}  {t.status:<12} {t.checked:,} answered"
                f"{extra} in {t.elapsed_ms / 1000:.2f} s"
            )
    if result.status == "matched":
        for hit in result.hits:
            r = hit.region
            where = (
                f"{r.province} {r.city}, {r.carrier}, area code {r.area_code}"
                if r is not None and r.located
                else f"unlocated segment{', ' + r.carrier if r and r.carrier else ''}"
            )
            orders = f", {hit.order_count} orders" if hit.order_count is not None else ""
            lines.append(f"matched {hit.phone}  tier {hit.tier}  ({where}){orders}")
    elif result.status == "not_found":
        lines.append(f"not found: no number that fits {result.mask} has orders")
    else:
        lines.append(f"{result.status}: {redact(result.reason or '')}")
    if result.reason and result.status == "matched":
        lines.append(f"note: {redact(result.reason)}")
    lines.append(
        f"checks: {result.checks_sent:,} sent ({result.retries:,} retries, "
        f"{result.cache_hits:,} from cache) in {result.elapsed_ms / 1000:.2f} s"
    )
    return "\n".join(lines) + "\n"


def _cmd_find(args: argparse.Namespace, out: TextIO) -> int:
    import asyncio

    from lookup.domain.order import NEARER
    from lookup.domain.privacy import Redactor
    from lookup.domain.tiers import plan

    settings = settings_from_args(args)
    term = Terminal(sys.stderr)
    configure_logging(settings, stream=term)
    redact = Redactor(settings.secret_values())
    quiet = args.quiet
    hints = _hints(args)
    learned = _region_counts(args)
    # Input errors surface before any API is opened or request sent.
    p = plan(args.mask, max_candidates=settings.max_candidates, seed=args.seed,
             include_nonstandard=args.include_nonstandard, also=args.also,
             order=learned.order() if learned else NEARER, **hints)  # fmt: skip
    if not (args.json or quiet):
        counts = ", ".join(f"{t.name} {t.count:,}" for t in p.tiers)
        where = f" in {p.region}" if p.region else ""
        out.write(f"{_sightings(p, args)}{where}: {p.total:,} candidates ({counts})\n")
        if p.excluded:
            out.write(f"  left out: {p.excluded_reason}\n")
        out.flush()

    async def run() -> LookupResult:
        from lookup.cli.common import FindProgress
        from lookup.domain.models import LookupRequest
        from lookup.domain.segments import SegmentDB
        from lookup.runtime.engine import open_engine
        from lookup.runtime.lookups import LookupPath

        async with open_engine(settings, one_lookup=True) as engine:  # one lookup: no cache
            path = LookupPath(engine.checker, SegmentDB.default(),
                              max_candidates=settings.max_candidates,
                              secrets=settings.secret_values())  # fmt: skip
            # planned already (input errors before the API opened): the request carries the mode
            request = LookupRequest.model_construct(mask=args.mask, mode=args.mode)
            if not (args.json or quiet):
                out.write(redact(f"asking the {engine.description}\n"))
                out.flush()
            if quiet:
                return await path.run(request, caller="cli", surface="cli", planned=p)
            progress = FindProgress(term, engine.checker)

            async def tick() -> None:
                while True:  # a stalled lookup (API down, paused) still says so
                    await asyncio.sleep(1.0)
                    progress.tick()

            ticker = asyncio.create_task(tick())
            try:
                return await path.run(request, caller="cli", surface="cli", planned=p,
                                      progress=progress)  # fmt: skip
            finally:
                ticker.cancel()
                progress.done()

    from lookup.runtime.loop import run as run_loop

    result = run_loop(run())
    if learned is not None:
        learned.record(result)  # the one count of this lookup (counts per region only)
    if args.json:
        data = result.model_dump(mode="json")
        data["reason"] = redact(data["reason"]) if data["reason"] else data["reason"]
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        out.write(format_result(result, redact))
    return exit_status(result)


def _demo_cases() -> list[dict[str, Any]]:
    from lookup.domain.segments import SegmentDB

    path = SegmentDB.default().path.with_name("demo_cases.json")
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
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
    cases = _demo_cases()

    async def run() -> list[LookupResult]:
        from lookup.engine.matcher import find
        from lookup.runtime.engine import open_engine

        results = []
        async with open_engine(settings) as engine:
            if not args.json:
                out.write(f"lookup demo: {engine.description}\n\n")
                out.write(f"{'case':<20} {'mask':<12} {'hint':<16} {'status':<10} "
                          f"{'tier':<10} {'phone':<12} {'checks':>6} {'time':>7}\n")  # fmt: skip
            for case in cases:
                result = await find(case["mask"], checker=engine.checker, caller="demo",
                                    **case["hints"])  # fmt: skip
                results.append(result)
                if args.json:
                    out.write(json.dumps({"case": case["name"], **result.model_dump(mode="json")},
                                         ensure_ascii=False) + "\n")  # fmt: skip
                else:
                    hint = " ".join(f"{v}" for v in case["hints"].values())
                    out.write(
                        f"{case['name']:<20} {case['mask']:<12} {pad(hint, 16)} "
                        f"{result.status:<10} "
                        f"{result.tier or '-':<10} {result.phone or '-':<12} "
                        f"{result.checks_sent:>6,} {result.elapsed_ms / 1000:>6.2f}s\n"
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
    if not args.json:
        if wrong:
            out.write(f"\nunexpected answers for: {', '.join(wrong)}\n")
        else:
            out.write(
                f"\nall {len(cases)} demo lookups gave the expected answer "
                "(the orders are synthetic and planted one per tier).\n"
                "try one yourself: lookup find '138****2046' --city 杭州 --api demo\n"
            )
    return ExitStatus.FAILED if wrong else ExitStatus.OK


def _cmd_mock_api(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.mockapi.server import main as mock_main
    try:
        mock_main(list(args.args), prog="lookup mock-api")
    except SystemExit as exc:
        return int(exc.code or 0)
    return ExitStatus.OK


def _cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_from_args(args)
    if args.config_format == "json":
        out.write(json.dumps(settings.redacted(), ensure_ascii=False, indent=2) + "\n")
    else:
        out.write(settings.as_env())
    return ExitStatus.OK


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:  # fmt: skip
    """Run the CLI; returns the exit status instead of exiting (``__main__`` exits)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mock-api"]:  # its own parser and --help (argparse.REMAINDER can't)
        return _cmd_mock_api(argparse.Namespace(args=argv[1:]), out)
    parser = _build_parser()
    import contextlib

    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    from lookup.domain.errors import InputError, LookupFailure
    from lookup.domain.privacy import Redactor, escape_controls

    func: _Handler = args.func
    redact = Redactor()  # the error's text may quote a plug-in's message or a URL

    def safe(text: str) -> str:  # ... and an ANSI escape or a line break of its own
        return escape_controls(redact(text))
    try:
        return func(args, out)
    except InputError as exc:
        err.write(f"lookup: error: {safe(str(exc))}\n")
        return ExitStatus.BAD_INPUT
    except LookupFailure as exc:
        err.write(f"lookup: error: {safe(str(exc))}\n")
        return ExitStatus.FAILED
    except BrokenPipeError:  # `lookup plan ... --list city | head`
        sys.stdout = None  # no flush error at exit
        return ExitStatus.OK
    except KeyboardInterrupt:
        err.write("lookup: interrupted\n")
        return 130
