"""Jobs under ``lookup serve --workers N``: one jobs folder, one worker running the jobs.

Every gunicorn worker has a :class:`SharedJobStore` over the same folder (the workers are
processes of one machine). Any worker accepts an upload: it checks the caller's caps and
saves the job's folder and ``meta.json`` (``queued``) under a lock file of the folder,
so two workers cannot both admit past a cap. Any worker answers ``GET`` from the
``meta.json`` files. Exactly one worker, the one holding ``ROOT/.runner.lock``
(``flock``), runs the jobs, exactly as a single process does: the same fair turns, the
same journaled run, the same sweep. It looks for new jobs every ``poll`` seconds, saves
the progress of running ones into their ``meta.json`` as often, and cancels a job when
another worker left a ``cancel`` file in its folder (a ``DELETE`` that reached it).

Why a file lock and not a Redis lock: the kernel drops a ``flock`` the moment its
process dies, however it dies, so there is no lease to renew, no expiry to tune and no
window with two runners after a stalled worker; the folder must be on one machine for
the workers to share it anyway (on NFS ``flock`` is not to be trusted: keep
``LOOKUP_SERVICE_JOBS_DIR`` local). A stopping runner cancels its jobs and waits for them
(their journals closed) before the lock goes; another worker takes it within ``poll``
seconds and resumes them from their journals, as a restarted single process does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any, Final

from lookup.service.jobfiles import _ENDED, _ID_RE, _META, Job, JobNotFoundError
from lookup.service.jobs import JobStore
from lookup.service.uploads import write_private

__all__ = ["DEFAULT_POLL", "SharedJobStore"]

log = logging.getLogger("lookup.jobs")

DEFAULT_POLL: Final = 0.25
"""Seconds between the runner's looks at the folder (new jobs, cancels, progress saved),
and between another worker's looks at a job it waits for."""
CANCEL_WAIT: Final = 10.0
"""Seconds a ``DELETE`` answered by another worker waits for the runner to stop the job."""
_RUNNER_LOCK: Final = ".runner.lock"
_ADMIT_LOCK: Final = ".admit.lock"
_CANCEL: Final = "cancel"


