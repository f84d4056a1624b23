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
    from lookup.models import LookupResult
    from lookup.settings import Settings

__all__ = ["ExitStatus", "main"]


_Handler = Callable[[argparse.Namespace, TextIO], int]


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


def _add_nonstandard_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--include-nonstandard",
        dest="include_nonstandard",
        action="store_true",
        help="also check segments the numbering plan rejects (data-only/IoT ranges), last",
    )


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
                    choices=["city", "province", "national", "unlocated", "nonstandard"],
                    help="print the numbers of one tier")  # fmt: skip
    _add_nonstandard_option(pl)
    pl.add_argument("--json", action="store_true", help="print JSON")
    pl.add_argument("--data", help="a data folder other than the bundled one")
    pl.set_defaults(func=_cmd_plan)

    fd = sub.add_parser("find", help="find the number behind a mask by asking the order API")
    fd.add_argument("mask", help="masked number: 138****1234, 138xxxx1234, +86 138 **** 1234")
    _add_region_options(fd)
    add_api_options(fd)
    fd.add_argument(
        "--mode",
        choices=["first", "all"],
        default="first",
        help="first: stop at the first hit (default); all: every hit of its tier",
    )
    fd.add_argument("--seed", type=int, help="shuffle the order within tiers reproducibly")
    _add_nonstandard_option(fd)
    fd.add_argument("--json", action="store_true", help="print the result as JSON")
    fd.set_defaults(func=_cmd_find)

    dm = sub.add_parser("demo", help="run example lookups against the bundled mock order API")
    dm.add_argument("--json", action="store_true", help="print the results as JSON lines")
    _add_logging_options(dm)
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
    cf.add_argument("--json", action="store_true", help="print JSON")
    cf.set_defaults(func=_cmd_config)

    bt = sub.add_parser("batch", help="look up many masks from a CSV or JSONL file")
    bt.add_argument("input", metavar="IN", help="CSV with a header (mask, id, city, ...) or JSONL")
    bt.add_argument("--out", required=True, metavar="OUT", help="where the results go")
    bt.add_argument("--format", choices=["jsonl", "csv"], help="output format (default: by OUT)")
    bt.add_argument("--csv-bom", action="store_true", help="write a UTF-8 BOM (for Excel)")
    bt.add_argument("--resume", action="store_true", help="continue an interrupted run")
    bt.add_argument("--retry-failed", action="store_true",
                    help="re-run the rows that ended inconclusive or api_error")
    bt.add_argument("--lookups-in-flight", type=int, default=8, metavar="N",
                    help="lookups at once (their checks share one limit; default 8)")
    bt.add_argument("--mode", choices=["first", "all"], default="first")
    add_api_options(bt)
    bt.set_defaults(func=_lazy("lookup.batch", "cmd_batch"))

    sv = sub.add_parser("serve", help="run the HTTP service (POST /v1/lookups ...)")
    sv.add_argument("--host", dest="service_host", help="address to bind (default 127.0.0.1)")
    sv.add_argument("--port", dest="service_port", type=int, help="port (default 8000)")
    add_api_options(sv)
    sv.set_defaults(func=_lazy("lookup.service", "cmd_serve"))
    return parser


def _lazy(module: str, name: str) -> _Handler:
    """A handler imported only when its subcommand runs (keeps `lookup segment` fast)."""

    def handler(args: argparse.Namespace, out: TextIO) -> int:
        import importlib

        func: _Handler = getattr(importlib.import_module(module), name)
        return func(args, out)

    return handler


def _add_logging_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("logging")
    g.add_argument("--config", metavar="FILE", help="TOML settings file (see `lookup config`)")
    g.add_argument(
        "--log-level",
        dest="log_level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    g.add_argument("--log-format", dest="log_format", choices=["text", "json"])


def _rate(text: str) -> str:
    if text.strip().lower() in ("none", "off", "0", "unlimited"):
        return "none"
    try:
        if float(text) <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--rate takes checks per second (> 0) or 'none', got {text!r}"
        ) from None
    return text


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("--header takes 'Name: value'")
    return name.strip(), value.strip()


