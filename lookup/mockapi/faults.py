"""The fault model of the bundled mock order API: its knobs, its state, its counters.

A private helper of :mod:`lookup.mockapi.server` (same layer, L5); split out so that neither module
grows past ~450 lines. :mod:`lookup.mockapi.server` documents the order in which faults apply and
re-exports :class:`MockConfig` and :class:`MockStats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_THROTTLE_BODY",
    "Counters",
    "Dropped",
    "Faults",
    "MockConfig",
    "MockStats",
    "Throttled",
    "json_response",
]

RateLimitStyle = Literal["429", "429-bare", "body"]

DEFAULT_THROTTLE_BODY: Final[Mapping[str, Any]] = {"code": 429, "message": "quota exceeded"}
"""The 200 body of ``rate_limit_style="body"`` unless ``throttle_body`` overrides it."""


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
    """Accepted requests per second (sliding window); above it answer as ``rate_limit_style``."""
    rate_limit_style: RateLimitStyle = "429"
    """How requests above ``rate_limit`` are answered: ``"429"`` (with Retry-After),
    ``"429-bare"`` (no Retry-After, like nginx ``limit_req``) or ``"body"`` (200 with a
    throttle body and no ``total``/``results``, like some open platforms)."""
    retry_after: float | None = Field(default=None, ge=0)
    """Retry-After to send on 429; default: whole seconds until the window frees, at least 1."""
    throttle_body: dict[str, Any] | None = None
    """The JSON object of ``rate_limit_style="body"``; default :data:`DEFAULT_THROTTLE_BODY`."""
    outage_after: int | None = Field(default=None, ge=0)
    """Order requests served as usual before an outage starts (``None``: no outage)."""
    outage_seconds: float = Field(default=10.0, gt=0)
    """How long the outage lasts, on the server's clock, from the outage's first request."""
    outage_status: int = Field(default=503, ge=400, le=599)
    """The status every order request gets during an outage."""
    outage_retry_after: float | None = Field(default=None, ge=0)
    """Retry-After sent with outage answers; ``None``: no header."""
    token: str | None = None
    """When set, require ``Authorization: Bearer <token>``: 401 without, 403 when wrong."""
    seed: int = 0

    @model_validator(mode="after")
    def _body_only_for_body_style(self) -> Self:
        if self.throttle_body is not None and self.rate_limit_style != "body":
            raise ValueError('throttle_body applies only with rate_limit_style="body"')
        return self


DEFAULT_CONFIG: Final = MockConfig()


class MockStats(BaseModel):
    """A snapshot of the server's counters (``GET /stats`` serves the same)."""

    model_config = ConfigDict(frozen=True)

    requests: int = 0
    """Requests to the mock's routes, ``/stats`` included."""
    orders_requests: int = 0
    """Every request that reached ``/orders`` or ``/orders/batch``: faulted, throttled, reset
    and hung ones included (the server-side count to compare with a client's checks sent)."""
    batch_requests: int = 0
    """Of ``orders_requests``, those to ``/orders/batch``."""
    phones_checked: int = 0
    """Phone numbers answered (one per single request, one per item of a batch)."""
    concurrent: int = 0
    """Order handlers running now (sleeping for latency or hung included)."""
    max_concurrent: int = 0
    connections: int = 0
    """Distinct client connections (peer address and port) that sent order requests: a
    client that reconnects after every early stop shows here, one with a healthy pool not."""
    statuses: dict[int, int] = Field(default_factory=dict)
    """Responses sent by the order routes, by HTTP status (e.g. ``{200: 40, 429: 10}``)."""
    throttled: int = 0
    """Answers that said "slow down": every 429 and every 200 throttle body."""
    resets: int = 0
    hangs: int = 0

    def status(self, code: int) -> int:
        """How many responses with this status the order routes sent."""
        return self.statuses.get(code, 0)


ARRIVALS_KEPT: Final = 200_000
"""Arrival times kept (the latest), so a long-running mock does not grow without bound."""


class Counters:
    """The live, mutable counters behind :class:`MockStats`."""

    __slots__ = (
        "_peers",
        "arrivals",
        "batch_requests",
        "concurrent",
        "hangs",
        "max_concurrent",
        "orders_requests",
        "phones_checked",
        "requests",
        "resets",
        "statuses",
        "throttled",
    )

    def __init__(self, concurrent: int = 0) -> None:
        self.requests = 0
        self.orders_requests = 0
        self.batch_requests = 0
        self.phones_checked = 0
        self.concurrent = concurrent
        self.max_concurrent = concurrent
        self._peers: set[object] = set()
        self.statuses: dict[int, int] = {}
        self.throttled = 0
        self.resets = 0
        self.hangs = 0
        self.arrivals: deque[float] = deque(maxlen=ARRIVALS_KEPT)
        """Server clock times at which the latest order requests arrived (not in the
        snapshot: tests read them through ``MockOrderServer.arrivals`` for rate windows)."""

    @property
    def connections(self) -> int:
        return len(self._peers)

    def connected(self, request: web.Request) -> None:
        """Count the connection ``request`` came on (once per peer address and port)."""
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer is not None:
            self._peers.add(tuple(peer) if isinstance(peer, list) else peer)

    def answered(self, status: int, *, throttle_body: bool = False) -> None:
        """Count a response the order routes send."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 429 or throttle_body:
            self.throttled += 1

    def snapshot(self) -> MockStats:
        return MockStats(
            requests=self.requests,
            orders_requests=self.orders_requests,
            batch_requests=self.batch_requests,
            phones_checked=self.phones_checked,
            concurrent=self.concurrent,
            max_concurrent=self.max_concurrent,
            connections=self.connections,
            statuses=dict(self.statuses),
            throttled=self.throttled,
            resets=self.resets,
            hangs=self.hangs,
        )


class Dropped(web.Response):
    """Returned after the connection was dropped on purpose; aiohttp's write fails quietly."""


