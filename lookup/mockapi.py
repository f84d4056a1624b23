"""The bundled mock order API: an aiohttp server on loopback with synthetic orders and fault knobs.

Used by the demo, the integration tests and the benchmarks. Not a production server.

Routes:

* ``GET /orders?phone=NNNNNNNNNNN`` -> ``{"phone": "...", "total": n}`` (0 when unknown);
  a missing or malformed phone (not 11 ASCII digits) -> 400 ``{"error": ...}``.
* ``POST /orders/batch`` with ``{"phones": [...]}`` (at most 1000) -> ``{"results": {phone: n}}``.
* ``GET /stats`` -> :class:`MockStats` as JSON; never subject to faults or auth.

Faults (:class:`MockConfig`) apply to the two order routes, checked in this order:
auth (401/403), rate limit (429 + ``Retry-After``), reset (connection dropped with a TCP RST),
hang (no answer until the client leaves or the server stops), error (500), then latency
(which delays the 500 and every normal answer, 400 included). The random draws come from
``random.Random(config.seed)``, re-created whenever ``config`` is assigned, so a sequence of
sequential requests sees the same faults for the same seed.

Orders live in an in-memory SQLite table ``orders(phone TEXT PRIMARY KEY, total INTEGER)``.
The access log is off: full phone numbers are never logged.

Standalone: ``python -m lookup.mockapi --port 8080 [--latency-ms 20 ...]`` prints exactly one
line, ``listening on http://127.0.0.1:PORT``, to stdout once ready; SIGINT/SIGTERM stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import hmac
import importlib.resources
import ipaddress
import json
import math
import random
import signal
import socket
import sqlite3
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_CONFIG",
    "MAX_BATCH",
    "MockConfig",
    "MockOrderServer",
    "MockStats",
    "default_orders_file",
    "main",
    "serve",
]

MAX_BATCH: Final = 1000
_SHUTDOWN_GRACE: Final = 2.0  # seconds in-flight (non-hung) handlers get to finish on close
_SELECT_ONE: Final = "SELECT total FROM orders WHERE phone = ?"
_SELECT_MANY: Final = (
    "SELECT o.phone, o.total FROM json_each(?) AS j JOIN orders AS o ON o.phone = j.value"
)
_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


class MockConfig(BaseModel):
    """Fault knobs of the mock server. Rates are probabilities in [0, 1] per order request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    latency_ms: float = Field(default=0, ge=0)
    jitter_ms: float = Field(default=0, ge=0)
    """Uniform jitter of ±jitter_ms around latency_ms (never below zero)."""
    error_rate: float = Field(default=0, ge=0, le=1)
    """Answer 500."""
    reset_rate: float = Field(default=0, ge=0, le=1)
    """Drop the connection without answering (TCP RST)."""
    hang_rate: float = Field(default=0, ge=0, le=1)
    """Never answer: wait until the client goes away or the server stops."""
    rate_limit: float | None = Field(default=None, gt=0)
    """Accepted requests per second (sliding window); above it answer 429 with Retry-After."""
    retry_after: float | None = Field(default=None, ge=0)
    """Retry-After to send; default: whole seconds until the window frees, at least 1."""
    token: str | None = None
    """When set, require ``Authorization: Bearer <token>``: 401 without, 403 when wrong."""
    seed: int = 0


DEFAULT_CONFIG: Final = MockConfig()


class MockStats(BaseModel):
    """A snapshot of the server's counters (``GET /stats`` serves the same)."""

    model_config = ConfigDict(frozen=True)

    requests: int = 0
    """Requests to the mock's routes, ``/stats`` included."""
    orders_requests: int = 0
    """Requests to ``/orders`` and ``/orders/batch`` (faulted ones included)."""
    batch_requests: int = 0
    """Of ``orders_requests``, those to ``/orders/batch``."""
    phones_checked: int = 0
    """Phone numbers answered (one per single request, one per item of a batch)."""
    concurrent: int = 0
    """Order handlers running now (sleeping for latency or hung included)."""
    max_concurrent: int = 0
    statuses: dict[int, int] = Field(default_factory=dict)
    """Responses sent by the order routes, by HTTP status (e.g. ``{200: 40, 429: 10}``)."""
    resets: int = 0
    hangs: int = 0

    def status(self, code: int) -> int:
        """How many responses with this status the order routes sent."""
        return self.statuses.get(code, 0)


