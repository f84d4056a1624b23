"""What every command-line shell shares: options, settings, logging, exit codes, the terminal.

The command modules of :mod:`lookup.cli` (``main``, ``batch``, ``serve``) import these. Only
the standard library (and ``lookup.domain.privacy``, stdlib only) is imported at module
level, so a cold ``lookup segment`` stays fast.

The terminal: a :class:`Terminal` wraps stderr. Log lines written through it (the
logging handler writes to it) appear *above* the live status line, never inside it; the
status line is cut to the terminal's width and cleared when the command finishes. Off a
terminal there is no live line: :class:`FindProgress` and :class:`BatchProgress` print a
plain line every few seconds instead.
"""

from __future__ import annotations

import argparse
import shutil
import time
import unicodedata
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Final, TextIO

from lookup.domain.privacy import escape_controls

if TYPE_CHECKING:
    from lookup.domain.models import LookupResult
    from lookup.engine.batch import RowResult
    from lookup.engine.checkstate import HasStatus
    from lookup.runtime.settings import Settings

__all__ = [
    "BatchProgress",
    "ExitStatus",
    "FindProgress",
    "Terminal",
    "add_api_options",
    "add_hint_options",
    "add_logging_options",
    "cells",
    "exit_status",
    "pad",
    "settings_from_args",
]


class ExitStatus(IntEnum):
    """The exit codes of every ``lookup`` command."""

    OK = 0
    MATCHED = 0
    NOT_FOUND = 1
    BAD_INPUT = 2
    FAILED = 3


_STATUS_EXIT: Final = {
    "matched": ExitStatus.MATCHED,
    "not_found": ExitStatus.NOT_FOUND,
    "inconclusive": ExitStatus.FAILED,
    "api_error": ExitStatus.FAILED,
}


def exit_status(result: LookupResult) -> int:
    """0 matched, 1 not found, 3 inconclusive or API failure."""
    return _STATUS_EXIT[result.status]


# -- options -----------------------------------------------------------------------------------


def add_hint_options(p: argparse.ArgumentParser) -> None:
    """``--city --province --area-code --zip --carrier`` (the fields of ``models.Hints``)."""
    g = p.add_argument_group("where the customer is (all optional; several must agree)")
    g.add_argument("--city", help="city name: 杭州, 杭州市, 恩施土家族苗族自治州, 襄樊 ...")
    g.add_argument("--province", help="province name: 浙江, 浙江省, 广西壮族自治区, 粤 ...")
    g.add_argument("--area-code", dest="area_code", help="area code: 0571 (may mean several)")
    g.add_argument("--zip", help="zip code, 6 digits: 310000, 071000")
    g.add_argument("--carrier", help="移动 / 联通 / 电信 / 广电 (or mobile, unicom ...)")


def add_logging_options(p: argparse.ArgumentParser) -> None:
    """``--config --log-level --log-format --quiet --audit-file``."""
    g = p.add_argument_group("logging and output")
    g.add_argument("--config", metavar="FILE", help="TOML settings file (see `lookup config`)")
    g.add_argument(
        "--log-level",
        dest="log_level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
    )
    g.add_argument("--log-format", dest="log_format", choices=["text", "json"])
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress, no start-up lines, only errors on stderr: just the answer",
    )
    g.add_argument(
        "--audit-file",
        dest="audit_file",
        metavar="PATH",
        help="append the audit lines to PATH (created 0600) instead of stderr",
    )


def _rate(text: str) -> str:
    word = text.strip().lower()
    if word in ("none", "auto", "off", "unlimited"):
        return "none"
    try:
        value = float(word)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        hint = " (0 would stop every check; 'none' lifts the ceiling)" if value == 0 else ""
        raise argparse.ArgumentTypeError(
            f"--rate takes checks per second (a number > 0) or 'none'/'auto' for no ceiling, "
            f"got {text!r}{hint}"
        )
    return text.strip()


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
        help="dotted JSON path to an order count (>= 0) or a boolean",
    )
    g.add_argument("--method", dest="api_method", type=str.upper, choices=["GET", "POST"])
    g.add_argument("--batch-url", dest="batch_url", help="batch endpoint (POST {phones: [...]})")
    g.add_argument(
        "--throttled-when", dest="throttled_when", action="append", metavar="PATH=VALUE",
        help="a 200 answer with this field value means 'quota exceeded' (repeatable), "
        "e.g. code=429",
    )  # fmt: skip
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
    g = p.add_argument_group("limits (polite defaults: 16 requests in flight, 50 requests/s)")
    g.add_argument("--max-in-flight", dest="max_in_flight", type=int, metavar="N")
    g.add_argument("--deadline", dest="deadline", type=float, metavar="SECONDS",
                   help="give a lookup this long: failing checks are retried until then (300)")
    g.add_argument("--batch-size", dest="batch_size", type=int, metavar="N",
                   help="numbers per batch request, with --batch-url (100)")
    g.add_argument(
        "--rate", type=_rate, metavar="PER_S", help="requests per second (> 0), or 'none'"
    )
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
    g = p.add_argument_group(
        "one quota for many processes (needs the [redis] extra; see README, Deployment)"
    )
    g.add_argument("--shared", dest="shared_url", metavar="redis://HOST:PORT/DB",
                   help="share the rate, breaker, cache and in-flight checks through Redis "
                   "with every process of the same order API; --rate is then the ceiling "
                   "of all of them together (without one: start at 10/s, probe upward)")
    g.add_argument("--shared-fallback-rate", dest="shared_fallback_rate", type=float,
                   metavar="PER_S", help="this process's rate while Redis is away "
                   "(default: rate / --shared-processes)")
    g.add_argument("--shared-processes", dest="shared_processes", type=int, metavar="N",
                   help="processes sharing the quota, for the fallback rate (default 2)")
    add_logging_options(p)


