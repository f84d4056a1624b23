"""Writing batch output (layer L3): rows as they come, in order, to a private file or a stream.

A file is written to a temporary file created exclusively next to it (random name,
``O_EXCL``, never through a symlink, mode 0600), then renamed over it by
:meth:`OutputFile.commit`; until then OUT is untouched, and a run that fails leaves no
half-written OUT behind. A stream (stdout) gets each row as it is written. CSV cells a
spreadsheet would evaluate (starting with ``= + - @``, tab or CR) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TextIO

from lookup.engine.batch import RowResult
from lookup.files.read import InputFormat

__all__ = ["CSV_COLUMNS", "OutputFile", "OutputWriteError"]

CSV_COLUMNS: Final = (
    "id", "row", "mask", "status", "phone", "tier", "province", "city", "carrier", "checks",
    "elapsed_ms", "reason",
)  # fmt: skip
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


class OutputWriteError(OSError):
    """Writing an output failed (not the journal): the rows done are in the journal."""


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet will not evaluate (OWASP: prefix ``'``)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


class OutputFile:
    """One output, written a row at a time in the order :meth:`write` is called.

    ``path=None`` writes ``stream`` (default stdout). Use as a context manager: leaving
    it without :meth:`commit` removes the temporary file (OUT keeps what it had).
    """

    def __init__(self, path: Path | None, fmt: InputFormat, *, bom: bool = False,
                 stream: TextIO | None = None) -> None:  # fmt: skip
        self.path = path
        self.fmt: InputFormat = fmt
        self._bom = bom
        self._given = stream
        self._stream: TextIO | None = None
        self._tmp: Path | None = None
        self._csv: Any = None
        self.rows = 0

    def __enter__(self) -> Self:
        try:
            self._open()
        except OSError as exc:
            self.__exit__(None, None, None)
            raise OutputWriteError(exc.errno, exc.strerror or str(exc)) from exc
        return self

    def _open(self) -> None:
        if self.path is None:
            self._stream = self._given or sys.stdout
        else:
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                        suffix=".tmp")  # fmt: skip
            self._tmp = Path(name)
            self._stream = os.fdopen(fd, "w", encoding="utf-8", newline="")
        if self.fmt == "csv":
            if self._bom:
                self._stream.write("\ufeff")
            self._csv = csv.writer(self._stream)
            self._csv.writerow(CSV_COLUMNS)

    def write(self, result: RowResult) -> None:
        assert self._stream is not None, "write() outside `with`"
        try:
            if self._csv is not None:
                self._csv.writerow([_cell(c) for c in result.as_csv()])
            else:
                self._stream.write(result.as_json() + "\n")
        except OSError as exc:
            raise OutputWriteError(exc.errno, exc.strerror or str(exc)) from exc
        self.rows += 1

    def commit(self) -> None:
        """Make the output whole: flush a stream; sync a file and rename it over OUT."""
        stream = self._stream
        assert stream is not None, "commit() outside `with`"
        try:
            stream.flush()
            if self._tmp is None or self.path is None:
                return
            os.fsync(stream.fileno())
            stream.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise OutputWriteError(exc.errno, exc.strerror or str(exc)) from exc
        self._tmp = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        if self._tmp is not None:
            if self._stream is not None:
                self._stream.close()
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
        self._stream = self._csv = None
