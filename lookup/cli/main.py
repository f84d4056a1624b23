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
    add_api_options,
    add_hint_options,
    add_logging_options,
    settings_from_args,
)
from lookup.cli.conventions import (
    VersionAction,
    did_you_mean,
    problem,
    wants_json,
)
from lookup.cli.conventions import (
    command_parser as _command,
)
from lookup.cli.find import hints as _hints
from lookup.cli.find import region_counts as _region_counts
from lookup.cli.find import sightings as _sightings
from lookup.cli.terminal import pad
from lookup.domain.i18n import _, translate

if TYPE_CHECKING:
    from lookup.domain.tiers import TierName, TierPlan

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

_FIND_ENV: Final = """
environment (options beat the environment, which beats --config FILE):
  LOOKUP_API_URL     the order API, as --api
  LOOKUP_API_TOKEN   sent as Authorization: Bearer <token>
  LOOKUP_API_HEADERS extra headers as JSON, as --header
  LOOKUP_RATE, LOOKUP_MAX_IN_FLIGHT, LOOKUP_DEADLINE, LOOKUP_SHARED_URL ...
  LOOKUP_AUDIT_FILE, LOOKUP_LOG_LEVEL, LOOKUP_LEARN_REGIONS
  every option has its LOOKUP_* variable: lookup config --format env lists them
  LC_ALL, LC_MESSAGES, LANG  the language of messages (zh_CN: Chinese), as --lang
there is no --token option: credentials come only from the environment or --config
(a token on the command line shows in ps and in the shell's history).
"""

_COMPLETION_EPILOG: Final = """\
examples:
  eval "$(lookup completion bash)"      in ~/.bashrc
  eval "$(lookup completion zsh)"       in ~/.zshrc
  lookup completion fish | source       in ~/.config/fish/config.fish
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

audit lines (one per row) go to OUT.audit.log (0600), or JOURNAL.audit.log with --out -,
or to --audit-file PATH / LOOKUP_AUDIT_FILE; never to the terminal.
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
    """Usage errors: one line and exit 2 (argparse would print the whole usage first),
    with the nearest real option or command; with ``--json``, a problem object on stdout."""

    argv: Sequence[str] = ()
    stdout: TextIO | None = None

    def error(self, message: str) -> NoReturn:
        hint = did_you_mean(message, self, self.argv)
        shown = translate(message) + hint
        if wants_json(self.argv):
            data = problem(shown, kind="UsageError", usage=True)
            (self.stdout or sys.stdout).write(json.dumps(data, ensure_ascii=False) + "\n")
        prog = _command(self, self.argv).prog  # unknown options are the top parser's error
        self.exit(2, f"{prog}: " + _("error: {message} (usage: {prog} --help)").format(
            message=shown, prog=prog) + "\n")  # fmt: skip


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
    parser = _Parser(
        prog="lookup",
        description="Find the order behind a masked Chinese mobile number (138****1234).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action=VersionAction,
                        help="print the version, the event loop and the data version")
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
        epilog=_EPILOG + _FIND_ENV,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fd.add_argument("mask", help="masked number: 138****1234, 138xxxx1234, +86 138 **** 1234; "
                    "'-' reads masks from stdin, one per line")
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

    co = sub.add_parser("completion", help="print a shell completion script",
                        epilog=_COMPLETION_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    co.add_argument("shell", choices=["bash", "zsh", "fish"])
    co.set_defaults(func=_cmd_completion)
    for p in (parser, *sub.choices.values()):
        if p is not mk:
            p.add_argument("--lang", choices=["zh", "en"],
                           help="the language of messages (default: LC_ALL, LC_MESSAGES, LANG)")
    _translate_help(parser)
    return parser


def _translate_help(parser: argparse.ArgumentParser) -> None:
    """Help texts in the reader's language (the English text is the message id)."""
    from lookup.cli.conventions import subparsers

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = translate(choice.help or "")
    for p in (parser, *subparsers(parser).values()):
        p.description = translate(p.description) if p.description else p.description
        p.epilog = _translate_epilog(p.epilog) if p.epilog else p.epilog
        for group in p._action_groups:
            group.title = translate(group.title) if group.title else group.title
        for action in p._actions:
            if action.help and action.help is not argparse.SUPPRESS:
                action.help = translate(action.help)


def _translate_epilog(text: str) -> str:
    """An epilog line by line: headings and the words after the example commands."""
    out = []
    for line in text.split("\n"):
        head, sep, words = line.rpartition("  ")
        if sep and head.strip() and words.strip():
            out.append(head + sep + translate(words))
        else:
            out.append(translate(line))
    return "\n".join(out)


def _cmd_completion(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.cli.conventions import completion_script

    out.write(completion_script(_build_parser(), args.shell))
    return ExitStatus.OK


def _cmd_find(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.cli.find import cmd_find

    return cmd_find(args, out)


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.cli.demo import cmd_demo

    return cmd_demo(args, out)


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


def _cmd_mock_api(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.mockapi.cli import main as mock_main
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


def _choose_language(argv: Sequence[str]) -> None:
    """``--lang zh|en`` (read before the parser is built: its help is translated), else
    the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``)."""
    import os

    from lookup.domain.i18n import language_from_env, parse_language, set_language

    chosen = None
    for i, word in enumerate(argv):
        if word == "--":
            break
        if word == "--lang" and i + 1 < len(argv):
            chosen = parse_language(argv[i + 1])
        elif word.startswith("--lang="):
            chosen = parse_language(word.partition("=")[2])
    set_language(chosen or language_from_env(os.environ))


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:  # fmt: skip
    """Run the CLI; returns the exit status instead of exiting (``__main__`` exits)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mock-api"]:  # its own parser and --help (argparse.REMAINDER can't)
        return _cmd_mock_api(argparse.Namespace(args=argv[1:]), out)
    _choose_language(argv)
    parser = _build_parser()
    from lookup.cli.conventions import subparsers

    for p in (parser, *subparsers(parser).values()):
        if isinstance(p, _Parser):
            p.argv, p.stdout = argv, out
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
    def fail(exc: LookupFailure) -> None:
        text = safe(str(exc))
        if getattr(args, "json", False) and isinstance(exc, InputError):
            data = problem(text, kind=type(exc).__name__)
            out.write(json.dumps(data, ensure_ascii=False) + "\n")
        err.write("lookup: " + _("error: {message}").format(message=translate(text)) + "\n")
    try:
        return func(args, out)
    except InputError as exc:
        fail(exc)
        return ExitStatus.BAD_INPUT
    except LookupFailure as exc:
        fail(exc)
        return ExitStatus.FAILED
    except BrokenPipeError:  # `lookup plan ... --list city | head`
        sys.stdout = None  # no flush error at exit
        return ExitStatus.OK
    except KeyboardInterrupt:
        err.write("lookup: " + _("interrupted") + "\n")
        return 130
    except BaseException as exc:  # noqa: BLE001 - a bug: one line and exit 3, never 0 or 1
        return _crashed(exc, err, safe)


def _crashed(exc: BaseException, err: TextIO, safe: Callable[[str], str]) -> int:
    """An unexpected error: one line on stderr (the traceback at DEBUG) and exit 3."""
    import logging

    from lookup.orders.base import safe_text

    logging.getLogger("lookup.cli").debug("unexpected error", exc_info=exc)
    text = safe(safe_text(exc, 160))
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    err.write(
        f"lookup: unexpected error: {what} (nothing was matched; run again with "
        "--log-level DEBUG for the traceback, and report it)\n"
    )
    return ExitStatus.FAILED
