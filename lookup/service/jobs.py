"""Server-side batch jobs: an uploaded CSV or JSONL file, run through the journaled run of ``lookup batch``.

A job lives in its own folder under the store's root (folders 0700, files 0600): its
``meta.json``, the upload, the journal and the results (:mod:`lookup.service.jobfiles`).

A job runs its rows through :func:`lookup.files.journaled.run_journaled`, the run ``lookup
batch`` uses: the same journal (:class:`lookup.files.journal.Journal`), the same redaction
of every text before it is journaled or written, the same in-order writer, in memory that
does not grow with the rows. A job that was running when the process stopped resumes
from its journal when the store starts again: rows already in the journal are not looked
up twice, they are copied to the results. A cancelled job keeps the rows done so far and
its results, copied from the journal one row at a time, hold only those. Jobs that ended are removed ``retention_s``
seconds later.

Jobs belong to the caller that created them (``token:`` and a keyed hash of the token, :func:`lookup.service.http.caller_name`); asking for another caller's
job, or one that does not exist, is the same :class:`JobNotFoundError`. This module does
no HTTP: :mod:`lookup.service.jobroutes` puts it behind ``/v1/jobs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from lookup.domain.errors import LookupFailure
from lookup.domain.privacy import Redactor
from lookup.engine.batch import DEFAULT_LOOKUPS_IN_FLIGHT, STATUSES, BatchRow, RowResult
from lookup.files.header import journal_header
from lookup.files.journal import Journal
from lookup.files.journaled import CheckerRunner, run_journaled
from lookup.files.private import open_private
from lookup.files.read import InputFormat, read_rows
from lookup.service.jobfiles import (
    _ENDED,
    _ID_RE,
    _JOURNAL,
    _META,
    MAX_JOB_ROWS,
    Job,
    JobFolder,
    JobNotFoundError,
    JobState,
    JobStateError,
)
from lookup.service.turns import DEFAULT_JOB_CAPS, JobCaps, JobQuotaError, Turns
from lookup.service.uploads import BadUploadError, decode_upload

if TYPE_CHECKING:
    from lookup.domain.segments import SegmentDB
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import Mode
    from lookup.runtime.lookups import LookupPath
from lookup.runtime.settings import Settings

__all__ = [
    "DEFAULT_RETENTION",
    "MAX_JOB_ROWS",
    "BadUploadError",
    "Job",
    "JobCaps",
    "JobNotFoundError",
    "JobQuotaError",
    "JobStateError",
    "JobStore",
    "decode_upload",
]

T = TypeVar("T")
log = logging.getLogger("lookup.jobs")
audit_log = logging.getLogger("lookup.audit")

DEFAULT_RETENTION: Final = 86_400.0
"""Seconds a job's files are kept after it ended."""
DEFAULT_JOBS_RUNNING: Final = 2
"""Jobs that run at once; more wait their turn (``queued``), handed out fairly between
callers (:class:`lookup.service.turns.Turns`). All share the one checker."""


