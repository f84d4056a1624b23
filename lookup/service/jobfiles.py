"""The jobs' files: a job's folder, its ``meta.json``, its upload, journal and results.

A job lives in its own folder under the store's root (folders 0700, files 0600)::

    ROOT/<id>/meta.json          who owns it, what it is, its state
    ROOT/<id>/input.csv|jsonl    the upload, decoded (UTF-8 or GB18030) and saved as UTF-8
    ROOT/<id>/journal            the batch journal: one line per finished row
    ROOT/<id>/results.csv|jsonl  written in input order as rows finish

:class:`Job` is what ``meta.json`` holds and a job's live progress; :class:`JobFolder` the
store's side that reads and writes these files (the root's checks, an upload saved and
counted, the journal counted, the results rendered from it). :class:`lookup.service.jobs.JobStore`
is built on it and runs the jobs; :mod:`lookup.service.jobshare` shares the folder between
workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from lookup.domain.errors import ConfigError, LookupFailure
from lookup.engine.batch import STATUSES, RowResult
from lookup.files.journal import Journal
from lookup.files.journaled import copy_journal
from lookup.files.read import InputFormat, read_rows
from lookup.files.write import OutputFile
from lookup.service.uploads import (
    BadUploadError,
    decode_upload,
    format_of,
    safe_name,
    write_private,
)

if TYPE_CHECKING:
    from lookup.engine.matcher import Mode
    from lookup.runtime.settings import Settings

__all__ = ["MAX_JOB_ROWS", "Job", "JobFolder", "JobNotFoundError", "JobState", "JobStateError"]

log = logging.getLogger("lookup.jobs")

JobState = Literal["queued", "running", "done", "cancelled", "failed"]
_ENDED: Final[frozenset[str]] = frozenset({"done", "cancelled", "failed"})
MAX_JOB_ROWS: Final = 100_000
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{16}")
_META: Final = "meta.json"
_PERSISTED: Final = ("id", "owner", "filename", "format", "total", "mode", "created", "state",
                     "finished", "error", "started", "size")  # fmt: skip
_OPTIONAL: Final[dict[str, Any]] = {"started": None, "size": 0}
"""Persisted fields a job saved by an earlier version may lack, and their defaults."""
_JOURNAL: Final = "journal"


class JobNotFoundError(LookupFailure):
    """No such job for this caller (it may belong to another, or be removed already)."""


class JobStateError(LookupFailure):
    """The job is not in a state that allows this (results of a job still running)."""


@dataclass
class Job:
    """One job: what is persisted in ``meta.json`` and its live progress."""

    id: str
    owner: str
    filename: str
    format: InputFormat
    total: int
    mode: Mode
    created: float
    state: JobState = "queued"
    finished: float | None = None
    error: str | None = None
    started: float | None = None
    """Wall time the job first got a slot (a resumed job keeps its first start)."""
    size: int = 0
    """Bytes of the upload as saved (what the per-caller byte cap counts)."""
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    done: int = 0
    _run_started: float | None = field(default=None, init=False, repr=False)
    _run_first: int = field(default=0, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _cancel_requested: bool = field(default=False, init=False, repr=False)
    _ended: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)
    _live: tuple[float | None, float | None] | None = field(default=None, init=False, repr=False)
    """Rows/s and ETA as the process running the job last saved them (another worker's
    view of it, :mod:`lookup.service.jobshare`)."""

    def meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _PERSISTED}

    @classmethod
    def from_meta(cls, data: dict[str, Any]) -> Job:
        fields: dict[str, Any] = {k: data[k] if k not in _OPTIONAL else data.get(k, _OPTIONAL[k])
                                  for k in _PERSISTED}  # fmt: skip
        return cls(**fields)

    def add(self, result: RowResult) -> None:
        self.done += 1
        self.counts[result.status] = self.counts.get(result.status, 0) + 1

    def progress(self, now: float | None = None) -> dict[str, Any]:
        """What a caller sees of the job: counts by status, done/total, rate, ETA."""
        now = time.monotonic() if now is None else now
        rate = eta = None
        if self.state == "running" and self._live is not None:
            rate, eta = self._live
        elif self.state == "running" and self._run_started is not None:
            new, spent = self.done - self._run_first, now - self._run_started
            if new > 0 and spent > 0:
                rate = new / spent
                eta = (self.total - self.done) / rate
        return {
            "id": self.id,
            "filename": self.filename,
            "format": self.format,
            "mode": self.mode,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "counts": dict(self.counts),
            "rows_per_second": None if rate is None else round(rate, 2),
            "eta_s": None if eta is None else round(eta, 1),
            "created": _iso(self.created),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "error": self.error,
        }


def _iso(when: float | None) -> str | None:
    """A wall time as ISO 8601 in UTC to the second (``2025-03-01T08:30:00+00:00``)."""
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")

class JobFolder:
    """The files of a job store (see the module); :class:`lookup.service.jobs.JobStore`
    sets these attributes."""

    root: Path
    settings: Settings
    max_rows: int
    clock: Callable[[], float]
    _jobs: dict[str, Job]

    def _check_root(self) -> bool:
        """Whether ``root`` exists; a symbolic link is refused (``ConfigError``)."""
        try:
            st = os.lstat(self.root)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise ConfigError(
                f"the jobs folder {self.root} is a symbolic link (LOOKUP_SERVICE_JOBS_DIR): "
                "name the real folder"
            )
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"the jobs folder {self.root} is not a folder (LOOKUP_SERVICE_JOBS_DIR)")
        return True

    def _make_root(self) -> None:
        """Create ``root`` 0700 if missing. Modes change only on a folder created here,
        never on one that was there (a shared folder keeps its own) nor through a link:
        each job's own folder is 0700 either way."""
        if self._check_root():
            return
        try:
            self.root.mkdir(mode=0o700, parents=True)
        except FileExistsError:  # made meanwhile, not by us: checked, its mode left alone
            self._check_root()
            return
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:  # the folder just made, never a link swapped in since
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)

    def _load(self, meta: Path) -> None:
        try:
            job = Job.from_meta(json.loads(meta.read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping %s: unreadable job metadata (%s)", meta.parent.name, exc)
            return
        if job.state in _ENDED:
            job._ended.set()
            self._count_journal(job)
        self._jobs[job.id] = job

    def _prepare(self, owner: str, data: bytes, filename: str | None, mode: Mode) -> Job:
        """Decode, save (0600) and count the upload: a job not yet known to the store.
        Touches nothing the event loop shares, so it may run in a thread."""
        if mode not in ("first", "all"):
            raise BadUploadError(f"mode must be 'first' or 'all', got {mode!r}")
        name = safe_name(filename)
        text = decode_upload(data, name)
        fmt = format_of(name, text)
        job_id = secrets.token_urlsafe(12)
        folder = self._dir(job_id)
        self._make_root()
        folder.mkdir(mode=0o700)
        try:
            path = folder / f"input.{fmt}"
            saved = text.encode("utf-8")
            write_private(path, saved)
            total = self._count_rows(path, fmt, name)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Job(id=job_id, owner=owner, filename=name, format=fmt, total=total, mode=mode,
                   created=self.clock(), size=len(saved))  # fmt: skip

    def _dir(self, job_id: str) -> Path:
        return self.root / job_id

    def _save(self, job: Job) -> None:
        data = json.dumps(job.meta(), ensure_ascii=False, indent=1).encode("utf-8")
        write_private(self._dir(job.id) / _META, data)

    def _count_rows(self, path: Path, fmt: InputFormat, name: str) -> int:
        total = 0
        try:
            for _ in read_rows(path, fmt):
                total += 1
                if total % 256 == 0:
                    # csv.reader calling back into Python never hands the GIL over on its
                    # own: without this, the event loop's thread waits for the whole count.
                    time.sleep(0)
                if total > self.max_rows:
                    raise BadUploadError(f"{name} has more than {self.max_rows:,} rows: split it")
        except ConfigError as exc:
            # The readers name the saved copy; the caller knows the file by its own name.
            raise BadUploadError(str(exc).replace(str(path), name).replace(path.name, name)) from None
        if total == 0:
            raise BadUploadError(f"{name} has no rows to look up")
        return total

    def _outputs(self, job: Job) -> list[OutputFile]:
        folder = self._dir(job.id)
        return [OutputFile(folder / f"results.{fmt}", fmt, bom=fmt == "csv")
                for fmt in ("csv", "jsonl")]  # fmt: skip

    def _journal(self, job: Job) -> Journal | None:
        """The job's journal, read only (checksummed lines only); ``None`` without one."""
        jpath = self._dir(job.id) / _JOURNAL
        if not jpath.exists():
            return None
        try:
            return Journal.read(jpath)
        except (ConfigError, KeyError, TypeError) as exc:  # not a journal (of this version)
            log.warning("job %s: unreadable journal (%s): no rows counted", job.id, exc)
            return None

    def _count_journal(self, job: Job) -> None:
        journal = self._journal(job)
        job.done, job.counts = 0, dict.fromkeys(STATUSES, 0)
        if journal is None:
            return
        for row in journal.rows():
            status = journal.status(row)
            if status is not None:
                job.done += 1
                job.counts[status] += 1

    def _render(self, job: Job) -> None:
        """The results files from the journal, one row at a time, when the run did not
        write them (a job cancelled, failed, or ended before this process)."""
        outputs = self._outputs(job)
        if all(out.path is not None and out.path.exists() for out in outputs):
            return
        journal = self._journal(job)
        if journal is None:
            journal = Journal.memory({})
        copy_journal(journal, outputs)
