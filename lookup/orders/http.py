"""The HTTP order-API adapter (aiohttp). The only module of ``lookup.orders`` that imports aiohttp.

::

    api = HttpOrderApi(
        "https://orders.example/v1/orders?phone={phone}",
        headers={"Authorization": "Bearer ..."},
        hit_field="data.total",
    )
    async with api:
        outcome = await api.check("13812341234")
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, Self
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from lookup.domain.errors import (
    ConfigError,
    FatalApiError,
    ThrottledApiError,
    TransientApiError,
    TransientKind,
)
from lookup.domain.models import CheckOutcome
from lookup.domain.privacy import redact_url as _redact_url
from lookup.domain.privacy import url_secrets as _url_secrets
from lookup.orders import jsonfast
from lookup.orders.base import BaseOrderApi, mask_phone
from lookup.orders.throttle import parse_throttle_rules

__all__ = [
    "DEFAULT_TIMEOUTS",
    "HttpOrderApi",
    "Timeouts",
    "parse_retry_after",
    "parse_throttle_rules",
]

_PHONE: Final = "{phone}"
_METHODS: Final = frozenset({"GET", "POST"})
_MISSING: Final = object()
_BATCH_SHAPE: Final = "a JSON object {'results': {phone: total_or_bool}}: check batch_url"


class Timeouts(BaseModel):
    """Time limits of one request, in seconds.

    ``connect``: establishing a new connection; ``read``: the gap between two
    chunks of a batch answer (a single check's answer is one small chunk: ``total``
    bounds it); ``total``: the whole exchange once a pooled connection slot is free
    (waiting for a slot is not counted: that is not the API's fault).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect: float = Field(5.0, gt=0)
    read: float = Field(10.0, gt=0)
    total: float = Field(20.0, gt=0)


DEFAULT_TIMEOUTS: Final = Timeouts()


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date.

    A date in the past gives ``0.0``; an unparsable value gives ``None``.

    >>> parse_retry_after("1.5")
    1.5
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _same(value: Any, wanted: str) -> bool:
    if isinstance(value, bool):
        return str(value).lower() == wanted.lower()
    if isinstance(value, int | float | str):
        return str(value) == wanted
    return False


def _shown(value: Any) -> str:
    """What an unexpected answer was: the number itself (masked, in case), else its type."""
    if type(value) in (int, float):
        return mask_phone(repr(value))
    return type(value).__name__


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url.replace(_PHONE, "0"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{what} must be an absolute http:// or https:// URL, got {_redact_url(url)!r}"
        )


class HttpOrderApi(BaseOrderApi):
    """An order API reached over HTTP(S), one ``aiohttp.ClientSession`` per ``async with``.

    Args:
        url: for ``GET``, a template with ``{phone}`` (``https://h/orders?phone={phone}``);
            for ``POST``, the target (the body is ``{"phone": phone}``; a ``{phone}``
            in it is filled too).
        method: ``"GET"`` or ``"POST"``.
        headers: sent with every request (tokens go here); never shown in
            messages or ``repr``.
        hit_field: dotted path to the answer in the JSON body: a number > 0 means
            orders (``order_count``), a boolean is ``has_orders`` itself.
        batch_url: a ``POST`` endpoint taking ``{"phones": [...]}`` and answering
            ``{"results": {phone: number_or_bool}}``; enables :meth:`check_many`.
        timeouts: connect / read / total, see :class:`Timeouts`.
        max_connections: connection pool size (also the cap of requests in flight).
        throttled_when: throttle signals in a 200 body, as ``PATH=VALUE`` (a dotted path
            and the value that means "quota exceeded", e.g. ``"code=429"`` or
            ``"error_response.code=7"``); a matching answer is handled like a 429
            without ``Retry-After``.

    Errors: 429, 503 with ``Retry-After`` and a throttle signal raise
    ``ThrottledApiError``; other 5xx, timeouts and connection errors raise
    ``TransientApiError`` (``kind`` says which); other 4xx, a non-JSON body or a
    missing field raise ``FatalApiError``. A bad configuration raises ``ConfigError``.

    Every request is one the checker counted and paced: aiohttp's silent resend of an
    idempotent request on a pooled connection that died is turned off, so such a failure
    reaches the checker as a transient ``reset`` and is retried (or not) under its limits.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        hit_field: str = "total",
        batch_url: str | None = None,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_connections: int = 100,
        throttled_when: Sequence[str] = (),
    ) -> None:
        method = method.upper()
        if method not in _METHODS:
            raise ConfigError(f"method must be GET or POST, got {method!r}")
        if method == "GET" and _PHONE not in url:
            raise ConfigError(
                f"a GET url must contain {_PHONE} where the number goes, e.g. "
                f"'https://api.example/orders?phone={_PHONE}'; got {_redact_url(url)!r}"
            )
        _check_url(url, "url")
        if batch_url is not None:
            _check_url(batch_url, "batch_url")
        path = tuple(hit_field.split("."))
        if not all(path):
            raise ConfigError(
                f"hit_field must be a dotted path such as 'total' or 'data.total', "
                f"got {hit_field!r}"
            )
        if max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, got {max_connections}")

        self._url = url
        self._templated = _PHONE in url
        self._method = method
        self._post = method == "POST"
        self._headers = dict(headers or {})
        self._hit_field = hit_field
        self._path = path
        self._batch_url = batch_url
        self._timeouts = timeouts
        self._total = timeouts.total
        self._max_connections = max_connections
        self._shown = _redact_url(url)
        self._shape = f"a JSON object with field {hit_field!r}: check the URL and hit_field"
        self._batch_shown = _redact_url(batch_url) if batch_url is not None else ""
        self._secrets = sorted(
            {v for v in self._headers.values() if v}
            | set(_url_secrets(url))
            | set(_url_secrets(batch_url or "")),
            key=len,
            reverse=True,
        )
        # aiohttp's ``connect`` and ``total`` include the wait for a free pooled
        # connection, so a busy pool would look like a slow API. The request starts only
        # once a slot of ``self._slots`` (sized like the pool) is ours, so the connector
        # never queues and aiohttp's own ``total`` bounds the request alone: one timer
        # handle inside aiohttp, no ``asyncio.timeout`` (and its Timeout object, reschedule
        # and uncancel bookkeeping) around every request. ``ceil_threshold`` is infinite:
        # aiohttp would otherwise round a deadline over 5 s up to the next whole second,
        # and no request may outlive ``total``. Connecting is bounded by sock_connect.
        # ``read`` (aiohttp's sock_read) is set for batch answers only:
        # aiohttp re-arms that timer on every chunk it receives, so a single check
        # carried three timer handles, ~35k of the ~80k instructions the engine adds to
        # a bare aiohttp loop per check (scripts/bench_engine.py, no-read-timer). A
        # single answer is one small chunk, and ``total`` bounds it.
        # Built once: no per-request timeout objects.
        self._client_timeout = aiohttp.ClientTimeout(
            total=timeouts.total, connect=None, sock_connect=timeouts.connect,
            ceil_threshold=math.inf,
        )  # fmt: skip
        self._batch_timeout = aiohttp.ClientTimeout(
            total=timeouts.total, connect=None, sock_connect=timeouts.connect,
            sock_read=timeouts.read, ceil_threshold=math.inf,
        )  # fmt: skip
        self._throttle_rules = parse_throttle_rules(throttled_when)
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"HttpOrderApi(url={self._shown!r}, method={self._method!r})"

    @property
    def is_open(self) -> bool:
        """Whether the session is open (``async with`` entered and not yet closed)."""
        return self._session is not None

    @property
    def batch_supported(self) -> bool:
        """Whether :meth:`check_many` can be used (a ``batch_url`` was given)."""
        return self._batch_url is not None

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._closed:
            raise RuntimeError(
                "this HttpOrderApi is closed and cannot be reopened; create a new one "
                "(use `async with HttpOrderApi(...) as api:`)"
            )
        if self._session is not None:
            raise RuntimeError("this HttpOrderApi is already open; enter `async with` once")
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=self._max_connections
        )
        session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=self._client_timeout
        )
        # aiohttp resends an idempotent request once, silently, when a pooled connection
        # turns out dead: a request the checker never counted, paced or budgeted (the
        # server saw 50 requests for 25 counted). There is no public switch; this is the
        # attribute ClientSession reads (tests/test_integration.py pins the server count).
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        self._session = session
        self._slots = asyncio.Semaphore(self._max_connections)
        return self

    async def aclose(self) -> None:
        """Close the session and its connections. Idempotent; the object cannot be reopened."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _not_open(self) -> RuntimeError:
        state = "closed" if self._closed else "not open"
        return RuntimeError(
            f"this HttpOrderApi is {state}: use `async with HttpOrderApi(...) as api:` "
            "and call check() inside the block"
        )

    # -- checks ----------------------------------------------------------------

    async def check(self, phone: str) -> CheckOutcome:
        """Ask the API whether ``phone`` has orders."""
        session = self._session
        if session is None:
            raise self._not_open()
        url = self._url.replace(_PHONE, phone) if self._templated else self._url
        payload = {"phone": phone} if self._post else None
        data = await self._exchange(
            session, self._method, url, payload, self._shown, phone, self._shape,
            self._client_timeout,
        )  # fmt: skip
        if self._throttle_rules:
            self._raise_if_throttled(data, self._shown, phone)
        value: Any = data
        for key in self._path:
            value = value.get(key, _MISSING) if type(value) is dict else _MISSING
            if value is _MISSING:
                raise self._missing_field(self._shown, phone)
        return self._outcome(phone, value, self._shown)

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        """Check many numbers in one ``POST`` to ``batch_url``.

        Sends ``{"phones": [...]}`` and expects ``{"results": {phone: number_or_bool}}``
        with every number present; numbers are interpreted like ``hit_field`` values.
        """
        if self._batch_url is None:
            raise ConfigError(
                "check_many needs a batch endpoint: pass batch_url= to HttpOrderApi "
                "(a POST URL taking {'phones': [...]}), or call check() per number"
            )
        session = self._session
        if session is None:
            raise self._not_open()
        wanted = list(dict.fromkeys(phones))
        if not wanted:
            return {}
        shown = self._batch_shown
        data = await self._exchange(
            session,
            "POST",
            self._batch_url,
            {"phones": wanted},
            shown,
            f"a batch of {len(wanted)} numbers",
            _BATCH_SHAPE,
            self._batch_timeout,
        )
        if self._throttle_rules:
            self._raise_if_throttled(data, shown, f"a batch of {len(wanted)} numbers")
        results = data.get("results") if type(data) is dict else None
        if type(results) is not dict:
            raise FatalApiError(
                f"the answer of POST {shown} has no object 'results'; expected {_BATCH_SHAPE}"
            )
        missing = [p for p in wanted if p not in results]
        if missing:
            raise FatalApiError(
                f"the answer of POST {shown} lacks {len(missing)} of {len(wanted)} numbers "
                f"(first: {mask_phone(missing[0])}); expected one entry per number sent"
            )
        outcome = self._outcome
        return {p: outcome(p, results[p], shown, batch=True) for p in wanted}

    # -- internals -------------------------------------------------------------

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        payload: Any,
        shown: str,
        subject: str,
        expected: str,
        client_timeout: aiohttp.ClientTimeout,
    ) -> Any:
        """One request; the decoded JSON body of a 2xx answer, or an ``OrderApiError``.

        ``subject`` (the number, or a description of a batch) is masked in messages;
        ``expected`` describes the body wanted, for the message when it is not JSON.
        """
        slots = self._slots
        assert slots is not None
        try:
            async with (
                slots,
                session.request(method, url, json=payload, timeout=client_timeout) as resp,
            ):
                # Read error bodies too, so the connection goes back to the pool.
                raw = await resp.read()
                status = resp.status
                if not 200 <= status < 300:
                    raise self._status_error(
                        status, resp.headers.get("Retry-After"), method, shown, subject
                    )
        except TimeoutError as exc:
            kind: TransientKind = "timeout"
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                what = f"connecting took over {self._timeouts.connect}s"
            elif isinstance(exc, aiohttp.SocketTimeoutError):
                what = f"no data for {self._timeouts.read}s"
            else:
                what = f"no answer within {self._total}s"
            raise TransientApiError(
                f"{method} {shown} timed out for {mask_phone(subject)}: {what}", kind=kind
            ) from exc
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            kind = "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "reset"
            raise TransientApiError(
                f"{method} {shown} failed for {mask_phone(subject)}: connection error "
                f"{type(exc).__name__}: {self._scrub(str(exc))}",
                kind=kind,
            ) from exc
        except aiohttp.ClientError as exc:
            raise FatalApiError(
                f"{method} {shown} failed for {mask_phone(subject)}: "
                f"{type(exc).__name__}: {self._scrub(str(exc))}"
            ) from exc
        try:
            return jsonfast.loads(raw)
        except ValueError as exc:
            raise FatalApiError(
                f"{method} {shown} answered {status} with a body that is not JSON "
                f"({len(raw)} bytes) for {mask_phone(subject)}; expected "
                f"{expected}"
            ) from exc

    def _status_error(
        self, status: int, retry_after: str | None, method: str, shown: str, subject: str
    ) -> TransientApiError | FatalApiError:
        where = f"{method} {shown} answered {status} for {mask_phone(subject)}"
        if status == 429 or 500 <= status < 600:
            seconds = parse_retry_after(retry_after)
            hint = f"; retry after {seconds:g}s" if seconds is not None else ""
            if status == 429 or (status == 503 and seconds is not None):
                return ThrottledApiError(
                    f"{where}: throttled{hint}", status=status, retry_after=seconds
                )
            return TransientApiError(
                f"{where}: server error{hint}", status=status, retry_after=seconds
            )
        if status in (401, 403):
            hint = "not authorised: check the token (LOOKUP_API_TOKEN) or headers (--header)"
        elif status == 404:
            hint = "not found: check the URL template and the method"
        elif status == 400:
            hint = "bad request: check the method and how the number is sent (URL or JSON body)"
        elif 400 <= status < 500:
            hint = "the request was refused: check the API configuration"
        else:
            hint = "unexpected status: expected 2xx with a JSON body"
        return FatalApiError(f"{where}: {hint}", status=status)

    def _raise_if_throttled(self, data: Any, shown: str, subject: str) -> None:
        for path, wanted in self._throttle_rules:
            value: Any = data
            for key in path:
                value = value.get(key, _MISSING) if type(value) is dict else _MISSING
                if value is _MISSING:
                    break
            if value is not _MISSING and _same(value, wanted):
                raise ThrottledApiError(
                    f"{self._method} {shown} answered 200 for {mask_phone(subject)} with a "
                    f"throttle signal ({'.'.join(path)}={wanted})",
                    status=200,
                )

    def _missing_field(self, shown: str, phone: str) -> FatalApiError:
        return FatalApiError(
            f"the answer of {self._method} {shown} for {mask_phone(phone)} has no field "
            f"{self._hit_field!r}: check hit_field (a dotted path such as 'data.total')"
        )

    def _outcome(self, phone: str, value: Any, shown: str, *, batch: bool = False) -> CheckOutcome:
        kind = type(value)
        if kind is bool:
            return CheckOutcome(phone=phone, has_orders=value)
        if (kind is int or (kind is float and math.isfinite(value) and value.is_integer())) and (
            value >= 0
        ):  # 2.0 is a count; 0.5 is not (it would be "has orders" with a count of 0)
            return CheckOutcome(phone=phone, has_orders=value > 0, order_count=int(value))
        # The field's name is spelled out only here: masking it per number costs µs per check.
        field = f"results.{mask_phone(phone)}" if batch else self._hit_field
        raise FatalApiError(
            f"unexpected answer: field {field!r} in the answer of {shown} for "
            f"{mask_phone(phone)} is {_shown(value)}; expected a whole number >= 0 (order count) "
            "or a boolean (has orders)"
        )

    def _scrub(self, text: str) -> str:
        """``text`` with numbers masked and configured credentials removed."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return mask_phone(text)
