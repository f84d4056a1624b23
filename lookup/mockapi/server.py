"""The bundled mock order API: an aiohttp server on loopback with synthetic orders and fault knobs.

Used by the demo, the integration tests and the benchmarks. Not a production server.

Routes:

* ``GET /orders?phone=NNNNNNNNNNN`` -> ``{"phone": "...", "total": n}`` (0 when unknown);
  a missing or malformed phone (not 11 ASCII digits) -> 400 ``{"error": ...}``.
* ``POST /orders/batch`` with ``{"phones": [...]}`` (at most 1000) -> ``{"results": {phone: n}}``.
* ``GET /stats`` -> :class:`MockStats` as JSON; never subject to faults or auth.

Faults (:class:`MockConfig`) apply to the two order routes, checked in this order:

1. auth: 401 without ``Authorization: Bearer <token>``, 403 with a wrong one;
2. outage: during an outage window every order request gets ``outage_status`` (503) with no
   ``Retry-After`` unless ``outage_retry_after`` is set. ``outage_after=N`` serves the first N
   order requests that get past auth as usual (other faults still apply to them); request N+1
   starts the outage, which lasts ``outage_seconds`` on the server's ``clock``; afterwards the
   server is healthy again (once per ``config`` assignment). :meth:`MockOrderServer.start_outage`
   starts one now, for tests;
3. rate limit: above ``rate_limit`` requests per second (sliding window of accepted requests),
   answer by ``rate_limit_style``: ``"429"`` with ``Retry-After``, ``"429-bare"`` without (like
   nginx ``limit_req``), or ``"body"``: 200 with ``{"code": 429, "message": "quota exceeded"}``
   (or ``throttle_body``, e.g. ``{"error_response": {"code": 7, "msg": "..."}}``) and no
   ``total``/``results``;
4. reset: the connection is dropped with a TCP RST;
5. hang: no answer until the client leaves or the server stops;
6. error: 500;
7. latency (± jitter), which delays the 500 and every normal answer, 400 included.

Auth, outage and throttle answers are not delayed and take no random draw; the draws of 4-7
come from ``random.Random(config.seed)``, re-created whenever ``config`` is assigned, so a
sequence of sequential requests sees the same faults for the same seed. The outage and the rate
window read the injectable ``clock`` (default :func:`time.monotonic`), so tests can move time.
``GET /stats`` counts every order request that reached the server (``orders_requests``: the
faulted, throttled, reset and hung ones too), the answers by status, ``throttled`` (every
429 and every throttle body) and ``connections`` (distinct client connections, by peer address
and port).

Orders live in an in-memory SQLite table ``orders(phone TEXT PRIMARY KEY, total INTEGER)``.
The access log is off: full phone numbers are never logged.

Standalone: ``python -m lookup.mockapi --port 8080 [--latency-ms 20 --rate-limit 100
--rate-limit-style 429-bare --outage-after 500 --outage-seconds 5 ...]`` prints exactly one
line, ``listening on http://127.0.0.1:PORT``, to stdout once ready; SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from aiohttp import web

from lookup.domain.net import is_loopback
from lookup.mockapi.faults import (
    DEFAULT_CONFIG,
    Counters,
    Dropped,
    Faults,
    MockConfig,
    MockStats,
    Throttled,
    json_response,
)
from lookup.mockapi.store import OrderStore, default_orders_file, is_phone

__all__ = [
    "DEFAULT_CONFIG",
    "MAX_BATCH",
    "MockConfig",
    "MockOrderServer",
    "MockStats",
    "default_orders_file",
]

MAX_BATCH: Final = 1000
_SHUTDOWN_GRACE: Final = 2.0  # seconds in-flight (non-hung) handlers get to finish on close


class MockOrderServer:
    """The mock order API on loopback. ``async with MockOrderServer(...) as server: ...``.

    ``orders`` and ``orders_file`` may both be given (the mapping wins on duplicates); with
    neither, the bundled demo orders are loaded when present. ``config`` may be reassigned at
    any time to switch faults on and off.
    """

    def __init__(
        self,
        orders: Mapping[str, int] | None = None,
        *,
        orders_file: str | Path | None = None,
        config: MockConfig = DEFAULT_CONFIG,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to bind {host!r}: the mock API is a test tool for loopback only "
                "(pass allow_remote=True to override)"
            )
        self._store = OrderStore(orders, orders_file=orders_file)
        self._host = host
        self._port = port
        self._faults = Faults(config, clock)
        self._clock = clock
        self._counters = Counters()
        self._watchers: list[tuple[Callable[[MockStats], bool], asyncio.Future[MockStats]]] = []
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._closing = asyncio.Event()
        self._url: str | None = None

    # -- configuration and introspection ------------------------------------------------

    @property
    def config(self) -> MockConfig:
        return self._faults.config

    @config.setter
    def config(self, value: MockConfig) -> None:
        self._faults.config = value

    def start_outage(self, seconds: float) -> None:
        """Answer every order request with ``config.outage_status`` for ``seconds`` from now.

        Measured with the server's ``clock``; the rest of the config is untouched and applies
        again once the outage is over.
        """
        self._faults.start_outage(seconds)

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the mock server is not running")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def orders_url(self) -> str:
        return f"{self.url}/orders?phone={{phone}}"

    @property
    def batch_url(self) -> str:
        return f"{self.url}/orders/batch"

    @property
    def stats(self) -> MockStats:
        return self._counters.snapshot()

    @property
    def arrivals(self) -> list[float]:
        """When each order request arrived (the server's clock), for rate windows."""
        return list(self._counters.arrivals)

    def reset_stats(self) -> None:
        """Zero every counter; ``concurrent`` stays live and ``max_concurrent`` restarts from it."""
        self._counters = Counters(self._counters.concurrent)
        self._notify()

    async def wait_for(self, predicate: Callable[[MockStats], bool]) -> MockStats:
        """Wait until the stats satisfy ``predicate`` (checked on every change); return them.

        For tests: ``await server.wait_for(lambda s: s.hangs >= 2)``. Bound it with
        ``asyncio.timeout``.
        """
        stats = self._counters.snapshot()
        if predicate(stats):
            return stats
        future: asyncio.Future[MockStats] = asyncio.get_running_loop().create_future()
        self._watchers.append((predicate, future))
        try:
            return await future
        finally:
            with contextlib.suppress(ValueError):
                self._watchers.remove((predicate, future))

    def _notify(self) -> None:
        if not self._watchers:
            return
        stats = self._counters.snapshot()
        for predicate, future in self._watchers:
            if future.done():
                continue
            try:
                if predicate(stats):
                    future.set_result(stats)
            except Exception as exc:  # noqa: BLE001 - handed to the waiter, not swallowed
                future.set_exception(exc)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        if self._runner is not None:
            raise RuntimeError("the mock server is already running")
        self._closing = asyncio.Event()
        self._store.open()
        app = web.Application()
        app.router.add_get("/orders", self._handle_orders)
        app.router.add_post("/orders/batch", self._handle_batch)
        app.router.add_get("/stats", self._handle_stats)
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,  # a client that goes away cancels its (hung) handler
            shutdown_timeout=_SHUTDOWN_GRACE,
        )
        sock: socket.socket | None = None
        try:
            await runner.setup()
            sock = await self._bind()
            await web.SockSite(runner, sock).start()
        except BaseException:
            await runner.cleanup()
            if sock is not None:
                sock.close()
            self._store.close()
            raise
        self._runner = runner
        self._sock = sock
        port = sock.getsockname()[1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._url = f"http://{host}:{port}"
        return self

    async def _bind(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        return socket.create_server(address[:2], family=family)

    async def close(self) -> None:
        """Stop: no new connections, hung handlers drop theirs, the rest get a short grace."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            # CPython 3.11's asyncio leaks a socket (ResourceWarning) when a connection is
            # accepted in the same loop turn as Server.close(). Stop accepting first and let
            # the accepts already scheduled attach; only then close the listening socket.
            loop = asyncio.get_running_loop()
            if self._sock is not None:
                with contextlib.suppress(NotImplementedError, ValueError, OSError):
                    loop.remove_reader(self._sock.fileno())
                for _ in range(3):
                    await asyncio.sleep(0)
            for site in list(runner.sites):
                await site.stop()
            self._closing.set()  # wakes hung handlers, which drop their connections
            await runner.cleanup()
        finally:
            self._url = None
            self._sock = None
            self._store.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- handlers --------------------------------------------------------------------------

    async def _guarded(
        self, request: web.Request, answer: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        c = self._counters
        c.requests += 1
        c.orders_requests += 1
        c.arrivals.append(self._clock())
        c.concurrent += 1
        c.max_concurrent = max(c.max_concurrent, c.concurrent)
        c.connected(request)
        self._notify()
        try:
            response = await self._faults.apply(request, c, self._notify, self._closing)
            if response is None:
                response = await answer(request)
            if not isinstance(response, Dropped):
                c.answered(response.status, throttle_body=isinstance(response, Throttled))
            return response
        except web.HTTPException as exc:  # e.g. 413 from aiohttp's body size limit
            c.answered(exc.status)
            raise
        finally:
            # reset_stats() may have swapped the counters meanwhile: decrement the live ones.
            self._counters.concurrent -= 1
            self._notify()

    async def _handle_orders(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._answer_one)

    async def _handle_batch(self, request: web.Request) -> web.StreamResponse:
        self._counters.batch_requests += 1
        return await self._guarded(request, self._answer_batch)

    async def _answer_one(self, request: web.Request) -> web.Response:
        phone = request.query.get("phone")
        if phone is None or not is_phone(phone):
            return json_response(400, {"error": "query parameter 'phone' must be 11 digits"})
        self._counters.phones_checked += 1
        # The hot path: phone is 11 ASCII digits, so formatting by hand is valid JSON.
        body = b'{"phone":"%s","total":%d}' % (phone.encode(), self._store.total(phone))
        return web.Response(body=body, content_type="application/json")

    async def _answer_batch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return json_response(400, {"error": 'body must be JSON: {"phones": [...]}'})
        phones = body.get("phones") if isinstance(body, dict) else None
        if not isinstance(phones, list):
            return json_response(400, {"error": 'body must be {"phones": [...]}'})
        if len(phones) > MAX_BATCH:
            return json_response(400, {"error": f"at most {MAX_BATCH} phones per batch"})
        if not all(is_phone(p) for p in phones):
            return json_response(400, {"error": "every phone must be an 11-digit string"})
        self._counters.phones_checked += len(phones)
        return json_response(200, {"results": self._store.totals(phones)})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        self._counters.requests += 1
        return json_response(200, self._counters.snapshot().model_dump(mode="json"))
