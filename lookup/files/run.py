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

**Output.** Written at the end, in input order, from the journal: to a temporary file
created exclusively (``O_EXCL``, never through a symlink, mode 0600) in the output's
folder, then renamed over OUT; ``-`` writes stdout. OUT must be a regular file or a new
path: anything else (a directory, a FIFO, a device, a symlink) is refused before any
lookup. Journal and output are 0600: they hold full numbers. CSV cells a spreadsheet
would evaluate (starting with ``= + - @``, tab or CR) are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, Literal, Protocol, TextIO

from lookup.domain.errors import ConfigError, LookupFailure
from lookup.domain.privacy import Redactor
from lookup.engine.batch import (
    DEFAULT_LOOKUPS_IN_FLIGHT,
    STATUSES,
    BatchRow,
    BatchSummary,
    ResultCallback,
    RowResult,
    RowStatus,
    run_batch,
)
from lookup.files.journal import AnswerSettings, Journal, journal_header, journal_path
from lookup.files.read import MAX_LINE_BYTES, InputFormat, detect_format, input_encoding, read_rows

if TYPE_CHECKING:
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import Mode

__all__ = [
    "CSV_COLUMNS",
    "MAX_LINE_BYTES",
    "FileRun",
    "InputFormat",
    "Journal",
    "LocalRunner",
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
CSV_COLUMNS: Final = (
    "id", "row", "mask", "status", "phone", "tier", "province", "city", "carrier", "checks",
    "elapsed_ms", "reason",
)  # fmt: skip
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


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


def _cell(value: object) -> object:
    """A CSV cell a spreadsheet will not evaluate (OWASP: prefix ``'``)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _render(stream: TextIO, records: Iterable[RowResult], fmt: InputFormat, bom: bool) -> None:
    if fmt == "csv":
        if bom:
            stream.write("\ufeff")
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        writer.writerows([_cell(c) for c in r.as_csv()] for r in records)
    else:
        stream.writelines(r.as_json() + "\n" for r in records)


def write_output(path: Path | None, records: Iterable[RowResult], fmt: InputFormat, *,
                 bom: bool = False, stdout: TextIO | None = None) -> None:  # fmt: skip
    """Write ``records`` (already in order) to ``path`` atomically, or to stdout (``None``).

    The temporary file is created exclusively (random name, ``O_EXCL``, no symlink
    followed, mode 0600) next to ``path``, then renamed over it.
    """
    if path is None:
        out = stdout or sys.stdout
        _render(out, records, fmt, bom)
        out.flush()
        return
    check_output_path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            _render(stream, records, fmt, bom)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- run_file ------------------------------------------------------------------------------------


class EngineLike(Protocol):
    """What :func:`run_file` needs of ``lookup.runtime.engine.Engine``."""

    @property
    def checker(self) -> Checker: ...
    @property
    def description(self) -> str: ...


class RowRunner(Protocol):
    """What runs a file's pending rows: :class:`LocalRunner` or Ray actors
    (``lookup.scale.ray``). ``run`` calls ``on_result`` once per row on this process's
    loop, where :func:`run_file` journals it: the journal's guarantees hold wherever the
    lookups run."""

    @property
    def description(self) -> str: ...

    async def run(self, rows: Iterable[BatchRow], *, mode: Mode, max_candidates: int,
                  on_result: ResultCallback) -> BatchSummary: ...  # fmt: skip


class RowPath(Protocol):
    """The one lookup path's batch-row call (:meth:`lookup.runtime.lookups.LookupPath.row`)."""

    async def row(self, row: BatchRow, *, caller: str, surface: Literal["batch"], mode: Mode,
                  max_candidates: int | None = None) -> RowResult: ...  # fmt: skip


@dataclass(frozen=True)
class LocalRunner:
    """Rows through :func:`~lookup.engine.batch.run_batch` over the engine's one checker,
    each through ``path`` (the one lookup path: audit, metrics, privacy) when given."""

    engine: EngineLike
    lookups_in_flight: int = DEFAULT_LOOKUPS_IN_FLIGHT
    path: RowPath | None = None

    @property
    def description(self) -> str:
        return self.engine.description

    async def run(self, rows: Iterable[BatchRow], *, mode: Mode, max_candidates: int,
                  on_result: ResultCallback) -> BatchSummary:  # fmt: skip
        lookup = None
        if self.path is not None:
            path = self.path

            async def lookup(row: BatchRow) -> RowResult:
                return await path.row(row, caller="batch", surface="batch", mode=mode,
                                      max_candidates=max_candidates)  # fmt: skip

        return await run_batch(rows, checker=self.engine.checker, mode=mode,
                               lookups_in_flight=self.lookups_in_flight, lookup=lookup,
                               max_candidates=max_candidates, on_result=on_result)  # fmt: skip


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
) -> FileRun:
    """Look up every row of ``input`` into ``out`` through ``engine``, resumably.

    ``-`` for ``input`` reads ``stdin``; ``-`` for ``out`` writes ``stdout`` (the journal
    is then ``journal``, or none: such a run cannot resume). Paths are checked before any
    lookup (``ConfigError``). ``on_start(total, done_by_status)`` is called once the
    rows are counted; ``on_result(result)`` as each row finishes. Reasons (API error
    texts) go through ``redact`` (default: numbers masked, URL credentials hidden)
    before they reach the journal or the output.

    The rows run on ``runner`` when given (a :class:`RowRunner`), else on ``engine``
    (``lookups_in_flight`` at a time, :class:`LocalRunner`).
    """
    if runner is None:
        if engine is None:
            raise TypeError("run_file needs engine= or runner=")
        runner = LocalRunner(engine, lookups_in_flight)
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
            shown=shown if spooled else None,
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