class JobStore(JobFolder):
    """The jobs of one service: created from uploads, run over its ``checker``, kept on disk.

    ``start()`` resumes the jobs a previous process left queued or running and begins
    the retention sweep; ``close()`` stops the running ones without marking them ended
    (the next ``start()`` resumes them). ``clock`` is wall time (creation, retention).
    """

    def __init__(
        self,
        root: Path,
        *,
        checker: Checker,
        settings: Settings,
        retention_s: float = DEFAULT_RETENTION,
        lookups_in_flight: int = DEFAULT_LOOKUPS_IN_FLIGHT,
        jobs_running: int = DEFAULT_JOBS_RUNNING,
        max_rows: int = MAX_JOB_ROWS,
        db: SegmentDB | None = None,
        clock: Callable[[], float] = time.time,
        path: Callable[[], LookupPath | None] | None = None,
        caps: JobCaps = DEFAULT_JOB_CAPS,
    ) -> None:
        self.root = Path(root)
        self.path = path
        self.checker = checker
        self.settings = settings
        self.retention_s = retention_s
        self.lookups_in_flight = lookups_in_flight
        self.max_rows = max_rows
        self.db = db
        self.clock = clock
        self.caps = caps
        self._turns = Turns(jobs_running)
        self._left: set[asyncio.Future[Any]] = set()
        self._jobs: dict[str, Job] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the jobs under ``root``, resume the unfinished ones, start sweeping."""
        if self._check_root():
            for meta in sorted(self.root.glob(f"*/{_META}")):
                self._load(meta)
        self.sweep()
        for job in self._jobs.values():
            if job.state not in _ENDED:
                log.info("resuming job %s (%d rows, %s)", job.id, job.total, job.owner)
                self._launch(job)
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def close(self) -> None:
        """Stop running jobs (they stay resumable) and the sweeper."""
        tasks = [j._task for j in self._jobs.values() if j._task is not None]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._left:  # threads its jobs left behind: what they opened gets closed
            await asyncio.wait(set(self._left))

    async def _sweep_forever(self) -> None:
        every = max(1.0, min(60.0, self.retention_s / 10))
        while True:
            await asyncio.sleep(every)
            self.sweep()

    def sweep(self) -> int:
        """Remove the jobs that ended more than ``retention_s`` ago; returns how many."""
        now = self.clock()
        old = [j for j in self._jobs.values()
               if j.state in _ENDED and (j.finished or j.created) + self.retention_s <= now]  # fmt: skip
        for job in old:
            shutil.rmtree(self._dir(job.id), ignore_errors=True)
            del self._jobs[job.id]
            log.info("removed job %s (ended more than %.0f s ago)", job.id, self.retention_s)
        return len(old)

    # -- the API ------------------------------------------------------------------------

    def create(self, owner: str, data: bytes, filename: str | None, *,
               mode: Mode = "first") -> Job:  # fmt: skip
        """A new job from an uploaded file; it starts as soon as a slot is free.

        :raises BadUploadError: not UTF-8/GB18030, a CSV without a ``mask`` column, no
            rows, more than ``max_rows`` rows.
        :raises JobQuotaError: the caller has as many jobs, rows or bytes queued or
            running as :attr:`caps` allow.
        """
        self._check_caps(owner, 0, len(data))
        return self._admit(self._prepare(owner, data, filename, mode))

    async def create_async(self, owner: str, data: bytes, filename: str | None, *,
                           mode: Mode = "first") -> Job:  # fmt: skip
        """:meth:`create` with the file's decoding, saving and counting in a thread.

        A 100,000-row upload takes about a second to read through: on the event loop, every
        other request of the service would wait for it.
        """
        self._check_caps(owner, 0, len(data))  # before the work, on what is known
        job = await _in_thread(
            self._prepare, owner, data, filename, mode,
            abandoned=lambda job: shutil.rmtree(self._dir(job.id), ignore_errors=True),
        )  # fmt: skip
        return self._admit(job)

    def _usage(self, owner: str) -> tuple[int, int, int]:
        """Jobs, rows and upload bytes ``owner`` has queued or running."""
        mine = [j for j in self._jobs.values() if j.owner == owner and j.state not in _ENDED]
        return len(mine), sum(j.total for j in mine), sum(j.size for j in mine)

    def _check_caps(self, owner: str, rows: int, size: int) -> None:
        jobs, had_rows, had_size = self._usage(owner)
        self.caps.check(jobs + 1, had_rows + rows, had_size + size)

    def _admit(self, job: Job) -> Job:
        with self._admitting():
            try:
                self._check_caps(job.owner, job.total, job.size)
            except JobQuotaError:
                shutil.rmtree(self._dir(job.id), ignore_errors=True)
                raise
            self._save(job)
        log.info("job %s: %d rows from %s (%s) for %s", job.id, job.total, job.filename,
                 job.format, job.owner)  # fmt: skip
        self._take(job)
        return job

    def _admitting(self) -> contextlib.AbstractContextManager[object]:
        """Held while a new job's caps are checked and its metadata saved (one process:
        nothing to hold; the event loop runs one admission at a time)."""
        return contextlib.nullcontext()

    def _take(self, job: Job) -> None:
        """An admitted job: known to the store, and launched (it waits its turn)."""
        self._jobs[job.id] = job
        self._launch(job)

    def get(self, owner: str, job_id: str) -> Job:
        """The caller's job. :raises JobNotFoundError: no such job of this caller."""
        job = self._jobs.get(job_id) if _ID_RE.fullmatch(job_id) else None
        if job is None or job.owner != owner:
            raise JobNotFoundError(f"no job {job_id[:40]} (it may have expired)")
        return job

    def jobs_of(self, owner: str) -> list[Job]:
        """The caller's jobs, newest first."""
        mine = [j for j in self._jobs.values() if j.owner == owner]
        return sorted(mine, key=lambda j: j.created, reverse=True)

    async def cancel(self, owner: str, job_id: str) -> Job:
        """Stop a queued or running job; the rows done so far stay in its results."""
        job = self.get(owner, job_id)
        if job.state in _ENDED:
            return job
        job._cancel_requested = True
        task = job._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if job.state not in _ENDED:  # cancelled before its task ran
            await self._end(job, "cancelled")
        return job

    async def delete(self, owner: str, job_id: str) -> Job | None:
        """``DELETE``: a queued or running job is cancelled (and returned); an ended one is
        removed with its folder and results files (``None``)."""
        job = self.get(owner, job_id)
        if job.state not in _ENDED:
            return await self.cancel(owner, job_id)
        shutil.rmtree(self._dir(job.id), ignore_errors=True)
        self._jobs.pop(job.id, None)
        log.info("removed job %s at its owner's request", job.id)
        return None

    async def wait(self, owner: str, job_id: str) -> Job:
        """Wait until the job ended (done, cancelled or failed)."""
        job = self.get(owner, job_id)
        await job._ended.wait()
        return job

    def results(self, owner: str, job_id: str, fmt: InputFormat) -> Path:
        """The results file of an ended job, in input order.

        :raises JobStateError: the job has not ended yet.
        """
        job = self.get(owner, job_id)
        if job.state not in _ENDED:
            raise JobStateError(
                f"job {job_id} is {job.state} ({job.done:,}/{job.total:,} rows): results are "
                "ready when it is done (or cancel it to get the rows done so far)"
            )
        path = self._dir(job_id) / f"results.{fmt}"
        if not path.exists():
            self._render(job)
        audit_log.info("job results id=%s format=%s rows=%d caller=%s", job.id, fmt,
                       job.done, owner)  # fmt: skip
        return path

    # -- running ------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        job._task = asyncio.create_task(self._run(job), name=f"lookup job {job.id}")

    async def _end(self, job: Job, state: JobState, error: str | None = None) -> None:
        """Write the results files, then say the job ended. The files are written in a
        thread (100,000 rows take seconds: the service must go on answering); the job shows
        its new state once they are there. A stop meanwhile still records the state."""
        job.finished = self.clock()
        try:
            await _in_thread(self._render, job)
        finally:
            job.state, job.error = state, error
            self._save(job)
            job._ended.set()
            log.info("job %s %s: %d/%d rows%s", job.id, state, job.done, job.total,
                     f" ({error})" if error else "")  # fmt: skip

    async def _run(self, job: Job) -> None:
        try:
            async with self._turns.turn(job.owner):
                await self._run_rows(job)
        except asyncio.CancelledError:
            if job._cancel_requested:
                await self._end(job, "cancelled")
            raise  # a stopping service: the job stays "running" on disk and resumes
        except LookupFailure as exc:
            await self._end(job, "failed", str(exc))
        except OSError as exc:
            await self._end(job, "failed", f"job files: {exc.strerror or exc}")
        else:
            await self._end(job, "done")

    async def _run_rows(self, job: Job) -> None:
        folder = self._dir(job.id)
        path = folder / f"input.{job.format}"
        journal = await _open_journal(folder / _JOURNAL, path, self.settings, job.mode,
                                      self._left)  # fmt: skip
        with journal:

            def on_start(total: int, counts: dict[str, int]) -> None:
                job.counts = dict.fromkeys(STATUSES, 0) | counts
                job.done = sum(counts.values())
                job.state, job._run_started, job._run_first = "running", time.monotonic(), job.done
                if job.started is None:
                    job.started = self.clock()
                self._save(job)

            lookup = None
            one = self.path() if self.path is not None else None
            if one is not None:
                owner, run_one = job.owner, one

                async def lookup(row: BatchRow) -> RowResult:
                    return await run_one.row(row, caller=owner, surface="job", mode=job.mode)

            runner = CheckerRunner(self.checker, self.lookups_in_flight, caller=job.owner,
                                   db=self.db, lookup=lookup)  # fmt: skip
            await run_journaled(
                journal, lambda: read_rows(path, job.format), self._outputs(job),
                runner=runner, mode=job.mode, max_candidates=self.settings.max_candidates,
                redact=Redactor(self.settings.secret_values()), on_result=job.add,
                on_start=on_start, total=job.total,
            )  # fmt: skip

