"""Reading batch input (layer L3): CSV with a header or JSONL, lazily, every line a row.

The encoding is UTF-8 with or without BOM, else GB18030 (with a warning), or the one
named. A line that cannot be read (bytes the encoding rejects, a line over
:data:`MAX_LINE_BYTES`, a field over the CSV field limit, JSON nested too deep, a quote
never closed, found at end of file) becomes a row with ``problem`` set, naming the line;
the lines a never-closed quote swallowed are read again as rows of their own.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final, Literal, Self

from pydantic import ValidationError

from lookup.domain.errors import ConfigError
from lookup.domain.privacy import quote
from lookup.engine.batch import HINTS, BatchRow

__all__ = ["MAX_LINE_BYTES", "InputFormat", "detect_format", "input_encoding", "read_rows"]

log = logging.getLogger("lookup.batch")

InputFormat = Literal["csv", "jsonl"]
MAX_LINE_BYTES: Final = 1 << 20
"""A longer input line is an ``invalid`` row (it is skipped, never held in memory whole)."""
_SNIFF_BYTES: Final = 1 << 16

_COLUMN_SEP = re.compile(r"[\s\-]+")


def _column(name: str) -> str:
    return _COLUMN_SEP.sub("_", name.strip().lstrip("\ufeff").lower())


def detect_format(path: Path) -> InputFormat:
    """``csv`` or ``jsonl``: by extension, else by the first non-blank character."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with path.open("rb") as stream:
        head = stream.read(4096).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    return "jsonl" if head.startswith("{") else "csv"


