"""The terminal: a :class:`Terminal` wraps stderr. Log lines written through it (the logging
handler writes to it) appear *above* the live status line, never inside it; the status line
is cut to the terminal's width and cleared when the command finishes. Off a terminal there
is no live line: :class:`FindProgress` and :class:`BatchProgress` print a plain line every
few seconds instead.
"""

from __future__ import annotations

import shutil
import time
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TextIO

from lookup.domain.privacy import escape_controls

if TYPE_CHECKING:
    from lookup.engine.batch import RowResult
    from lookup.engine.checkstate import HasStatus

__all__ = ["BatchProgress", "FindProgress", "Terminal", "cells", "pad"]



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