def _open_journal_now(jpath: Path, path: Path, settings: Settings, mode: Mode) -> Journal:
    os.close(open_private(jpath, os.O_WRONLY))  # 0600 before Journal opens it
    return Journal.open(jpath, journal_header(path, settings, mode))


async def _open_journal(jpath: Path, path: Path, settings: Settings, mode: Mode,
                        left: set[asyncio.Future[Any]] | None = None) -> Journal:  # fmt: skip
    """Open (and, resuming, read and check) a job's journal in a thread: 100,000 done rows
    take 1.6 s to verify, which would stall every request of the service. Cancelled
    meanwhile, the journal is closed (its lock released) when the thread is done."""
    return await _in_thread(
        _open_journal_now, jpath, path, settings, mode, abandoned=Journal.close, left=left
    )


async def _in_thread(
    fn: Callable[..., T], *args: Any, abandoned: Callable[[T], object] | None = None,
    left: set[asyncio.Future[Any]] | None = None,
) -> T:  # fmt: skip
    """``fn(*args)`` in a thread, so the event loop goes on answering. A thread cannot be
    stopped: cancelled meanwhile, the caller leaves at once, the thread runs to its end,
    and what it returns is handed to ``abandoned`` (to remove or close it). Such a thread
    waits in ``left`` until it ended, for a closing store to wait for it (else a journal
    opened after the loop stopped would stay open)."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if abandoned is not None:
            drop = abandoned

            def gone(done: asyncio.Future[T]) -> None:
                if not done.cancelled() and done.exception() is None:
                    drop(done.result())

            work.add_done_callback(gone)
        if left is not None:
            left.add(work)
            work.add_done_callback(left.discard)
        raise
