"""The ``lookup`` parser: every command, its options and help, in the reader's language.

:func:`build_parser` adds the options of the commands it is asked for only (the command
named on the command line); the others are listed with their help and no options. A
command that sends nothing then pays for its own parser, not for the other nine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Final, NoReturn, TextIO

from lookup.cli.common import add_api_options, add_hint_options, add_logging_options
from lookup.cli.conventions import VersionAction, command_parser, did_you_mean, problem, wants_json
from lookup.domain.i18n import _, translate

__all__ = ["COMMANDS", "Handler", "build_parser", "command_named", "tell_parsers"]

Handler = Callable[[argparse.Namespace, TextIO], int]

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
        prog = command_parser(self, self.argv).prog  # unknown options are the top parser's error
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




def _segment(p: argparse.ArgumentParser) -> None:
    p.add_argument("segment", help="the first 7 digits (or a whole number)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--data", help="a data folder other than the bundled one")


def _plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("mask", help="masked number: 138****1234, 138xxxx1234, +86 138 **** 1234")
    _add_also_option(p)
    add_hint_options(p)
    p.add_argument("--max-candidates", type=int, default=10_000, dest="max_candidates")
    p.add_argument("--seed", type=int, help="shuffle the order within tiers reproducibly")
    p.add_argument("--list", dest="list_tier", metavar="TIER",
                   choices=["city", "province", "national", "unlocated", "nonstandard"],
                   help="print the numbers of one tier")  # fmt: skip
    _add_nonstandard_option(p)
    _add_learn_option(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--data", help="a data folder other than the bundled one")


def _find(p: argparse.ArgumentParser) -> None:
    p.add_argument("mask", help="masked number: 138****1234, 138xxxx1234, +86 138 **** 1234; "
                   "'-' reads masks from stdin, one per line")  # fmt: skip
    _add_also_option(p)
    add_hint_options(p)
    add_api_options(p)
    p.add_argument(
        "--mode",
        choices=["first", "all"],
        default="first",
        help="first: stop at the first hit (default); all: every hit of its tier",
    )
    p.add_argument("--seed", type=int, help="shuffle the order within tiers reproducibly")
    _add_nonstandard_option(p)
    _add_learn_option(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["regions"], help="regions: the learned region counts")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_logging_options(p)


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the results as JSON lines")
    add_logging_options(p)


def _mock_api(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER)


def _config(p: argparse.ArgumentParser) -> None:
    add_api_options(p)
    p.add_argument("--format", dest="config_format", choices=["env", "json"], default="env",
                   help="env: LOOKUP_*=value lines a shell can source back (default); json")
    p.add_argument("--json", dest="config_format", action="store_const", const="json",
                   help="the same as --format json")  # fmt: skip


def _batch(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN",
                   help="CSV with a header (mask, id, city, ...) or JSONL; '-' reads stdin")  # fmt: skip
    p.add_argument("--out", required=True, metavar="OUT",
                   help="where the results go: a new path or a regular file; '-' = stdout")  # fmt: skip
    p.add_argument("--journal", metavar="PATH",
                   help="the journal (default OUT.journal; needed with --out - to resume)")  # fmt: skip
    p.add_argument("--format", choices=["jsonl", "csv"], help="output format (default: by OUT)")
    p.add_argument("--encoding", metavar="NAME",
                   help="input encoding (default: UTF-8 with or without BOM, else GB18030)")  # fmt: skip
    p.add_argument("--csv-bom", action="store_true", help="write a UTF-8 BOM (for Excel)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-run the rows that ended inconclusive or api_error",
    )
    p.add_argument(
        "--lookups-in-flight",
        type=int,
        default=8,
        metavar="N",
        help="lookups at once (their checks share one limit; default 8)",
    )
    p.add_argument("--mode", choices=["first", "all"], default="first")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: Ray actors, the journal here "
                        "(the [ray] extra)")  # fmt: skip
    p.add_argument("--ray-address", metavar="ADDR",
                   help="the Ray cluster: 'auto', ray://HOST:PORT or HOST:PORT (default: "
                        "start a local Ray)")  # fmt: skip
    p.add_argument("--ray-actors", type=int, metavar="N",
                   help="lookup actors, each one API session and checker (default: the "
                        "cluster's CPUs); --lookups-in-flight is per actor")  # fmt: skip
    add_api_options(p)


def _serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", dest="service_host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", dest="service_port", type=int, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes behind the port, on gunicorn (needs --shared and "
                   "the [workers] extra; default 1: one process, no gunicorn)")  # fmt: skip
    add_api_options(p)


def _completion(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=["bash", "zsh", "fish"])


def _help_width() -> int:
    """The width argparse gives help, ``shutil.get_terminal_size().columns - 2``, measured
    without importing :mod:`shutil` (and with it bz2, lzma and zlib): argparse makes a
    formatter for every option it adds, so every command would pay for it."""
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
            columns = 0
    return (columns or 80) - 2


class _Help(argparse.HelpFormatter):
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:  # fmt: skip
        super().__init__(prog, indent_increment, max_help_position,
                         _help_width() if width is None else width)  # fmt: skip


class _RawHelp(_Help, argparse.RawDescriptionHelpFormatter):
    pass


_RAW: Final = _RawHelp
# name, help, the options, the parser's own settings (in the order --help lists them)
_COMMAND_TABLE: Final[tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None],
                               dict[str, Any]], ...]] = (
    ("segment", "what the database knows of a 7-digit segment", _segment, {}),
    ("plan", "which numbers fit a mask, tier by tier (no requests)", _plan, {}),
    ("find", "find the number behind a mask by asking the order API", _find,
     {"epilog": _EPILOG + _FIND_ENV, "formatter_class": _RAW}),
    ("stats", "what this machine has learned: hits per region", _stats, {}),
    ("demo", "run example lookups against the bundled mock order API", _demo, {}),
    ("mock-api", "run the bundled mock order API (synthetic orders, fault knobs)", _mock_api,
     {"add_help": False}),
    ("config", "print the effective settings (secrets redacted)", _config, {}),
    ("batch", "look up many masks from a CSV or JSONL file", _batch,
     {"epilog": _BATCH_EPILOG, "formatter_class": _RAW}),
    ("serve", "run the HTTP service (POST /v1/lookups ...)", _serve,
     {"epilog": _SERVE_EPILOG, "formatter_class": _RAW}),
    ("completion", "print a shell completion script", _completion,
     {"epilog": _COMPLETION_EPILOG, "formatter_class": _RAW}),
)  # fmt: skip

COMMANDS: Final = tuple(name for name, *_rest in _COMMAND_TABLE)
"""Every command's name, in the order ``lookup --help`` lists them."""