def add_api_options(p: argparse.ArgumentParser) -> None:
    """The order-API, limit and logging options shared by find, batch, serve and config."""
    g = p.add_argument_group("order API (or LOOKUP_API_URL / --config)")
    g.add_argument(
        "--api",
        dest="api_url",
        metavar="URL",
        help="URL template with {phone} (GET) or POST target; 'demo' = bundled mock; "
        "postgresql://USER@HOST:PORT/DB = a PostgreSQL orders table",
    )
    g.add_argument(
        "--api-plugin",
        dest="api_plugin",
        metavar="MODULE:ATTR",
        help="an OrderApi plug-in, e.g. mycompany.orders:make_api",
    )
    g.add_argument(
        "--header",
        dest="headers",
        action="append",
        type=_header,
        metavar="'N: V'",
        help="extra request header (repeatable); values are never logged",
    )
    g.add_argument(
        "--hit-field",
        dest="hit_field",
        help="dotted JSON path to an order count (> 0 = orders) or a boolean",
    )
    g.add_argument("--method", dest="api_method", type=str.upper, choices=["GET", "POST"])
    g.add_argument("--batch-url", dest="batch_url", help="batch endpoint (POST {phones: [...]})")
    g = p.add_argument_group(
        "PostgreSQL order source (--api postgresql://USER@HOST:PORT/DB; password from the URL, "
        "PGPASSWORD or ~/.pgpass; needs the [postgres] extra)"
    )
    g.add_argument(
        "--sql",
        dest="sql",
        metavar="QUERY",
        help="query taking $1 (text[]) returning (phone[, count]) rows, e.g. "
        "'SELECT phone, count(*) FROM orders WHERE phone = ANY($1::text[]) GROUP BY phone'",
    )
    g.add_argument("--sql-table", dest="sql_table", metavar="TABLE",
                   help="orders table of the default query (default orders)")  # fmt: skip
    g.add_argument("--sql-column", dest="sql_column", metavar="COLUMN",
                   help="its phone column (default phone)")  # fmt: skip
    g = p.add_argument_group("limits (polite defaults: 16 in flight, 50 checks/s)")
    g.add_argument("--max-in-flight", dest="max_in_flight", type=int, metavar="N")
    g.add_argument("--rate", type=_rate, metavar="PER_S", help="checks per second, or 'none'")
    g.add_argument(
        "--timeout",
        dest="total_timeout",
        type=float,
        metavar="S",
        help="seconds for one check (connect and read are capped by it)",
    )
    g.add_argument(
        "--max-candidates",
        dest="max_candidates",
        type=int,
        metavar="N",
        help="refuse masks with more candidates (default 10,000)",
    )
    g.add_argument(
        "--audit-full-numbers",
        dest="audit_full_numbers",
        action="store_const",
        const=True,
        help="put the full matched number in the audit line",
    )
    _add_logging_options(p)


_OPTION_FIELDS = (
    "api_url",
    "api_plugin",
    "hit_field",
    "api_method",
    "batch_url",
    "sql",
    "sql_table",
    "sql_column",
    "max_in_flight",
    "rate",
    "total_timeout",
    "max_candidates",
    "audit_full_numbers",
    "log_level",
    "log_format",
)


def settings_from_args(args: argparse.Namespace, **more: Any) -> Settings:
    """Settings: these options > LOOKUP_* env > --config file > defaults."""
    from lookup.settings import load_settings

    overrides = {name: getattr(args, name, None) for name in _OPTION_FIELDS}
    headers = getattr(args, "headers", None)
    if headers:
        overrides["api_headers"] = dict(headers)
    if overrides["total_timeout"] is not None:
        t = overrides["total_timeout"]
        overrides["connect_timeout"] = min(t, 5.0)
        overrides["read_timeout"] = t
    # An API named on the command line beats one of the other kind from env or file.
    if overrides["api_url"] is not None and overrides["api_plugin"] is None:
        overrides["api_plugin"] = ""
    elif overrides["api_plugin"] is not None and overrides["api_url"] is None:
        overrides["api_url"] = ""
    overrides.update(more)
    return load_settings(getattr(args, "config", None), **overrides)


def configure_logging(settings: Settings) -> None:
    from lookup.logs import setup_logging

    secrets = [v.get_secret_value() for v in settings.api_headers.values()]
    secrets += [t.get_secret_value() for t in settings.service_tokens]
    if settings.api_token is not None:
        secrets.append(settings.api_token.get_secret_value())
    from lookup.orders.base import url_password

    secrets += [pw for pw in (url_password(settings.api_url),) if pw]
    setup_logging(
        settings.log_level,
        settings.log_format,
        secrets=secrets,
        audit_full_numbers=settings.audit_full_numbers,
    )


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
        "excluded": p.excluded,
        "excluded_reason": p.excluded_reason,
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
        include_nonstandard=args.include_nonstandard,
    )
    if args.list_tier:
        if args.list_tier == "nonstandard" and not args.include_nonstandard:
            from lookup.errors import ConfigError

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
    out.write(f"{p.mask}{where}: {p.total:,} candidates\n")
    width = max(10, *(len(t.name) for t in p.tiers))
    out.writelines(f"  {t.name:<{width}} {t.count:>7,}\n" for t in p.tiers)
    if p.excluded:
        out.write(f"  {'excluded':<{width}} {p.excluded:>7,}  {p.excluded_reason}\n")
    return ExitStatus.OK