class _Counters:
    __slots__ = (
        "batch_requests",
        "concurrent",
        "hangs",
        "max_concurrent",
        "orders_requests",
        "phones_checked",
        "requests",
        "resets",
        "statuses",
    )

    def __init__(self, concurrent: int = 0) -> None:
        self.requests = 0
        self.orders_requests = 0
        self.batch_requests = 0
        self.phones_checked = 0
        self.concurrent = concurrent
        self.max_concurrent = concurrent
        self.statuses: dict[int, int] = {}
        self.resets = 0
        self.hangs = 0

    def snapshot(self) -> MockStats:
        return MockStats(
            requests=self.requests,
            orders_requests=self.orders_requests,
            batch_requests=self.batch_requests,
            phones_checked=self.phones_checked,
            concurrent=self.concurrent,
            max_concurrent=self.max_concurrent,
            statuses=dict(self.statuses),
            resets=self.resets,
            hangs=self.hangs,
        )


class _Dropped(web.Response):
    """Returned after the connection was dropped on purpose; aiohttp's write fails quietly."""


def _is_phone(value: object) -> bool:
    return isinstance(value, str) and len(value) == 11 and value.isascii() and value.isdigit()


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_orders_file() -> Traversable | None:
    """The bundled ``data/demo_orders.csv``, from the source tree or the installed package."""
    path = Path(__file__).resolve().parent.parent / "data" / "demo_orders.csv"
    if path.is_file():
        return path
    try:
        resource = importlib.resources.files("lookup.data") / "demo_orders.csv"
        return resource if resource.is_file() else None
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        return None


def _read_orders_csv(stream: IO[str], name: str) -> list[tuple[str, int]]:
    reader = csv.DictReader(stream)
    fields = [f.strip() for f in reader.fieldnames or ()]
    if "phone" not in fields or "total" not in fields:
        raise ValueError(f"{name}: the header must have 'phone' and 'total' columns")
    reader.fieldnames = fields
    rows: list[tuple[str, int]] = []
    for row in reader:
        phone = (row.get("phone") or "").strip()
        raw_total = (row.get("total") or "").strip()
        if not phone and not raw_total:
            continue  # blank line
        if not _is_phone(phone):
            raise ValueError(f"{name}:{reader.line_num}: phone is not 11 digits")
        try:
            total = int(raw_total)
        except ValueError:
            raise ValueError(f"{name}:{reader.line_num}: total is not an integer") from None
        rows.append((phone, total))
    return rows


def _load_orders_file(source: str | Path | Traversable) -> list[tuple[str, int]]:
    # utf-8-sig: with or without a BOM.
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8-sig", newline="") as stream:
            return _read_orders_csv(stream, str(source))
    with source.open("r", encoding="utf-8-sig") as stream:
        return _read_orders_csv(stream, str(source))


def _mapping_rows(orders: Mapping[str, int]) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = []
    for phone, total in orders.items():
        if not _is_phone(phone):
            raise ValueError("orders: every key must be an 11-digit phone string")
        rows.append((phone, int(total)))
    return rows


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