_OPTION_FIELDS: Final = (
    "learn_regions",
    "shared_url",
    "shared_fallback_rate",
    "shared_processes",
    "throttled_when",
    "deadline",
    "batch_size",
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
    "audit_file",
    "log_level",
    "log_format",
)


def settings_from_args(args: argparse.Namespace, **more: Any) -> Settings:
    """Settings: these options > LOOKUP_* env > --config file > defaults."""
    from lookup.runtime.settings import load_settings

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
    if getattr(args, "quiet", False) and overrides["log_level"] is None:
        overrides["log_level"] = "ERROR"  # no audit line on stderr either
    overrides.update(more)
    return load_settings(getattr(args, "config", None), **overrides)




# -- the terminal --------------------------------------------------------------------------------


def cells(text: str) -> int:
    """Terminal cells ``text`` takes: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int) -> str:
    """Left-align ``text`` in a terminal column of ``width`` cells."""
    return text + " " * max(0, width - cells(text))


def _fit(text: str, width: int) -> str:
    """Cut ``text`` to at most ``width`` cells."""
    if cells(text) <= width:
        return text
    out, used = [], 0
    for c in text:
        used += cells(c)
        if used > width - 1:
            break
        out.append(c)
    return "".join(out) + "…"


class Terminal:
    """A stream (stderr) with one optional live status line at the bottom.

    Text written to it (log lines) goes above the status line: the line is cleared, the
    text written, the line drawn again. Off a terminal (``live`` false) writes pass
    straight through and :meth:`status` does nothing. ``columns`` gives the width
    (default: ``shutil.get_terminal_size``).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        live: bool | None = None,
        columns: Callable[[], int] | None = None,
    ) -> None:
        self.stream = stream
        self.live = _isatty(stream) if live is None else live
        self._columns = columns or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self._line = ""
        self._shown = 0  # cells of the line on screen
        self._partial = ""

    def isatty(self) -> bool:
        return self.live

    def columns(self) -> int:
        """The terminal's width in cells."""
        return self._columns()

    def write(self, text: str) -> int:
        n = len(text)
        # whatever reaches the terminal: a raw ESC, CR or bidi override in a value from
        # outside (a plug-in's error, a mask) is shown escaped; line breaks stay
        text = escape_controls(text, keep="\n")
        if not self.live:
            self.stream.write(text)
            return n
        self._partial += text  # whole lines only: a half line would land in the status
        if "\n" in self._partial:
            done, _, self._partial = self._partial.rpartition("\n")
            self._erase()
            self.stream.write(done + "\n")
            self._draw()
        return n

    def flush(self) -> None:
        self.stream.flush()

    def status(self, text: str) -> None:
        """Show ``text`` as the live line (cut to the width); nothing off a terminal."""
        if not self.live:
            return
        self._line = escape_controls(text)
        self._draw()
        self.stream.flush()

    def clear(self) -> None:
        """Remove the live line (when the command is done)."""
        self._line = ""
        if self.live:
            if self._partial:
                self.write("\n")
            self._erase()
            self.stream.flush()

    def _erase(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def _draw(self) -> None:
        if not self._line:
            return
        line = _fit(self._line, max(10, self.columns() - 1))
        width = cells(line)
        self.stream.write("\r" + line + " " * max(0, self._shown - width))
        self._shown = max(width, self._shown)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def checker_state(checker: HasStatus | None) -> str:
    """The checker's state in words (``Checker.status().text``), or "" without a checker."""
    return checker.status().text if checker is not None else ""


class FindProgress:
    """Progress of one lookup: a live bar on a terminal, a plain line every ``every`` s off it.

    Call it as the matcher's ``progress(tier, answered, count)``; call :meth:`tick` from a
    timer so that a stalled lookup (API down) still says so; :meth:`done` clears the bar.
    Only counts and states are shown, never a number.
    """

    def __init__(
        self,
        term: Terminal,
        checker: HasStatus | None = None,
        *,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = "lookup find",
    ) -> None:
        self.term = term
        self.checker = checker
        self.every = every
        self._clock = clock
        self._prefix = prefix
        self._started = clock()
        self._tier, self._answered, self._count = "", 0, 0
        self._before = 0  # answered in earlier tiers
        self._last_draw = float("-inf")
        self._last_line = self._started

    def __call__(self, tier: str, answered: int, count: int) -> None:
        if tier != self._tier:
            self._before += self._answered
            self._tier = tier
        self._answered, self._count = answered, count
        now = self._clock()
        if self.term.live and (now - self._last_draw >= 0.1 or answered in (0, count)):
            self._last_draw = now
            self.term.status(self.text(bar=True))

    def rate(self) -> float:
        elapsed = self._clock() - self._started
        return (self._before + self._answered) / elapsed if elapsed > 0 else 0.0

    def text(self, *, bar: bool = False) -> str:
        if not self._tier:
            head = "starting"
        else:
            head = f"{self._tier} {self._answered:,}/{self._count:,}"
            if bar:
                width = max(10, min(30, self.term.columns() - 60))
                filled = width * self._answered // max(self._count, 1)
                head = f"{self._tier:<9} [{'#' * filled}{'-' * (width - filled)}] " + (
                    f"{self._answered:,}/{self._count:,}"
                )
        state = checker_state(self.checker)
        return f"{head}, {self.rate():.0f} checks/s" + (f", {state}" if state else "")

    def tick(self) -> None:
        """Redraw the bar (live) or print the plain line when ``every`` seconds passed."""
        now = self._clock()
        if self.term.live:
            self._last_draw = now
            self.term.status(self.text(bar=True))
        elif now - self._last_line >= self.every:
            self._last_line = now
            self.term.write(f"{self._prefix}: {self.text()}\n")
            self.term.flush()

    def done(self) -> None:
        self.term.clear()


_ROW_STATUSES: Final = ("matched", "not_found", "invalid", "inconclusive", "api_error")


def _duration(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class BatchProgress:
    """A live line on a terminal; on anything else, a plain line every ~5 s or 10 %.

    ``stream`` is a :class:`Terminal` (log lines then go above the live line) or a plain
    stream. Only counts are shown: never a number, not even a mask.
    """

    def __init__(self, stream: TextIO | Terminal, total: int, done: int = 0, *,
                 counts: dict[str, int] | None = None, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, every: float = 5.0,
                 checker: HasStatus | None = None) -> None:  # fmt: skip
        self.term = stream if isinstance(stream, Terminal) else Terminal(stream, live=live)
        if live is not None:
            self.term.live = live
        self.total = total
        self.done = done
        self.counts = dict.fromkeys(_ROW_STATUSES, 0) | (counts or {})
        self.checker = checker
        self._clock = clock
        self._every = every
        self._started = clock()
        self._first = done
        self._last_draw = float("-inf")
        self._last_line = self._started
        self._next_decile = self._decile(done) + 1

    @property
    def live(self) -> bool:
        return self.term.live

    def _decile(self, done: int) -> int:
        return done * 10 // self.total if self.total else 10

    def text(self) -> str:
        now = self._clock()
        new = self.done - self._first
        rate = new / (now - self._started) if now > self._started else 0.0
        pct = f" ({self.done * 100 // self.total}%)" if self.total else ""
        left = self.total - self.done
        eta = f", ETA {_duration(left / rate)}" if rate > 0 and left > 0 else ""
        counts = ", ".join(f"{s} {n:,}" for s, n in self.counts.items() if n)
        state = checker_state(self.checker)
        return (f"{self.done:,}/{self.total:,} rows{pct}, {rate:.1f} rows/s{eta}"
                + (f"; {counts}" if counts else "") + (f"; API {state}" if state else ""))  # fmt: skip

    def update(self, result: RowResult) -> None:
        self.done += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1
        now = self._clock()
        if self.live:
            if now - self._last_draw >= 0.1 or self.done == self.total:
                self._last_draw = now
                self.term.status(self.text())
            return
        decile = self._decile(self.done)
        if decile >= self._next_decile or now - self._last_line >= self._every:
            self._next_decile = decile + 1
            self._last_line = now
            self.term.write(f"lookup batch: {self.text()}\n")
            self.term.flush()

    def tick(self) -> None:
        """From a timer: rows that ended within 0.1 s of a redraw are shown (the live line
        stayed at 1/31 while a slow row ran), and off a terminal a slow row still gets its
        plain line every ``every`` seconds."""
        now = self._clock()
        if self.live:
            self._last_draw = now
            self.term.status(self.text())
        elif now - self._last_line >= self._every:
            self._last_line = now
            self.term.write(f"lookup batch: {self.text()}\n")
            self.term.flush()

    def close(self) -> None:
        self.term.clear()