class Throttled(web.Response):
    """A 200 answer whose body is a throttle signal (``rate_limit_style="body"``)."""


_encode: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_response(
    status: int,
    payload: object,
    headers: Mapping[str, str] | None = None,
    *,
    cls: type[web.Response] = web.Response,
) -> web.Response:
    return cls(
        status=status,
        body=_encode(payload).encode(),
        content_type="application/json",
        headers=headers,
    )


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _drop(request: web.Request) -> Dropped:
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # Linger 0: closing sends a RST, like a crashed server or middlebox.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return Dropped()


class Faults:
    """The fault state of one server: the config, its random draws, the rate window, outages.

    Assigning :attr:`config` re-seeds the draws and restarts the ``outage_after`` count (an
    outage from the old config ends); an outage from :meth:`start_outage` is kept.
    """

    def __init__(self, config: MockConfig, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._window: deque[float] = deque()
        self._manual_end: float | None = None
        self.config = config

    @property
    def config(self) -> MockConfig:
        return self._config

    @config.setter
    def config(self, value: MockConfig) -> None:
        self._config = value
        self._rng = random.Random(value.seed)
        self._served_before_outage = 0
        self._outage_end: float | None = None  # set by the outage's first request

    def start_outage(self, seconds: float) -> None:
        """Answer every order request as an outage from now for ``seconds`` (server clock)."""
        if not seconds > 0:
            raise ValueError("an outage lasts a positive number of seconds")
        self._manual_end = self._clock() + seconds

    def _in_outage(self, now: float) -> bool:
        if self._manual_end is not None:
            if now < self._manual_end:
                return True
            self._manual_end = None
        cfg = self._config
        if cfg.outage_after is None:
            return False
        if self._outage_end is None:
            if self._served_before_outage < cfg.outage_after:
                self._served_before_outage += 1
                return False
            self._outage_end = now + cfg.outage_seconds
        return now < self._outage_end

    def _check_rate(self, limit: float, now: float) -> float | None:
        """Record an accepted request, or return the seconds until the window frees."""
        window = 1.0 if limit >= 1 else 1.0 / limit
        capacity = max(1, int(limit * window + 1e-9))
        stamps = self._window
        edge = now - window
        while stamps and stamps[0] <= edge:
            stamps.popleft()
        if len(stamps) < capacity:
            stamps.append(now)
            return None
        return stamps[len(stamps) - capacity] + window - now

    def _throttle(self, wait: float) -> web.Response:
        cfg = self._config
        if cfg.rate_limit_style == "body":
            body = cfg.throttle_body if cfg.throttle_body is not None else DEFAULT_THROTTLE_BODY
            return json_response(200, body, cls=Throttled)
        if cfg.rate_limit_style == "429-bare":
            return json_response(429, {"error": "rate limited"})
        retry_after = (
            _fmt_seconds(cfg.retry_after)
            if cfg.retry_after is not None
            else str(max(1, math.ceil(wait)))
        )
        return json_response(429, {"error": "rate limited"}, {"Retry-After": retry_after})

    async def apply(
        self,
        request: web.Request,
        counters: Counters,
        notify: Callable[[], None],
        closing: asyncio.Event,
    ) -> web.Response | None:
        """Apply the knobs in the documented order; the response to send instead, or None."""
        cfg = self._config
        if cfg.token is not None:
            scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
            credentials = credentials.strip()
            if scheme.lower() != "bearer" or not credentials:
                return json_response(
                    401, {"error": "missing bearer token"}, {"WWW-Authenticate": "Bearer"}
                )
            if not hmac.compare_digest(credentials.encode(), cfg.token.encode()):
                return json_response(403, {"error": "invalid token"})
        now = self._clock()
        if self._in_outage(now):
            headers = (
                {"Retry-After": _fmt_seconds(cfg.outage_retry_after)}
                if cfg.outage_retry_after is not None
                else None
            )
            return json_response(cfg.outage_status, {"error": "injected outage"}, headers)
        if cfg.rate_limit is not None:
            wait = self._check_rate(cfg.rate_limit, now)
            if wait is not None:
                return self._throttle(wait)
        rng = self._rng
        if cfg.reset_rate and rng.random() < cfg.reset_rate:
            counters.resets += 1
            notify()
            return _drop(request)
        if cfg.hang_rate and rng.random() < cfg.hang_rate:
            counters.hangs += 1
            notify()
            await closing.wait()  # or cancelled when the client goes away
            return _drop(request)
        error = bool(cfg.error_rate) and rng.random() < cfg.error_rate
        if cfg.latency_ms or cfg.jitter_ms:
            delay = cfg.latency_ms
            if cfg.jitter_ms:
                delay += rng.uniform(-cfg.jitter_ms, cfg.jitter_ms)
            if delay > 0:
                await asyncio.sleep(delay / 1000)
        if error:
            return json_response(500, {"error": "injected server error"})
        return None
