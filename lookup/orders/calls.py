"""Calls into a plug-in: bounded in time, and whatever they raise is a failed check.

A sync plug-in call runs on a daemon thread of :class:`DaemonThreads`: when it blocks
(``time.sleep(3600)``, a socket without a timeout), the caller stops waiting at the
per-check timeout and counts the check failed; the thread is abandoned, and it never holds
up the process's exit (``asyncio.to_thread``'s pool is joined at exit: one stuck call
would hang ``lookup find`` for good). Its answer, if it ever comes, is dropped.

An async plug-in call is awaited under ``asyncio.timeout``: an endless ``await`` is
cancelled at the timeout.

Either way the exceptions are turned into the ``OrderApiError`` tree by
:func:`~lookup.orders.base.check_failure`; only the caller's own cancellation passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from lookup.domain.errors import TransientApiError
from lookup.orders.base import check_failure, is_own_cancellation

__all__ = ["DEFAULT_CALL_TIMEOUT", "DaemonThreads", "bounded", "bounded_sync", "threads"]

T = TypeVar("T")

DEFAULT_CALL_TIMEOUT: Final = 20.0
"""Seconds a plug-in's ``check`` (or ``check_many``) may take, like the HTTP total timeout."""

_Outcome = tuple[bool, Any]  # (returned normally, value or exception)


class _Job:
    __slots__ = ("abandoned", "args", "context", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[_Outcome],
    ) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future
        self.context = contextvars.copy_context()
        self.abandoned = False


def _deliver(future: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


class DaemonThreads:
    """A pool of daemon threads for blocking calls that may never return.

    Up to ``max_threads`` threads; a call waits for a free one beyond that. A thread
    whose call never returns is lost to the pool (the caller has long given up), so a
    plug-in that always blocks ends with every call failing at its timeout, never with a
    process that cannot exit. Exceptions, ``SystemExit`` and ``KeyboardInterrupt``
    included, come back as values: nothing a plug-in raises reaches the event loop.
    """

    def __init__(self, max_threads: int = 64, *, name: str = "lookup-plugin") -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._max = max_threads
        self._name = name
        self._threads = 0
        self._free = 0  # idle threads minus queued jobs no thread has taken yet

    @property
    def threads(self) -> int:
        """Threads started so far (busy, idle or stuck)."""
        return self._threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> tuple[_Job, asyncio.Future[_Outcome]]:
        """Run ``fn(*args)`` on a thread; the future gets ``(True, value)`` or
        ``(False, exception)``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Outcome] = loop.create_future()
        job = _Job(fn, args, loop, future)
        with self._lock:
            if self._free <= 0 and self._threads < self._max:
                self._threads += 1
                self._free += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
            self._free -= 1
        self._jobs.put(job)
        return job, future

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if not job.abandoned:
                outcome: _Outcome
                try:
                    outcome = (True, job.context.run(job.fn, *job.args))
                except BaseException as exc:  # noqa: BLE001 - delivered as a value, never raised here
                    outcome = (False, exc)
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    job.loop.call_soon_threadsafe(_deliver, job.future, outcome)
            del job
            with self._lock:
                self._free += 1


threads: Final = DaemonThreads()
"""The process's pool for sync plug-in calls."""


def _timed_out(source: str, what: str, timeout: float, abandoned: bool) -> TransientApiError:
    left = "; its thread was abandoned" if abandoned else "; it was cancelled"
    return TransientApiError(
        f"{source}: {what} gave no answer within {timeout:g} s (the per-check timeout){left}",
        kind="timeout",
    )


async def bounded_sync(
    fn: Callable[..., T], *args: Any, seconds: float, source: str, what: str = "check"
) -> T:
    """``fn(*args)`` on a daemon thread, waited for at most ``seconds``.

    :raises TransientApiError: the call raised anything (``SystemExit`` included) or timed
        out; the ``OrderApiError`` tree passes as raised.
    """
    job, future = threads.submit(fn, *args)
    try:
        async with asyncio.timeout(seconds):
            ok, value = await future
    except TimeoutError:
        job.abandoned = True
        raise _timed_out(source, what, seconds, abandoned=True) from None
    except BaseException:
        job.abandoned = True  # our own cancellation: drop the answer when it comes
        raise
    if not ok:
        raise check_failure(value, source) from value
    result: T = value
    return result


async def bounded(
    call: Callable[[], Awaitable[T]], *, seconds: float, source: str, what: str = "check"
) -> T:
    """Await ``call()`` for at most ``seconds``; whatever it raises, but the
    caller's own cancellation, is a failed check (see :func:`check_failure`)."""
    try:
        async with asyncio.timeout(seconds) as scope:
            return await call()
    except BaseException as exc:
        if is_own_cancellation(exc):
            raise
        if isinstance(exc, TimeoutError) and scope.expired():
            raise _timed_out(source, what, seconds, abandoned=False) from None
        raise check_failure(exc, source) from exc
