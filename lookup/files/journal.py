"""The batch journal (layer L3): one checksummed line per finished row, resumable.

Line 1 is a header binding the journal to the input (path, size, sha256) and to the
settings that change answers, with a random nonce; resuming with anything different is
refused, naming what changed. Then one line per finished row, appended and flushed as
the row finishes: the output record, a tab, and a checksum (HMAC-SHA256) keyed to the
header line. A line that fails its checksum (edited, or copied from another journal) or
does not parse is not trusted: its row is looked up again. The checksum guards against
edits and mix-ups, not against someone who can rewrite the whole file. A torn last line
(the process died mid-write) is cut off on resume. The file is created 0600 and is never
opened through a symlink.

The journal is read line by line and never held in memory: what it keeps of each row is
where its last trusted line starts and its status (9 bytes a row), so a resumed run copies
its done rows to the output, in order, straight from the file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

from pydantic import ValidationError

from lookup.domain.errors import ConfigError, InvalidMaskError
from lookup.domain.masks import parse_mask
from lookup.engine.batch import DEFINITE, STATUSES, BatchRow, RowResult, RowStatus
from lookup.files.header import JOURNAL_KIND, JOURNAL_VERSION, header_changes
from lookup.files.locks import lock_journal
from lookup.files.private import open_private

__all__ = ["Journal", "journal_path"]

_MAX_READ: Final = 1 << 16
"""Bytes read at once for a record line (a longer one is read line-wise)."""
_STATUS_CODE: Final[dict[str, int]] = {s: code for code, s in enumerate(STATUSES, start=1)}
_DEFINITE_CODES: Final = frozenset(_STATUS_CODE[s] for s in DEFINITE)


def journal_path(out: str | Path) -> Path:
    """Where the journal of ``out`` lives: ``OUT.journal`` next to it."""
    p = Path(out)
    return p.with_name(p.name + ".journal")


def _fits(mask: str, phones: Iterable[str]) -> bool:
    try:
        parsed = parse_mask(mask)
    except InvalidMaskError:
        return False  # a row whose mask is bad has no number
    return all(parsed.matches(p) for p in phones)


@dataclass
class _RowIndex:
    """Per row number: where its last trusted line starts, and its status code (0: none)."""

    offsets: array[int] = field(default_factory=lambda: array("q"))
    codes: bytearray = field(default_factory=bytearray)

    def set(self, row: int, offset: int, status: str) -> None:
        if row >= len(self.codes):
            more = row + 1 - len(self.codes)
            self.offsets.extend(array("q", [-1]) * more)
            self.codes.extend(bytes(more))
        self.offsets[row] = offset
        self.codes[row] = _STATUS_CODE.get(status, 0)

    def code(self, row: int) -> int:
        return self.codes[row] if 0 <= row < len(self.codes) else 0


@dataclass
class Journal:
    """The journal open for appending, locked against a second writer (or a journal with
    no file, ``path=None``, for a run that cannot resume: it keeps nothing).

    Rows are known by the offset of their last trusted line (old and new): see
    :meth:`done`, :meth:`record` and :meth:`records`.
    """

    path: Path | None
    header: dict[str, Any]
    started: bool = False
    """The journal had its header already (this run resumes it)."""
    torn_bytes: int = 0
    """Bytes of a torn last line that were cut off when the journal was opened."""
    unreadable: int = 0
    """Complete lines that did not parse or failed their checksum (their rows are redone)."""
    _index: _RowIndex = field(default_factory=_RowIndex)
    _file: IO[bytes] | None = None
    _key: bytes = b""
    _end: int = 0

    @classmethod
    def open(cls, path: Path, header: dict[str, Any]) -> Journal:
        """Create (0600), or open and check an existing journal (``ConfigError`` on a mismatch)."""
        journal = cls(path, header)
        fd = open_private(path, os.O_RDWR | os.O_APPEND)
        f = os.fdopen(fd, "a+b")  # O_APPEND: every write lands at the end
        try:
            lock_journal(f, path)
            f.seek(0)
            journal._load(f)
        except BaseException:
            f.close()
            raise
        journal._file = f
        return journal

    @classmethod
    def read(cls, path: Path) -> Journal:
        """The trusted rows of the journal at ``path``, read only: no lock, no write.

        For a reader beside the writer (the desk page's job list). ``ConfigError`` when
        ``path`` is not a journal of this version.
        """
        with path.open("rb") as f:
            first = f.readline()
            try:
                header = json.loads(first) if first.endswith(b"\n") else None
            except (ValueError, RecursionError):
                header = None
            if not isinstance(header, dict) or header.get("journal") != JOURNAL_KIND:
                raise ConfigError(f"{path} is not a lookup batch journal: move or delete it")
            journal = cls(path, header)
            f.seek(0)
            journal._load(f)  # checked against its own header: only the checksums count
        return journal

    @classmethod
    def memory(cls, header: dict[str, Any]) -> Journal:
        """A journal with no file (``--out -`` without ``--journal``): it keeps nothing."""
        return cls(None, header)

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else "(no journal)"

    # -- what it holds -------------------------------------------------------------------

    def __len__(self) -> int:
        """Rows with a trusted record."""
        return len(self._index.codes) - self._index.codes.count(0)

    def done(self, row: int, *, retry_failed: bool = False) -> bool:
        """Row ``row`` has a trusted record (a definite one, with ``retry_failed``)."""
        code = self._index.code(row)
        return code in _DEFINITE_CODES if retry_failed else code != 0

    def status(self, row: int) -> RowStatus | None:
        """The status of row ``row``'s record, ``None`` when it has none."""
        code = self._index.code(row)
        return STATUSES[code - 1] if code else None

    def rows(self) -> Iterator[int]:
        """The row numbers with a trusted record, in order."""
        return (row for row, code in enumerate(self._index.codes) if code)

    def record(self, row: int) -> bytes:
        """The record line of row ``row`` as written (JSON, no checksum, no newline), read
        from the file; ``KeyError`` when the row has none."""
        if not self._index.code(row) or self.path is None:
            raise KeyError(row)
        offset = self._index.offsets[row]
        if self._file is not None:
            line = os.pread(self._file.fileno(), _MAX_READ, offset)
            line = line[: line.find(b"\n")] if b"\n" in line else self._read_line(offset)
        else:
            line = self._read_line(offset)
        return line.rpartition(b"\t")[0]

    def _read_line(self, offset: int) -> bytes:
        assert self.path is not None
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.readline().rstrip(b"\n")

    def result(self, row: int) -> RowResult:
        """Row ``row``'s record (``KeyError`` when it has none)."""
        return RowResult.model_validate_json(self.record(row))

    @property
    def records(self) -> dict[int, RowResult]:
        """Every trusted record by row, read from the file: O(rows) in memory, for small
        journals and tests (a run reads them one at a time with :meth:`result`)."""
        return {row: self.result(row) for row in self.rows()}

    # -- reading and writing -------------------------------------------------------------

    def _checksum(self, record: bytes) -> bytes:
        return hmac.new(self._key, record, hashlib.sha256).hexdigest()[:32].encode()

    def _load(self, f: IO[bytes]) -> None:
        """Check the header and index the trusted lines, one line at a time."""
        assert self._file is None
        first = f.readline()
        if not first.endswith(b"\n"):
            self.torn_bytes = len(first)  # new (empty), or only a torn header: (re)start it
            return
        try:
            old = json.loads(first)
        except (ValueError, RecursionError):
            old = None
        if not isinstance(old, dict) or old.get("journal") != JOURNAL_KIND:
            raise ConfigError(f"{self.path} is not a lookup batch journal: move or delete it")
        if old.get("version") != JOURNAL_VERSION:
            raise ConfigError(f"{self.path} was written by another version of lookup: "
                              "delete it to start over")  # fmt: skip
        self.started = True
        changes = header_changes(old, self.header)
        if changes:
            raise ConfigError(
                f"cannot resume from {self.path}: {'; '.join(changes)}. Run with what the "
                "journal was made with, or delete it to start over"
            )
        self.header = old
        self._key = hashlib.sha256(first[:-1]).digest()
        offset = len(first)
        for line in f:
            if not line.endswith(b"\n"):  # a torn last line
                self.torn_bytes = len(line)
                break
            self._index_line(line[:-1], offset)
            offset += len(line)
        self._end = offset

    def _index_line(self, line: bytes, offset: int) -> None:
        record_bytes, tab, checksum = line.rpartition(b"\t")
        if not tab or not hmac.compare_digest(checksum, self._checksum(record_bytes)):
            self.unreadable += 1
            return
        try:
            record = RowResult.model_validate_json(record_bytes)
        except ValidationError:
            self.unreadable += 1
            return
        self._index.set(record.row, offset, record.status)

    def check_rows(self, rows: Iterable[BatchRow], total: int) -> None:
        """Check each trusted record against its input row before it is kept.

        The checksum's key is in the journal's own header, so a line written with it is
        trusted; a record that cannot be the answer to its row (a row number past the
        input, another row's id or mask, a phone that does not fit the mask) proves the
        journal was forged or mixed up: ``ConfigError``, naming the first such line.
        """
        if not len(self):
            return
        beyond = next((row for row in self.rows() if not 1 <= row <= total), None)
        if beyond is not None:
            self._refuse(f"it holds row {beyond}, but the input has {total:,} rows")
        for row in rows:  # one record at a time: memory stays O(1) in the rows
            if not self.status(row.row):
                continue
            record = self.result(row.row)
            if str(record.id) != str(row.key) or record.mask != row.mask:
                self._refuse(f"its record of row {row.row} is not the input's row {row.row}")
            phones = [p for p in (record.phone, *(record.hits or ())) if p]
            if phones and not _fits(row.mask, phones):
                self._refuse(f"its record of row {row.row} has a number that does not fit "
                             "the row's mask")  # fmt: skip
            if record.status == "matched" and not phones:
                self._refuse(f"its record of row {row.row} is matched without a number")

    def _refuse(self, what: str) -> None:
        raise ConfigError(
            f"cannot resume from {self.path}: {what} (edited, or from another run): "
            "delete it to start over"
        )

    def _start(self) -> None:
        """Cut a torn tail; write the header to a new journal."""
        f = self._file
        if f is None:
            self._key = hashlib.sha256(json.dumps(self.header).encode()).digest()
            return
        if not self.started:  # new, or only a torn header
            f.truncate(0)
            line = json.dumps(self.header, ensure_ascii=False).encode()
            f.write(line + b"\n")
            f.flush()
            self._key = hashlib.sha256(line).digest()
            self._end = len(line) + 1
        elif self.torn_bytes:
            f.seek(0, os.SEEK_END)
            f.truncate(f.tell() - self.torn_bytes)

    def append(self, result: RowResult) -> None:
        """Record a finished row: one write of one line (record, tab, checksum), flushed."""
        if self._file is None:
            return
        record = result.as_json().encode()
        line = record + b"\t" + self._checksum(record) + b"\n"
        self._file.write(line)
        self._file.flush()
        self._index.set(result.row, self._end, result.status)
        self._end += len(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # also releases the lock
            self._file = None

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
