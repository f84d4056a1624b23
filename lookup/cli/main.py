"""The ``lookup`` command line: a thin shell over the library.

Exit codes: 0 matched (or the command did its job), 1 not found, 2 bad input or usage,
3 inconclusive or API failure. The parser is :mod:`lookup.cli.parser`; each command's
module is imported when the command runs, and the parser holds the options of that
command only, so a cold ``lookup plan`` or ``lookup segment`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Collection, Sequence
from typing import TextIO

from lookup.cli.common import ExitStatus, settings_from_args
from lookup.cli.conventions import problem
from lookup.cli.parser import Handler, build_parser, command_named, tell_parsers
from lookup.domain.i18n import _, translate

__all__ = ["ExitStatus", "main"]


def _handlers() -> dict[str, Handler]:
    """What each command runs (read when the parser is built)."""
    return {
        "segment": _cmd_segment,
        "plan": _cmd_plan,
        "find": _cmd_find,
        "stats": _cmd_stats,
        "demo": _cmd_demo,
        "mock-api": _cmd_mock_api,
        "config": _cmd_config,
        "batch": _cmd_batch,
        "serve": _cmd_serve,
        "completion": _cmd_completion,
    }


def _build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser (``commands``: only these commands' options)."""
    return build_parser(_handlers(), commands)


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
    from lookup.cli.plan import cmd_segment

    return cmd_segment(args, out)


def _cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.cli.plan import cmd_plan

    return cmd_plan(args, out)


def _cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.cli.terminal import pad
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
    name = command_named(argv)
    parser = _build_parser(() if name is None else (name,))
    tell_parsers(parser, argv, out)
    import contextlib

    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    from lookup.domain.errors import InputError, LookupFailure
    from lookup.domain.privacy import Redactor, escape_controls

    func: Handler = args.func
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