class SharedJobStore(JobStore):
    """A :class:`JobStore` over a folder shared by the workers of one machine (see the module)."""

    def __init__(self, *args: Any, poll: float = DEFAULT_POLL, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poll = poll
        self.leading = False
        self._lock_fd: int | None = None
        self._watch: asyncio.Task[None] | None = None
        self._saved: dict[str, int] = {}
        self._cancels: set[asyncio.Task[Any]] = set()
        self._resigned = False

    # -- who runs the jobs ------------------------------------------------------------

    async def start(self) -> None:
        self._make_root()
        self._watch = asyncio.create_task(self._watch_forever(), name="lookup jobs runner")

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for task in list(self._cancels):
            task.cancel()
        await super().close()  # the jobs stop (resumable) before the lock goes
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            self.leading = False

    def resign(self) -> None:
        """This worker is stopping: it no longer takes the runner's lock when it comes free
        (else it would resume the jobs only to stop them again); holding it, it keeps it
        until :meth:`close`."""
        self._resigned = True

    def _try_lead(self) -> bool:
        fd = os.open(self.root / _RUNNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    async def _watch_forever(self) -> None:
        while True:
            if not self.leading and not self._resigned and self._try_lead():
                self.leading = True
                log.info("this worker (pid %d) runs the jobs of %s", os.getpid(), self.root)
                await super().start()  # load, resume the unfinished, sweep
            if self.leading:
                self._look()
            await asyncio.sleep(self.poll)

    def _look(self) -> None:
        """The runner's round: jobs other workers admitted, cancels they asked for,
        progress saved for them to show, folders they removed."""
        for meta in self.root.glob(f"*/{_META}"):
            if meta.parent.name not in self._jobs:
                self._load(meta)
                job = self._jobs.get(meta.parent.name)
                if job is not None and job.state not in _ENDED:
                    self._launch(job)
        for job in list(self._jobs.values()):
            folder = self._dir(job.id)
            if not folder.exists():
                self._jobs.pop(job.id, None)  # removed by its owner through another worker
                continue
            if job.state in _ENDED:
                continue
            if (folder / _CANCEL).exists() and not job._cancel_requested:
                task = asyncio.create_task(JobStore.cancel(self, job.owner, job.id))
                self._cancels.add(task)
                task.add_done_callback(self._cancels.discard)
            elif job.state == "running" and self._saved.get(job.id) != job.done:
                self._save(job)

    def _launch(self, job: Job) -> None:
        if (self._dir(job.id) / _CANCEL).exists():  # cancelled before it ever ran here
            job._cancel_requested = True
            job._task = asyncio.create_task(self._end(job, "cancelled"))
            return
        super()._launch(job)

    def _save(self, job: Job) -> None:
        shown = job.progress()
        data = job.meta() | {"done": job.done, "counts": job.counts,
                             "rows_per_second": shown["rows_per_second"], "eta_s": shown["eta_s"]}  # fmt: skip
        write_private(self._dir(job.id) / _META, json.dumps(data, ensure_ascii=False).encode())
        self._saved[job.id] = job.done

    # -- admission under the folder's lock ---------------------------------------------

    @contextlib.contextmanager
    def _admitting(self) -> Iterator[object]:
        fd = os.open(self.root / _ADMIT_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held for one scan of the metadata and one write
            yield fd
        finally:
            os.close(fd)

    def _take(self, job: Job) -> None:
        if self.leading:
            super()._take(job)
        # else: the runner finds it on its next round

    def _usage(self, owner: str) -> tuple[int, int, int]:
        mine = [j for j in self._all() if j.owner == owner and j.state not in _ENDED]
        return len(mine), sum(j.total for j in mine), sum(j.size for j in mine)

    # -- what every worker answers -----------------------------------------------------

    def _read(self, job_id: str) -> Job | None:
        """A job as its ``meta.json`` says (the runner's own copy when this is the runner)."""
        if self.leading and job_id in self._jobs:
            if (self._dir(job_id) / _META).exists():
                return self._jobs[job_id]
            self._jobs.pop(job_id, None)  # removed through another worker a moment ago
            return None
        try:
            data = json.loads((self._dir(job_id) / _META).read_text("utf-8"))
            job = Job.from_meta(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        job.done = int(data.get("done", 0))
        job.counts = {**job.counts, **data.get("counts", {})}
        job._live = (data.get("rows_per_second"), data.get("eta_s"))
        return job

    def _all(self) -> list[Job]:
        jobs = []
        for meta in self.root.glob(f"*/{_META}"):
            if _ID_RE.fullmatch(meta.parent.name) and (job := self._read(meta.parent.name)):
                jobs.append(job)
        return jobs

    def get(self, owner: str, job_id: str) -> Job:
        job = self._read(job_id) if _ID_RE.fullmatch(job_id) else None
        if job is None or job.owner != owner:
            raise JobNotFoundError(f"no job {job_id[:40]} (it may have expired)")
        return job

    def jobs_of(self, owner: str) -> list[Job]:
        mine = [j for j in self._all() if j.owner == owner]
        return sorted(mine, key=lambda j: j.created, reverse=True)

    async def cancel(self, owner: str, job_id: str) -> Job:
        """Cancel here when this worker runs the job; else leave a ``cancel`` file for
        the runner and wait (at most :data:`CANCEL_WAIT` s) until it says the job ended."""
        if self.leading and job_id in self._jobs:
            return await super().cancel(owner, job_id)
        job = self.get(owner, job_id)
        if job.state in _ENDED:
            return job
        write_private(self._dir(job_id) / _CANCEL, b"")
        return await self._ended(owner, job_id, CANCEL_WAIT)

    async def wait(self, owner: str, job_id: str) -> Job:
        if self.leading and job_id in self._jobs:
            return await super().wait(owner, job_id)
        return await self._ended(owner, job_id, None)

    async def _ended(self, owner: str, job_id: str, limit: float | None) -> Job:
        until = None if limit is None else time.monotonic() + limit
        while True:
            job = self.get(owner, job_id)
            if job.state in _ENDED or (until is not None and time.monotonic() >= until):
                return job
            await asyncio.sleep(self.poll)