_encode: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _json(status: int, payload: object, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=_encode(payload).encode(),
        content_type="application/json",
        headers=headers,
    )


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
    ) -> None:
        if not allow_remote and not _is_loopback(host):
            raise ValueError(
                f"refusing to bind {host!r}: the mock API is a test tool for loopback only "
                "(pass allow_remote=True to override)"
            )
        rows: list[tuple[str, int]] = []
        source: str | Path | Traversable | None = orders_file
        if orders is None and orders_file is None:
            source = default_orders_file()
        if source is not None:
            rows.extend(_load_orders_file(source))
        if orders is not None:
            rows.extend(_mapping_rows(orders))
        self._rows: list[tuple[str, int]] = rows
        self._host = host
        self._port = port
        self.config = config
        self._counters = _Counters()
        self._watchers: list[tuple[Callable[[MockStats], bool], asyncio.Future[MockStats]]] = []
        self._window: deque[float] = deque()
        self._db: sqlite3.Connection | None = None
        self._runner: web.AppRunner | None = None
        self._sock: socket.socket | None = None
        self._closing = asyncio.Event()
        self._url: str | None = None

    # -- configuration and introspection ------------------------------------------------

    @property
    def config(self) -> MockConfig:
        return self._config

    @config.setter
    def config(self, value: MockConfig) -> None:
        self._config = value
        self._rng = random.Random(value.seed)

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

    def reset_stats(self) -> None:
        """Zero every counter; ``concurrent`` stays live and ``max_concurrent`` restarts from it."""
        self._counters = _Counters(self._counters.concurrent)
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
        self._open_db()
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
            self._close_db()
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
            self._close_db()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open_db(self) -> None:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.execute("CREATE TABLE orders(phone TEXT PRIMARY KEY, total INTEGER)")
        if self._rows:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO orders(phone, total) VALUES (?, ?)", self._rows)
            db.execute("COMMIT")
        self._db = db

    def _close_db(self) -> None:
        if self._db is not None:
            # Keep the rows in the closed form so the server can be started again.
            self._rows = list(self._db.execute("SELECT phone, total FROM orders"))
            self._db.close()
            self._db = None

    def _total(self, phone: str) -> int:
        assert self._db is not None
        row = self._db.execute(_SELECT_ONE, (phone,)).fetchone()
        return int(row[0]) if row else 0

    def _totals(self, phones: list[str]) -> dict[str, int]:
        """One query for the whole batch (json_each: ~1 µs per phone instead of ~3)."""
        assert self._db is not None
        results = dict.fromkeys(phones, 0)
        if phones:
            as_json = '["' + '","'.join(phones) + '"]'  # validated digit strings
            results.update(self._db.execute(_SELECT_MANY, (as_json,)).fetchall())
        return results

    # -- faults ----------------------------------------------------------------------------

    def _check_rate(self, limit: float) -> float | None:
        """Record an accepted request, or return the seconds until the window frees."""
        window = 1.0 if limit >= 1 else 1.0 / limit
        capacity = max(1, int(limit * window + 1e-9))
        now = time.monotonic()
        stamps = self._window
        edge = now - window
        while stamps and stamps[0] <= edge:
            stamps.popleft()
        if len(stamps) < capacity:
            stamps.append(now)
            return None
        return stamps[len(stamps) - capacity] + window - now

    @staticmethod
    def _drop(request: web.Request) -> _Dropped:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    # Linger 0: closing sends a RST, like a crashed server or middlebox.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return _Dropped()

    async def _faults(self, request: web.Request) -> web.Response | None:
        """Apply the fault knobs; return the response to send instead, or None to answer."""
        cfg = self._config
        if cfg.token is not None:
            scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
            credentials = credentials.strip()
            if scheme.lower() != "bearer" or not credentials:
                return _json(401, {"error": "missing bearer token"}, {"WWW-Authenticate": "Bearer"})
            if not hmac.compare_digest(credentials.encode(), cfg.token.encode()):
                return _json(403, {"error": "invalid token"})
        if cfg.rate_limit is not None:
            wait = self._check_rate(cfg.rate_limit)
            if wait is not None:
                retry_after = (
                    _fmt_seconds(cfg.retry_after)
                    if cfg.retry_after is not None
                    else str(max(1, math.ceil(wait)))
                )
                return _json(429, {"error": "rate limited"}, {"Retry-After": retry_after})
        rng = self._rng
        if cfg.reset_rate and rng.random() < cfg.reset_rate:
            self._counters.resets += 1
            self._notify()
            return self._drop(request)
        if cfg.hang_rate and rng.random() < cfg.hang_rate:
            self._counters.hangs += 1
            self._notify()
            await self._closing.wait()  # or cancelled when the client goes away
            return self._drop(request)
        error = bool(cfg.error_rate) and rng.random() < cfg.error_rate
        if cfg.latency_ms or cfg.jitter_ms:
            delay = cfg.latency_ms
            if cfg.jitter_ms:
                delay += rng.uniform(-cfg.jitter_ms, cfg.jitter_ms)
            if delay > 0:
                await asyncio.sleep(delay / 1000)
        if error:
            return _json(500, {"error": "injected server error"})
        return None

    # -- handlers --------------------------------------------------------------------------

    async def _guarded(
        self, request: web.Request, answer: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        c = self._counters
        c.requests += 1
        c.orders_requests += 1
        c.concurrent += 1
        c.max_concurrent = max(c.max_concurrent, c.concurrent)
        self._notify()
        try:
            response = await self._faults(request)
            if response is None:
                response = await answer(request)
            if not isinstance(response, _Dropped):
                status = response.status
                c.statuses[status] = c.statuses.get(status, 0) + 1
            return response
        except web.HTTPException as exc:  # e.g. 413 from aiohttp's body size limit
            c.statuses[exc.status] = c.statuses.get(exc.status, 0) + 1
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
        if phone is None or not _is_phone(phone):
            return _json(400, {"error": "query parameter 'phone' must be 11 digits"})
        self._counters.phones_checked += 1
        # The hot path: phone is 11 ASCII digits, so formatting by hand is valid JSON.
        body = b'{"phone":"%s","total":%d}' % (phone.encode(), self._total(phone))
        return web.Response(body=body, content_type="application/json")

    async def _answer_batch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json(400, {"error": 'body must be JSON: {"phones": [...]}'})
        phones = body.get("phones") if isinstance(body, dict) else None
        if not isinstance(phones, list):
            return _json(400, {"error": 'body must be {"phones": [...]}'})
        if len(phones) > MAX_BATCH:
            return _json(400, {"error": f"at most {MAX_BATCH} phones per batch"})
        if not all(_is_phone(p) for p in phones):
            return _json(400, {"error": "every phone must be an 11-digit string"})
        self._counters.phones_checked += len(phones)
        return _json(200, {"results": self._totals(phones)})

    async def _handle_stats(self, request: web.Request) -> web.Response:
        self._counters.requests += 1
        return _json(200, self._counters.snapshot().model_dump(mode="json"))


# -- standalone ---------------------------------------------------------------------------


async def serve(
    orders_file: str | Path | None = None,
    *,
    config: MockConfig = DEFAULT_CONFIG,
    host: str = "127.0.0.1",
    port: int = 8080,
    ready: Callable[[str], None] | None = None,
    allow_remote: bool = False,
) -> None:
    """Run the mock server until cancelled; ``ready(url)`` is called once it listens."""
    server = MockOrderServer(
        orders_file=orders_file, config=config, host=host, port=port, allow_remote=allow_remote
    )
    async with server:
        if ready is not None:
            ready(server.url)
        await asyncio.get_running_loop().create_future()  # until cancelled


async def _serve_until_signal(
    orders_file: str | None, config: MockConfig, host: str, port: int
) -> None:
    def ready(url: str) -> None:
        print(f"listening on {url}", flush=True)  # noqa: T201
        print(  # noqa: T201
            f"try: lookup find '138****2046' --city 杭州 --api '{url}/orders?phone={{phone}}'"
            "  (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )

    task = asyncio.create_task(serve(orders_file, config=config, host=host, port=port, ready=ready))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main(argv: list[str] | None = None, *, prog: str = "python -m lookup.mockapi") -> None:
    """``python -m lookup.mockapi``: serve synthetic orders with fault knobs until stopped."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Mock order API on loopback (synthetic data)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--orders", metavar="FILE", help="CSV with header phone,total")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--jitter-ms", type=float, default=0)
    parser.add_argument("--error-rate", type=float, default=0)
    parser.add_argument("--reset-rate", type=float, default=0)
    parser.add_argument("--hang-rate", type=float, default=0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--retry-after", type=float, default=None, help="seconds to send on 429")
    parser.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = MockConfig(
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            error_rate=args.error_rate,
            reset_rate=args.reset_rate,
            hang_rate=args.hang_rate,
            rate_limit=args.rate_limit,
            retry_after=args.retry_after,
            token=args.token,
            seed=args.seed,
        )
        asyncio.run(_serve_until_signal(args.orders, config, args.host, args.port))
    except (ValueError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


if __name__ == "__main__":
    main()
