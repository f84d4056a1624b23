"""Calling lookups from threads: one background event loop, never a loop per call.

:class:`LookupClient` owns a loop thread, one order-API session and one checker;
any number of threads may call :meth:`LookupClient.find` at once, and their checks
share the client's limits, cache and breaker. :func:`find_sync` is the one-shot
form, running on a process-wide loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, Self, TypeVar

from lookup.domain.models import DEFAULT_LIMITS, Limits, LookupResult
from lookup.domain.segments import SegmentDB
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders.base import OrderApi

__all__ = ["LookupClient", "find_sync"]

T = TypeVar("T")
ApiSpec = OrderApi | Callable[[], OrderApi] | str


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("called from the client's own event loop: use `await lookup.find()`")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"lookup did not finish within {timeout} s") from None

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


def _unopened(api: object) -> bool:
    """An adapter that says it is not open yet (``is_open`` false, e.g. a new HttpOrderApi)."""
    return getattr(api, "is_open", True) is False


def _factory(api: ApiSpec, http_options: dict[str, Any]) -> Callable[[], OrderApi]:
    if isinstance(api, str):
        from lookup.orders.http import HttpOrderApi

        url = api
        return lambda: HttpOrderApi(url, **http_options)
    if callable(api) and not hasattr(api, "check"):
        return api
    instance: OrderApi = api  # type: ignore[assignment]
    return lambda: instance


class LookupClient:
    """A thread-safe lookup client for threaded code (thread pools, WSGI views).

    ``api`` is an order-API URL template (an :class:`~lookup.orders.HttpOrderApi` is made
    in the client's loop, with ``http_options``), a zero-argument factory returning an
    ``OrderApi``, or an ``OrderApi`` object that holds no loop-bound state.

    >>> with LookupClient("http://127.0.0.1:8080/orders?phone={phone}") as client:  # doctest: +SKIP
    ...     result = client.find("138****1234", city="杭州")
    """

    def __init__(
        self,
        api: ApiSpec,
        *,
        limits: Limits = DEFAULT_LIMITS,
        db: SegmentDB | None = None,
        http_options: dict[str, Any] | None = None,
    ) -> None:
        self._factory = _factory(api, dict(http_options or {}))
        self._owned = False
        self.limits = limits
        self._db = db
        self._lock = threading.Lock()
        self._thread: _LoopThread | None = None
        self._api: OrderApi | None = None
        self._checker: Checker | None = None
        self._closed = False

    def start(self) -> None:
        """Start the loop thread and open the API (done on first use otherwise)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this LookupClient is closed; make a new one")
            if self._thread is not None:
                return
            thread = _LoopThread("lookup-client")
            try:
                thread.run(self._open())
            except BaseException:
                thread.stop()
                raise
            self._thread = thread

    async def _open(self) -> None:
        api = self._factory()
        # The client opens what it is given (in its own loop) and closes it with itself,
        # unless it is open already (``is_open`` true): then its owner closes it.
        if getattr(api, "is_open", False) is not True:
            await api.__aenter__()
            self._owned = True
        self._api = api
        self._checker = Checker(api, self.limits)

    @property
    def checker(self) -> Checker:
        self.start()
        assert self._checker is not None
        return self._checker

    def find(self, mask: str, *, timeout: float | None = None, **kwargs: Any) -> LookupResult:
        """Like :func:`lookup.find`, from any thread; blocks until the result is in."""
        self.start()
        assert self._thread is not None and self._checker is not None
        kwargs.setdefault("db", self._db)
        return self._thread.run(find(mask, checker=self._checker, **kwargs), timeout)

    def close(self) -> None:
        """Close the API session and stop the loop thread. Idempotent."""
        with self._lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is None:
                return
            try:
                if self._api is not None and self._owned:
                    thread.run(self._api.aclose())
            finally:
                thread.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


_shared: _LoopThread | None = None
_shared_lock = threading.Lock()


def _shared_loop() -> _LoopThread:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = _LoopThread("lookup-sync")
        return _shared


def find_sync(
    mask: str,
    *,
    api: ApiSpec,
    timeout: float | None = None,
    http_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> LookupResult:
    """Run one lookup from synchronous code, on a process-wide background loop.

    ``api`` as for :class:`LookupClient`; a URL or factory is opened and closed for this
    call. For many calls, use a :class:`LookupClient` (one session for all).
    """
    factory = _factory(api, dict(http_options or {}))

    async def one() -> LookupResult:
        made = factory()
        if made is api and not _unopened(made):  # open already: the caller owns it
            return await find(mask, api=made, **kwargs)
        # A URL, a factory's product, or an adapter not open yet: open it for this call.
        async with made:
            return await find(mask, api=made, **kwargs)

    return _shared_loop().run(one(), timeout)