def input_encoding(path: Path, given: str | None) -> str:
    """The codec to read ``path`` with: ``given``, else UTF-8 (BOM or not), else GB18030."""
    if given:
        try:
            name = codecs.lookup(given).name
        except LookupError:
            name = ""
        if name in ("utf-8", "utf-8-sig"):
            return "utf-8-sig"  # a BOM, when there is one, is not part of the first cell
        try:  # lines are split on b"\n"; rot13 & co. are codecs, not text encodings
            plain = bool(name) and "x,\n".encode(name, "replace") == b"x,\n"
        except (LookupError, TypeError, ValueError):
            plain = False
        if not plain:
            raise ConfigError(
                f"unsupported encoding {quote(given)} (--encoding): try utf-8, gb18030, gbk or big5"
            )
        return name
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    if len(head) == _SNIFF_BYTES:
        head = head[: head.rfind(b"\n") + 1] or head  # whole lines only
    non_ascii = [line for line in head.splitlines() if not line.isascii()]
    if not non_ascii:
        return "utf-8-sig"
    ok = 0
    for line in non_ascii:
        try:
            line.decode("utf-8")
            ok += 1
        except UnicodeDecodeError:
            pass
    if ok:  # mostly UTF-8: the odd bad line becomes an invalid row
        return "utf-8-sig"
    log.warning("%s is not UTF-8: reading it as GB18030 (say --encoding to choose)", path.name)
    return "gb18030"


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, raw line)``; ``None`` for a line over :data:`MAX_LINE_BYTES`."""
    n = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while (more := stream.readline(MAX_LINE_BYTES)) and not more.endswith(b"\n"):
                pass
            yield n, None
            continue
        yield n, raw


class _Feed:
    """Decoded lines for ``csv.reader``; bad lines are set aside as problems, not fed.

    Keeps the lines of the record being read, so that a record that never ends (an
    unbalanced quote, found at end of file) can be dropped and its lines read again.
    """

    def __init__(self, lines: Iterator[tuple[int, bytes | None]], codec: str) -> None:
        self._lines = lines
        self._decode = codecs.getdecoder(codec)
        self._codec = codec
        self.pushback: deque[tuple[int, str]] = deque()
        self.record: list[tuple[int, str]] = []
        self.problems: list[tuple[int, str]] = []

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> str:
        item = self.pushback.popleft() if self.pushback else self._next_good()
        self.record.append(item)
        return item[1]

    def _next_good(self) -> tuple[int, str]:
        for n, raw in self._lines:
            if raw is None:
                self.problems.append((n, f"line {n} is longer than {MAX_LINE_BYTES:,} bytes"))
                continue
            try:
                text = self._decode(raw)[0]
            except UnicodeDecodeError as exc:
                self.problems.append((n, _undecodable(n, self._codec, exc)))
                continue
            return n, text.lstrip("\ufeff") if n == 1 else text
        raise StopIteration

    @property
    def start(self) -> int:
        return self.record[0][0] if self.record else 0


def _undecodable(n: int, codec: str, exc: UnicodeDecodeError) -> str:
    name = "UTF-8" if codec.startswith("utf-8") else codec
    return (f"line {n} has bytes that are not {name} ({exc.reason} at byte {exc.start}): "
            "fix the line, or pass --encoding")  # fmt: skip


def _row(n: int, data: dict[str, Any], line: int) -> BatchRow:
    fields = {k: data[k] for k in ("id", "mask", "also", *HINTS) if k in data}
    try:
        return BatchRow(row=n, **fields)
    except ValidationError as exc:
        where = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["loc"])
        return BatchRow(row=n, problem=f"line {line}: unreadable value in {where or 'the row'}")
    except RecursionError:
        return BatchRow(row=n, problem=f"line {line}: a value is nested too deeply")


def _csv_rows(feed: _Feed, name: str) -> Iterator[BatchRow]:
    reader = csv.reader(feed, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ConfigError(f"{name}: the header line is not readable CSV: {exc}") from None
    columns = [_column(c) for c in header or ()]
    if "mask" not in columns:
        found = ", ".join(quote(c) for c in columns[:20] if c) or "nothing"
        raise ConfigError(
            f"{name}: the first line must be a header with a 'mask' column (and optionally "
            f"id, also, {', '.join(HINTS)}); found {found}"
        )
    n = 0
    while True:
        feed.record = []
        try:
            cells = next(reader)
        except StopIteration:
            cells = None
        except csv.Error as exc:
            line = feed.start
            if "unexpected end of data" in str(exc):
                # A quote opened at `line` is never closed: that row is bad, the lines it
                # swallowed are read again as rows of their own.
                feed.pushback.extend(feed.record[1:])
                reason = f"line {line}: a quoted field is never closed"
            else:
                reason = f"line {line}: not readable CSV ({exc})"
            reader = csv.reader(feed, strict=True)
            for _, problem in _take(feed.problems):
                n += 1
                yield BatchRow(row=n, problem=problem)
            n += 1
            yield BatchRow(row=n, problem=reason)
            continue
        for _, problem in _take(feed.problems):
            n += 1
            yield BatchRow(row=n, problem=problem)
        if cells is None:
            return
        if not any(c.strip() for c in cells):
            continue  # blank line
        n += 1
        yield _row(n, {c: v for c, v in zip(columns, cells, strict=False) if c}, feed.start)


def _take(items: list[tuple[int, str]]) -> list[tuple[int, str]]:
    taken = sorted(items)
    items.clear()
    return taken


def _jsonl_rows(lines: Iterator[tuple[int, bytes | None]], codec: str, name: str) -> Iterator[BatchRow]:  # fmt: skip
    decode = codecs.getdecoder(codec)
    n = 0
    for line_no, raw in lines:
        if raw is None:
            n += 1
            yield BatchRow(row=n, problem=f"line {line_no} is longer than {MAX_LINE_BYTES:,} bytes")
            continue
        try:
            text = decode(raw)[0]
        except UnicodeDecodeError as exc:
            n += 1
            yield BatchRow(row=n, problem=_undecodable(line_no, codec, exc))
            continue
        text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        n += 1
        try:
            data = json.loads(text)
        except RecursionError:
            yield BatchRow(row=n, problem=f"line {line_no} of {name}: JSON nested too deeply")
            continue
        except ValueError:
            data = None
        if not isinstance(data, dict):
            yield BatchRow(row=n, problem=f"line {line_no} of {name} is not a JSON object")
            continue
        yield _row(n, {_column(str(k)): v for k, v in data.items()}, line_no)


def read_rows(
    path: str | Path, fmt: InputFormat | None = None, *, encoding: str | None = None
) -> Iterator[BatchRow]:
    """The rows of a CSV (with a header) or JSONL file, lazily.

    Raises :class:`~lookup.domain.errors.ConfigError` when the file is missing, unreadable, or a
    CSV without a ``mask`` column. Rows that cannot be read come back with ``problem``
    set (their line named); every data line gives a row.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"input file {p} does not exist")
    fmt = fmt or detect_format(p)
    codec = input_encoding(p, encoding)
    try:
        stream = p.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from None
    with stream:
        if fmt == "csv":
            yield from _csv_rows(_Feed(_lines(stream), codec), p.name)
        else:
            yield from _jsonl_rows(_lines(stream), codec, p.name)
