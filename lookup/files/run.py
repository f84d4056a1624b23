"""Batch files (layer L3): readers, the journal, the writer, and :func:`run_file` over them.

::

    summary = await run_file("masks.csv", "results.jsonl", engine=engine, settings=settings)

**Input.** CSV with a header (a ``mask`` column; optionally ``id`` and the hints) or
JSONL; ``-`` reads stdin (spooled to a private temporary file). The encoding is UTF-8
with or without BOM, else GB18030 (with a warning), or what ``encoding=`` names. A row
that cannot be read (bytes the encoding rejects, a line over :data:`MAX_LINE_BYTES`, a
field over the CSV field limit, JSON nested too deep, a quote never closed) becomes an
``invalid`` row naming its line; the run goes on.

**Journal** (``OUT.journal``, or ``journal=``): line 1 is a header binding it to the input
(path, size, sha256) and to the settings that change answers; resuming with anything
different is refused, naming what changed. Then one line per finished row, appended and
flushed as the row finishes: the output record, a tab, and a checksum keyed to the
header line (which holds a random nonce). A line that fails its checksum (edited, or
copied from another journal) or does not parse is not trusted: its row is looked up
again. A torn last line (the process died mid-write) is cut off on resume.

**Output.** Written as rows finish, in input order, through a bounded reorder window
(:mod:`lookup.files.journaled`; rows a resumed run finds in the journal are copied from
it): to a temporary file created exclusively (``O_EXCL``, never through a symlink, mode
0600) in the output's folder, renamed over OUT when every row is there; ``-`` writes
stdout as rows come. Memory does not grow with the number of rows. OUT must be a regular file or a new
path: anything else (a directory, a FIFO, a device, a symlink) is refused before any
lookup. Journal and output are 0600: they hold full numbers. CSV cells a spreadsheet
would evaluate (starting with ``= + - @``, tab or CR) are prefixed with ``'``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, Protocol, TextIO

from lookup.domain.errors import ConfigError, LookupFailure
from lookup.domain.privacy import Redactor
from lookup.engine.batch import (
    DEFAULT_LOOKUPS_IN_FLIGHT,
    BatchSummary,
    ResultCallback,
    RowResult,
    RowStatus,
)
from lookup.files.header import AnswerSettings, journal_header
from lookup.files.journal import Journal, journal_path
from lookup.files.journaled import DEFAULT_WINDOW, CheckerRunner, RowRunner, run_journaled
from lookup.files.read import MAX_LINE_BYTES, InputFormat, detect_format, input_encoding, read_rows
from lookup.files.write import CSV_COLUMNS, OutputFile, OutputWriteError

if TYPE_CHECKING:
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import Mode

__all__ = [
    "CSV_COLUMNS",
    "MAX_LINE_BYTES",
    "FileRun",
    "InputFormat",
    "Journal",
    "RowRunner",
    "check_output_path",
    "detect_format",
    "journal_header",
    "journal_path",
    "read_rows",
    "run_file",
    "write_output",
]

log = logging.getLogger("lookup.batch")

STDIO: Final = "-"


# -- paths ---------------------------------------------------------------------------------------


def _check_writable_folder(path: Path, what: str) -> None:
    # the file is written beside itself and renamed into place: its folder must take new
    # files; found now, not after every lookup ran
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write {what} {path}: its folder {folder} is not writable; pick another "
            "folder or fix its permissions"
        )


def check_output_path(path: Path, what: str = "--out") -> None:
    """``path`` must be a regular file or a new name in an existing folder (``ConfigError``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise ConfigError(f"the folder of {what} {path} does not exist") from None
        _check_writable_folder(path, what)
        return
    _check_writable_folder(path, what)
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{what} {path} is a symbolic link: name the real file or a new path")
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise ConfigError(
            f"{what} {path} is {kind}: name a regular file or a new path ('-' for stdout)"
        )


# -- writing output ------------------------------------------------------------------------------


def write_output(path: Path | None, records: Iterable[RowResult], fmt: InputFormat, *,
                 bom: bool = False, stdout: TextIO | None = None) -> None:  # fmt: skip
    """Write ``records`` (already in order) to ``path`` atomically, or to stdout (``None``).

    The temporary file is created exclusively (random name, ``O_EXCL``, no symlink
    followed, mode 0600) next to ``path``, then renamed over it.
    """
    if path is not None:
        check_output_path(path)
    with OutputFile(path, fmt, bom=bom, stream=stdout) as output:
        for record in records:
            output.write(record)
        output.commit()


# -- run_file ------------------------------------------------------------------------------------


class EngineLike(Protocol):
    """What :func:`run_file` needs of ``lookup.runtime.engine.Engine``."""

    @property
    def checker(self) -> Checker: ...
    @property
    def description(self) -> str: ...




@dataclass
class FileRun:
    """What :func:`run_file` did."""

    summary: BatchSummary
    by_status: dict[RowStatus, int]
    total: int
    resumed: int
    out: Path | None
    fmt: InputFormat
    journal: Path | None

    @property
    def undecided(self) -> int:
        return self.by_status["inconclusive"] + self.by_status["api_error"]


def _spool_stdin(stdin: BinaryIO) -> Path:
    fd, name = tempfile.mkstemp(prefix="lookup-batch-", suffix=".in")
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(stdin, f)
    return Path(name)


def _spool_pipe(path: Path) -> Path:
    try:
        with path.open("rb") as pipe:
            return _spool_stdin(pipe)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def _output_format(out: Path | None, given: InputFormat | None) -> InputFormat:
    if given:
        return given
    return "csv" if out is not None and out.suffix.lower() == ".csv" else "jsonl"


async def run_file(
    input: str | Path,
    out: str | Path,
    *,
    engine: EngineLike | None = None,
    runner: RowRunner | None = None,
    settings: AnswerSettings,
    resume: bool = False,
    retry_failed: bool = False,
    on_result: ResultCallback | None = None,
    on_start: Callable[[int, dict[str, int]], None] | None = None,
    journal: str | Path | None = None,
    out_format: InputFormat | None = None,
    encoding: str | None = None,
    csv_bom: bool = False,
    mode: Mode = "first",
    lookups_in_flight: int = DEFAULT_LOOKUPS_IN_FLIGHT,
    redact: Callable[[str], str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    window: int = DEFAULT_WINDOW,
) -> FileRun:
    """Look up every row of ``input`` into ``out`` through ``engine``, resumably.

    ``-`` for ``input`` reads ``stdin``; ``-`` for ``out`` writes ``stdout`` (the journal
    is then ``journal``, or none: such a run cannot resume). Paths are checked before any
    lookup (``ConfigError``). ``on_start(total, done_by_status)`` is called once the
    rows are counted; ``on_result(result)`` as each row finishes. Reasons (API error
    texts) go through ``redact`` (default: numbers masked, URL credentials hidden)
    before they reach the journal or the output.

    The rows run on ``runner`` when given (a :class:`RowRunner`), else on ``engine``
    (``lookups_in_flight`` at a time, a :class:`~lookup.files.journaled.CheckerRunner`). Results reach ``out`` in
    input order through a reorder window of ``window`` rows (see
    :mod:`lookup.files.journaled`).
    """
    if runner is None:
        if engine is None:
            raise TypeError("run_file needs engine= or runner=")
        runner = CheckerRunner(engine.checker, lookups_in_flight,
                               description=engine.description)  # fmt: skip
    redact = redact or Redactor()
    to_stdout, to_stdin = str(out) == STDIO, str(input) == STDIO
    out_path = None if to_stdout else Path(out)
    if out_path is not None:
        check_output_path(out_path)
    jpath = Path(journal) if journal else (journal_path(out_path) if out_path else None)
    if jpath is not None:
        check_output_path(jpath, "--journal")
        same = {"the --out file": out_path, "the input file": None if to_stdin else Path(input)}
        for what, other in same.items():  # the output replaced the journal: nothing to resume
            if other is not None and jpath.resolve() == other.resolve():
                raise ConfigError(f"--journal is {what}: pick another name")
    if (resume or retry_failed) and jpath is None:
        raise ConfigError("--resume needs a journal: with --out - name one with --journal PATH")
    spooled = None
    shown: str | None = STDIO
    if str(input) == STDIO:
        spooled = in_path = _spool_stdin(stdin or sys.stdin.buffer)
    else:
        in_path = Path(input)
        if in_path.is_dir():
            raise ConfigError(f"input file {in_path} is a folder: name a CSV or JSONL file")
        if not in_path.exists():
            raise ConfigError(f"input file {in_path} does not exist")
        if not in_path.is_file():  # a pipe: <(zcat masks.csv.gz), a FIFO; read once
            shown = str(input)
            spooled = in_path = _spool_pipe(in_path)
        elif out_path is not None and out_path.resolve() == in_path.resolve():
            raise ConfigError("--out is the input file: pick another name")
    try:
        fmt = _output_format(out_path, out_format)
        return await _run(
            in_path, out_path, jpath, fmt, runner=runner, settings=settings, resume=resume,
            retry_failed=retry_failed, on_result=on_result, on_start=on_start,
            encoding=encoding, csv_bom=csv_bom, mode=mode, redact=redact, stdout=stdout,
            shown=shown if spooled else None, window=window,
        )  # fmt: skip
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)


def _open_journal(in_path: Path, jpath: Path | None, settings: AnswerSettings, mode: Mode,
                  resume: bool, encoding: str | None,
                  shown: str | None) -> tuple[Journal, InputFormat, str, int]:  # fmt: skip
    """Read the input once (format, encoding, rows), then open or create the journal."""
    in_fmt = detect_format(in_path)
    codec = input_encoding(in_path, encoding)
    total = sum(1 for _ in read_rows(in_path, in_fmt, encoding=codec))
    if jpath is not None and jpath.exists() and not resume:
        raise ConfigError(
            f"{jpath} exists: an earlier run of this output was interrupted or done. Pass "
            "--resume to continue it (--retry-failed to re-run its failed rows), or delete "
            "it to start over"
        )
    header = journal_header(in_path, settings, mode, shown_path=shown)
    try:
        jour = Journal.open(jpath, header) if jpath is not None else Journal.memory(header)
    except OSError as exc:
        raise ConfigError(f"cannot write the journal {jpath}: {exc.strerror or exc}") from None
    return jour, in_fmt, codec, total


def _abandon(jour: Journal, out_path: Path | None, exc: BaseException) -> None:
    """After a failed run: drop a journal that holds nothing; say how to go on."""
    if jour.path is not None and not jour.started and not len(jour):
        jour.path.unlink(missing_ok=True)  # nothing done: do not make the next run --resume
    if isinstance(exc, OutputWriteError):
        where = out_path or "stdout"
        then = ("the results are in the journal: run again with --resume" if len(jour)
                else "fix it and run again")  # fmt: skip
        raise LookupFailure(f"writing {where} failed: {exc.strerror or exc}; {then}") from exc
    if isinstance(exc, OSError):  # say, the disk filled up
        raise LookupFailure(f"writing {jour.path} failed: {exc.strerror or exc}; the rows "
                            "done so far are kept: fix it and run again with --resume") from exc  # fmt: skip


async def _run(in_path: Path, out_path: Path | None, jpath: Path | None, fmt: InputFormat, *,
               runner: RowRunner, settings: AnswerSettings, resume: bool, retry_failed: bool,
               on_result: ResultCallback | None,
               on_start: Callable[[int, dict[str, int]], None] | None, encoding: str | None,
               csv_bom: bool, mode: Mode, redact: Callable[[str], str],
               stdout: TextIO | None, shown: str | None, window: int) -> FileRun:  # fmt: skip
    jour, in_fmt, codec, total = _open_journal(in_path, jpath, settings, mode,
                                               resume or retry_failed, encoding, shown)  # fmt: skip
    output = OutputFile(out_path, fmt, bom=csv_bom, stream=stdout)
    try:
        with jour:
            done = await run_journaled(
                jour, lambda: read_rows(in_path, in_fmt, encoding=codec), [output],
                runner=runner, mode=mode, max_candidates=settings.max_candidates,
                retry_failed=retry_failed, redact=redact, on_result=on_result,
                on_start=on_start, total=total, window=window,
            )  # fmt: skip
    except BaseException as exc:
        _abandon(jour, out_path, exc)
        raise
    if done.written != total:  # every row read was written: this would be a bug
        raise RuntimeError(f"{total - done.written} rows have no result")
    by_status: dict[RowStatus, int] = done.by_status
    return FileRun(done.summary, by_status, total, done.kept, out_path, fmt, jpath)