def _abandon(jour: Journal, exc: BaseException) -> None:
    """After a failed run: drop a journal that holds nothing; say how to go on."""
    if jour.path is not None and not jour.started and not jour.records:
        jour.path.unlink(missing_ok=True)  # nothing done: do not make the next run --resume
    if isinstance(exc, OSError):  # say, the disk filled up
        raise LookupFailure(f"writing {jour.path} failed: {exc.strerror or exc}; the rows "
                            "done so far are kept: fix it and run again with --resume") from exc  # fmt: skip


def _finish(jour: Journal, total: int, out_path: Path | None, fmt: InputFormat, bom: bool,
            stdout: TextIO | None) -> dict[RowStatus, int]:  # fmt: skip
    records = jour.records
    final = [records[row] for row in sorted(records) if row <= total]
    if len(final) != total:  # every row read was looked up: this would be a bug
        raise RuntimeError(f"{total - len(final)} rows have no result")
    try:
        write_output(out_path, final, fmt, bom=bom, stdout=stdout)
    except OSError as exc:
        raise LookupFailure(f"writing {out_path} failed: {exc.strerror or exc}; the results "
                            "are in the journal: run again with --resume") from exc  # fmt: skip
    by_status: dict[RowStatus, int] = dict.fromkeys(STATUSES, 0)
    for r in final:
        by_status[r.status] += 1
    return by_status


async def _run(in_path: Path, out_path: Path | None, jpath: Path | None, fmt: InputFormat, *,
               runner: RowRunner, settings: AnswerSettings, resume: bool, retry_failed: bool,
               on_result: ResultCallback | None,
               on_start: Callable[[int, dict[str, int]], None] | None, encoding: str | None,
               csv_bom: bool, mode: Mode, redact: Callable[[str], str],
               stdout: TextIO | None, shown: str | None) -> FileRun:  # fmt: skip
    jour, in_fmt, codec, total = _open_journal(in_path, jpath, settings, mode,
                                               resume or retry_failed, encoding, shown)  # fmt: skip
    try:
        with jour:
            summary, kept = await _run_journaled(
                jour, in_path, in_fmt, codec, total, runner=runner, retry_failed=retry_failed,
                on_result=on_result, on_start=on_start, mode=mode, redact=redact,
                max_candidates=settings.max_candidates,
            )  # fmt: skip
    except BaseException as exc:
        _abandon(jour, exc)
        raise
    by_status = _finish(jour, total, out_path, fmt, csv_bom, stdout)
    return FileRun(summary, by_status, total, kept, out_path, fmt, jpath)


async def _run_journaled(jour: Journal, in_path: Path, in_fmt: InputFormat, codec: str,
                         total: int, *, runner: RowRunner, retry_failed: bool,
                         on_result: ResultCallback | None,
                         on_start: Callable[[int, dict[str, int]], None] | None, mode: Mode,
                         redact: Callable[[str], str],
                         max_candidates: int) -> tuple[BatchSummary, int]:  # fmt: skip
    """Run the rows the journal lacks, recording each; returns the summary and rows kept."""
    jour.check_rows(read_rows(in_path, in_fmt, encoding=codec), total)
    if jour.torn_bytes:
        log.warning("ignored a torn last line of %s (%d bytes); its row is looked up again",
                    jour.name, jour.torn_bytes)  # fmt: skip
    if jour.unreadable:
        log.warning("%d lines of %s failed their checksum or did not parse (edited, or from "
                    "another journal); their rows are looked up again",
                    jour.unreadable, jour.name)  # fmt: skip
    kept = {row for row, r in jour.records.items() if r.definite or not retry_failed}
    if jour.records:
        log.info("resuming from %s: %d rows done, %d to look up", jour.name, len(kept),
                 total - len(kept))  # fmt: skip
    counts: dict[str, int] = {}
    for row in kept:
        status = jour.records[row].status
        counts[status] = counts.get(status, 0) + 1
    if on_start is not None:
        on_start(total, counts)
    if len(kept) == total:  # all done before (say, a run that only lost its output)
        return BatchSummary(), len(kept)

    async def record(result: RowResult) -> None:
        if result.reason:
            result = result.model_copy(update={"reason": redact(result.reason)})
        jour.append(result)
        if on_result is not None:
            done = on_result(result)
            if done is not None:
                await done

    pending = (row for row in read_rows(in_path, in_fmt, encoding=codec) if row.row not in kept)
    log.info("batch of %d rows against the %s", total - len(kept), runner.description)
    summary = await runner.run(pending, mode=mode, max_candidates=max_candidates,
                               on_result=record)  # fmt: skip
    return summary, len(kept)
