"""The HTTP order-API adapter (aiohttp): the session, its slots and the request loop. What an
exchange means is :mod:`lookup.orders.httprules`; reading a body, :mod:`lookup.orders.httpbody`.

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
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Self

import aiohttp
from yarl import URL

from lookup.domain.errors import ConfigError, FatalApiError
from lookup.domain.jsonfast import dumps
from lookup.domain.models import CheckOutcome
from lookup.domain.privacy import redact_url as _redact_url
from lookup.domain.privacy import url_secrets as _url_secrets
from lookup.orders.base import BaseOrderApi, mask_phone
from lookup.orders.httpbody import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_ANSWER_BYTES,
    AnswerRefused,
    decode,
    drain,
    is_json_type,
    parse_json,
    read_capped,
)
from lookup.orders.httprules import (
    BATCH_SHAPE,
    DEFAULT_TIMEOUTS,
    PHONE,
    REDIRECTS,
    Timeouts,
    batch_results,
    check_config,
    client_timeouts,
    connect_failure,
    follow_redirect,
    missing_field,
    outcome,
    parse_retry_after,
    raise_if_throttled,
    refused,
    status_error,
    transport_error,
)
from lookup.orders.throttle import parse_throttle_rules

__all__ = [
    "DEFAULT_TIMEOUTS",
    "HttpOrderApi",
    "Timeouts",
    "parse_retry_after",
    "parse_throttle_rules",
]

_MISSING: Final = object()
_FAIL_FAST_AFTER: Final = 3.0  # seconds of connect failures before a never-seen API is wrong


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
        max_answer_bytes: the cap of an answer, before and after decompression (a batch
            answer may have 128 bytes per number if that is more); a bigger one is an
            unexpected answer, read no further.

    Answers must be JSON with a JSON content type, without repeated keys or deep
    nesting; counts must be whole numbers from 0 to ``MAX_ORDER_COUNT`` (the rule of
    :mod:`lookup.orders.base`). A redirect is followed only within the configured
    origin (scheme, host, port), at most three times, each hop a request the checker
    counts (:meth:`add_request_listener`); one to another origin is a ``FatalApiError``
    naming it, so configured headers and the numbers never leave the origin.

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
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        method, path = check_config(
            url, method, batch_url, hit_field, max_connections, max_answer_bytes
        )

        self._url = url
        self._templated = PHONE in url
        self._method = method
        self._post = method == "POST"
        self._headers = dict(headers or {})
        if not any(k.lower() == "accept-encoding" for k in self._headers):
            self._headers["Accept-Encoding"] = ACCEPT_ENCODING  # what decode() can cap
        self._cap = max_answer_bytes
        self._origin = URL(url.replace(PHONE, "0")).origin()
        self._batch_origin = URL(batch_url).origin() if batch_url is not None else self._origin
        self.requests = 0  # HTTP requests sent, followed redirects included
        # Fail fast on a wrong address: while the API has never answered, connect
        # failures for longer than this are a FatalApiError, not a flaky API.
        self.fail_fast_after = _FAIL_FAST_AFTER
        self._answered = False
        self._first_connect_failure: float | None = None
        self._listeners: list[Callable[[], None]] = []
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
        self._client_timeout, self._batch_timeout = client_timeouts(timeouts)
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

    def add_request_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` for every request the adapter sends beyond the one per call
        (a followed same-origin redirect), so that the checker counts it."""
        self._listeners.append(listener)

    @property
    def call_timeout(self) -> float:
        """Seconds a check may take once its connection slot is free (``timeouts.total``)."""
        return self._total

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
        # Bodies are read undecoded: httpbody caps them before and after inflating.
        session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=self._client_timeout,
            auto_decompress=False,
            json_serialize=dumps,  # request bodies: compact, on orjson with [fast]
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
        url = self._url.replace(PHONE, phone) if self._templated else self._url
        payload = {"phone": phone} if self._post else None
        data = await self._exchange(
            session, self._method, url, payload, self._shown, phone, self._shape,
            self._client_timeout, self._cap,
        )  # fmt: skip
        if self._throttle_rules:
            raise_if_throttled(self._throttle_rules, data, self._method, self._shown, phone)
        value: Any = data
        for key in self._path:
            value = value.get(key, _MISSING) if type(value) is dict else _MISSING
            if value is _MISSING:
                raise missing_field(self._method, self._shown, phone, self._hit_field)
        return outcome(phone, value, self._shown, self._hit_field)

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
            BATCH_SHAPE,
            self._batch_timeout,
            max(self._cap, 128 * len(wanted)),  # a batch answer grows with its numbers
        )
        if self._throttle_rules:
            subject = f"a batch of {len(wanted)} numbers"
            raise_if_throttled(self._throttle_rules, data, self._method, shown, subject)
        results = batch_results(data, wanted, shown)
        field = self._hit_field
        return {p: outcome(p, results[p], shown, field, batch=True) for p in wanted}

    # -- internals -------------------------------------------------------------

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str | URL,
        payload: Any,
        shown: str,
        subject: str,
        expected: str,
        client_timeout: aiohttp.ClientTimeout,
        cap: int,
    ) -> Any:
        """One request; the decoded JSON body of a 2xx answer, or an ``OrderApiError``.

        ``subject`` (the number, or a description of a batch) is masked in messages;
        ``expected`` describes the body wanted, for the message when it is not JSON.
        """
        slots = self._slots
        assert slots is not None
        home = self._batch_origin if url is self._batch_url else self._origin
        try:
            async with slots:
                hops = 0
                while True:
                    async with session.request(
                        method, url, json=payload, timeout=client_timeout, allow_redirects=False
                    ) as resp:
                        self.requests += 1
                        self._answered = True  # it answered: from now on, be patient
                        status = resp.status
                        if status in REDIRECTS and "Location" in resp.headers:
                            await drain(resp, cap)
                            url = follow_redirect(resp, home, method, shown, subject, hops)
                            hops += 1
                            for listener in self._listeners:
                                listener()
                            if status == 303 or (status in (301, 302) and method == "POST"):
                                method, payload = "GET", None
                            continue
                        if not 200 <= status < 300:
                            # Read error bodies too (capped), so the connection goes back
                            # to the pool.
                            await drain(resp, cap)
                            raise status_error(
                                status, resp.headers.get("Retry-After"), method, shown, subject
                            )
                        try:
                            if not is_json_type(resp.headers.get("Content-Type")):
                                raise AnswerRefused(
                                    "its Content-Type is "
                                    f"{(resp.headers.get('Content-Type') or 'missing')[:48]!r}, "
                                    "not application/json"
                                )
                            raw = decode(
                                await read_capped(resp, cap),
                                resp.headers.get("Content-Encoding"),
                                cap,
                            )
                        except AnswerRefused as exc:
                            resp.close()  # the rest of the body is not read: drop the line
                            raise refused(
                                method, shown, status, subject, str(exc), expected
                            ) from None
                        break
        except (TimeoutError, aiohttp.ClientError) as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                self._raise_if_never_answered(home, "connecting timed out", exc)
            elif isinstance(exc, aiohttp.ClientConnectorError) and not isinstance(exc, TimeoutError):
                self._raise_if_never_answered(home, connect_failure(exc), exc)
            raise transport_error(
                exc, method, shown, subject, self._timeouts, self._scrub
            ) from exc
        try:
            return parse_json(raw)
        except AnswerRefused as exc:
            raise refused(method, shown, status, subject, str(exc), expected) from None
        except ValueError as exc:
            raise FatalApiError(
                f"{method} {shown} answered {status} with a body that is not JSON "
                f"({len(raw)} bytes) for {mask_phone(subject)}; expected "
                f"{expected}"
            ) from exc

    def _raise_if_never_answered(self, home: URL, what: str, exc: BaseException) -> None:
        """A connection failure of an API that has never answered, for longer than
        ``fail_fast_after`` seconds: a wrong address, not an outage (``FatalApiError``)."""
        if self._answered:
            return
        now = time.monotonic()
        if self._first_connect_failure is None:
            self._first_connect_failure = now
        if now - self._first_connect_failure < self.fail_fast_after:
            return
        host = self._scrub(str(home.host or "?"))
        tls = "; the TLS certificate and --api's scheme" if "TLS" in what else ""
        raise FatalApiError(
            f"cannot reach the order API at {host}:{home.port} ({what}) and it has not "
            f"answered once since start: check the host and port of --api (LOOKUP_API_URL), "
            f"that the API is running and reachable from here{tls}"
        ) from exc

    def _scrub(self, text: str) -> str:
        """``text`` with numbers masked and configured credentials removed."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return mask_phone(text)