def _add_lang_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lang", choices=["zh", "en"],
                   help="the language of messages (default: LC_ALL, LC_MESSAGES, LANG)")  # fmt: skip


def build_parser(handlers: Mapping[str, Handler],
                 commands: Collection[str] | None = None) -> argparse.ArgumentParser:  # fmt: skip
    """The ``lookup`` parser; each command runs ``handlers[name]`` (its ``func``).

    ``commands``: the commands whose parsers are made (``None``: all of them). The others
    are still listed, by name and help, for ``--help`` and for "did you mean"; naming one
    of them on the command line is a usage error ("unknown parser"), and :func:`lookup.cli.main.main`
    builds the parser of the command :func:`command_named` finds.
    """
    parser = _Parser(
        prog="lookup",
        description="Find the order behind a masked Chinese mobile number (138****1234).",
        epilog=_EPILOG,
        formatter_class=_RAW,
    )
    parser.add_argument("-V", "--version", action=VersionAction,
                        help="print the version, the event loop and the data version")  # fmt: skip
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_, add_options, settings in _COMMAND_TABLE:
        if commands is not None and name not in commands:
            # Listed (--help, "choose from ...") but no parser: making one costs more than
            # its options (argparse looks for its own translations three times a parser).
            sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), help_))
            continue
        p = sub.add_parser(name, help=help_, **{"formatter_class": _Help, **settings})
        add_options(p)
        if name != "mock-api":  # its own parser reads its options
            _add_lang_option(p)
        p.set_defaults(func=handlers[name])
    sub.choices = dict.fromkeys(COMMANDS)  # type: ignore[assignment]  # built or not, a command
    _add_lang_option(parser)
    _translate_help(parser)
    return parser


def tell_parsers(parser: argparse.ArgumentParser, argv: Sequence[str], stdout: TextIO) -> None:
    """Give every parser the command line and stdout its usage errors need (the nearest
    option, ``--json``'s problem object)."""
    from lookup.cli.conventions import subparsers

    for p in (parser, *subparsers(parser).values()):
        if isinstance(p, _Parser):
            p.argv, p.stdout = argv, stdout


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, as the parser will read it; ``None`` when there is none
    (``--help``, ``--version``, a mistyped command)."""
    words = iter(argv)
    for word in words:
        if len(word) > 2 and "--lang".startswith(word):  # argparse takes --la for --lang
            next(words, None)
        elif word == "--":
            word = next(words, "")
            return word if word in COMMANDS else None
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


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