class _Progress:
    """Live progress per tier on a terminal; silent otherwise (the tier report follows)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, tier: str, answered: int, count: int) -> None:
        if not self.live:
            return
        import time

        now = time.monotonic()
        if answered not in (0, count) and now - self._last < 0.1:
            return
        self._last = now
        width = 30
        filled = width * answered // max(count, 1)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r  {tier:<9} [{bar}] {answered:>6,}/{count:,}")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()


_STATUS_EXIT = {
    "matched": ExitStatus.MATCHED,
    "not_found": ExitStatus.NOT_FOUND,
    "inconclusive": ExitStatus.FAILED,
    "api_error": ExitStatus.FAILED,
}


def exit_status(result: LookupResult) -> int:
    return _STATUS_EXIT[result.status]


def format_result(result: LookupResult) -> str:
    """The human report of a lookup."""
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
        lines.append(f"{result.status}: {result.reason}")
    if result.reason and result.status == "matched":
        lines.append(f"note: {result.reason}")
    lines.append(
        f"checks: {result.checks_sent:,} sent ({result.retries:,} retries, "
        f"{result.cache_hits:,} from cache) in {result.elapsed_ms / 1000:.2f} s"
    )
    return "\n".join(lines) + "\n"


def _cmd_find(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.candidates import plan

    settings = settings_from_args(args)
    configure_logging(settings)
    hints = {k: getattr(args, k) for k in ("city", "province", "area_code", "zip", "carrier")}
    # Input errors surface before any API is opened or request sent.
    p = plan(args.mask, max_candidates=settings.max_candidates, seed=args.seed,
             include_nonstandard=args.include_nonstandard, **hints)  # fmt: skip
    if not args.json:
        counts = ", ".join(f"{t.name} {t.count:,}" for t in p.tiers)
        where = f" in {p.region}" if p.region else ""
        out.write(f"{p.mask}{where}: {p.total:,} candidates ({counts})\n")
        if p.excluded:
            out.write(f"  left out: {p.excluded_reason}\n")
        out.flush()
    progress = _Progress(sys.stderr)

    async def run() -> LookupResult:
        from lookup.checker import Checker
        from lookup.matcher import match_plan
        from lookup.runtime import open_api

        async with open_api(settings) as opened:
            if not args.json:
                out.write(f"asking the {opened.description}\n")
                out.flush()
            checker = Checker(opened.api, opened.limits)
            result = await match_plan(p, checker, mode=args.mode, progress=progress)
            from lookup.matcher import audit

            audit(result, "cli")
            return result

    try:
        from lookup._loop import run as run_loop

        result = run_loop(run())
    finally:
        progress.done()
    if args.json:
        out.write(result.model_dump_json(indent=2) + "\n")
    else:
        out.write(format_result(result))
    return exit_status(result)


def _demo_cases() -> list[dict[str, Any]]:
    from lookup.segments import SegmentDB

    path = SegmentDB.default().path.with_name("demo_cases.json")
    cases: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return cases


def _pad(text: str, width: int) -> str:
    """Left-align in a terminal column: CJK characters take two cells."""
    import unicodedata

    cells = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(0, width - cells)


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
        from lookup.checker import Checker
        from lookup.matcher import find
        from lookup.runtime import open_api

        results = []
        async with open_api(settings) as opened:
            if not args.json:
                out.write(f"lookup demo: {opened.description}\n\n")
                out.write(f"{'case':<20} {'mask':<12} {'hint':<16} {'status':<10} "
                          f"{'tier':<10} {'phone':<12} {'checks':>6} {'time':>7}\n")  # fmt: skip
            checker = Checker(opened.api, opened.limits)
            for case in cases:
                result = await find(case["mask"], checker=checker, caller="demo", **case["hints"])
                results.append(result)
                if args.json:
                    out.write(json.dumps({"case": case["name"], **result.model_dump(mode="json")},
                                         ensure_ascii=False) + "\n")  # fmt: skip
                else:
                    hint = " ".join(f"{v}" for v in case["hints"].values())
                    out.write(
                        f"{case['name']:<20} {case['mask']:<12} {_pad(hint, 16)} "
                        f"{result.status:<10} "
                        f"{result.tier or '-':<10} {result.phone or '-':<12} "
                        f"{result.checks_sent:>6,} {result.elapsed_ms / 1000:>6.2f}s\n"
                    )
                out.flush()
        return results

    from lookup._loop import run as run_loop

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
    from lookup.mockapi import main as mock_main

    try:
        mock_main(list(args.args), prog="lookup mock-api")
    except SystemExit as exc:
        return int(exc.code or 0)
    return ExitStatus.OK


def _cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_from_args(args)
    data = settings.redacted()
    if args.json:
        out.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    else:
        out.writelines(
            f"LOOKUP_{key.upper()}={json.dumps(value, ensure_ascii=False)}\n"
            for key, value in data.items()
        )
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
