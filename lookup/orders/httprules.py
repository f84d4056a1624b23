"""The rules of one HTTP exchange with an order API, apart from the source that sends it:
time limits, what a status means (throttled, transient, fatal), ``Retry-After``, which
redirects may be followed, throttle signals in a 200 body, and the URL checks of the
configuration. Functions without state; :mod:`lookup.orders.http` owns the session.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from lookup.domain.errors import (
    ConfigError,
    FatalApiError,
    ThrottledApiError,
    TransientApiError,
    TransientKind,
)
from lookup.domain.models import CheckOutcome
from lookup.domain.privacy import mask_phone
from lookup.domain.privacy import redact_url as _redact_url
from lookup.orders.base import plausible_count, unexpected_answer

__all__ = [
    "BATCH_SHAPE",
    "DEFAULT_TIMEOUTS",
    "MAX_REDIRECTS",
    "METHODS",
    "PHONE",
    "REDIRECTS",
    "ThrottleRules",
    "Timeouts",
    "batch_results",
    "check_config",
    "check_url",
    "client_timeouts",
    "connect_failure",
    "follow_redirect",
    "missing_field",
    "outcome",
    "parse_retry_after",
    "raise_if_throttled",
    "refused",
    "status_error",
    "transport_error",
]

PHONE: Final = "{phone}"
"""Where the number goes in a configured URL (or POST body)."""
METHODS: Final = frozenset({"GET", "POST"})
BATCH_SHAPE: Final = "a JSON object {'results': {phone: total_or_bool}}: check batch_url"
REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS: Final = 3
_MISSING: Final = object()

ThrottleRules = tuple[tuple[tuple[str, ...], str], ...]
"""Parsed throttle signals (:func:`lookup.orders.throttle.parse_throttle_rules`)."""


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


def check_url(url: str, what: str) -> None:
    """A ``ConfigError`` unless ``url`` is an absolute http(s) URL (``{phone}`` allowed)."""
    try:
        parts = urlsplit(url.replace(PHONE, "0"))
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        URL(url.replace(PHONE, "0"))
    except ValueError as exc:
        raise ConfigError(
            f"{what} is not a valid URL ({exc}): got {_redact_url(url)[:96]!r}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{what} must be an absolute http:// or https:// URL, got {_redact_url(url)!r}"
        )


def connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    """What went wrong connecting, in a few words."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return "the TLS handshake failed"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "no such host: the name does not resolve"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return "connection refused: nothing listens on that port"
    reason = exc.os_error.strerror or type(exc.os_error).__name__
    return f"cannot connect: {reason}"


def status_error(
    status: int, retry_after: str | None, method: str, shown: str, subject: str
) -> TransientApiError | FatalApiError:
    """What a status other than 2xx (and a followed redirect) means."""
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


def follow_redirect(
    resp: aiohttp.ClientResponse,
    home: URL,
    method: str,
    shown: str,
    subject: str,
    hops: int,
) -> URL:
    """Where a redirect points, when it may be followed: the same origin (scheme, host,
    port), at most ``MAX_REDIRECTS`` times. Another origin would get the headers and
    the number: never followed, a ``FatalApiError`` naming it."""
    where = f"{method} {shown} answered {resp.status} for {mask_phone(subject)}"
    try:
        target = resp.url.join(URL(resp.headers["Location"]))
        origin = target.origin()
    except ValueError:
        raise FatalApiError(
            f"{where} with a redirect to an invalid Location: check the URL"
        ) from None
    if origin != home:
        raise FatalApiError(
            f"{where}: a redirect to another origin, {_redact_url(str(origin))[:96]}; "
            "it was not followed (the headers and the number would go there): "
            "configure the final URL"
        )
    if hops >= MAX_REDIRECTS:
        raise FatalApiError(
            f"{where}: more than {MAX_REDIRECTS} redirects; configure the final URL"
        )
    return target


def refused(
    method: str, shown: str, status: int, subject: str, why: str, expected: str
) -> FatalApiError:
    """An answer that is not one (``why``), as the ``FatalApiError`` naming the request."""
    return FatalApiError(
        f"unexpected answer: {method} {shown} answered {status} for {mask_phone(subject)} "
        f"but {why}; expected {expected}"
    )


def raise_if_throttled(
    rules: ThrottleRules, data: Any, method: str, shown: str, subject: str
) -> None:
    """A ``ThrottledApiError`` when ``data`` carries one of the configured throttle signals."""
    for path, wanted in rules:
        value: Any = data
        for key in path:
            value = value.get(key, _MISSING) if type(value) is dict else _MISSING
            if value is _MISSING:
                break
        if value is not _MISSING and _same(value, wanted):
            raise ThrottledApiError(
                f"{method} {shown} answered 200 for {mask_phone(subject)} with a "
                f"throttle signal ({'.'.join(path)}={wanted})",
                status=200,
            )


def check_config(
    url: str,
    method: str,
    batch_url: str | None,
    hit_field: str,
    max_connections: int,
    max_answer_bytes: int,
) -> tuple[str, tuple[str, ...]]:
    """The method (upper case) and the path of ``hit_field``; a ``ConfigError`` naming
    what is wrong with a source's configuration."""
    method = method.upper()
    if method not in METHODS:
        raise ConfigError(f"method must be GET or POST, got {method!r}")
    if method == "GET" and PHONE not in url:
        raise ConfigError(
            f"a GET url must contain {PHONE} where the number goes, e.g. "
            f"'https://api.example/orders?phone={PHONE}'; got {_redact_url(url)!r}"
        )
    check_url(url, "url")
    if batch_url is not None:
        check_url(batch_url, "batch_url")
    path = tuple(hit_field.split("."))
    if not all(path):
        raise ConfigError(
            f"hit_field must be a dotted path such as 'total' or 'data.total', "
            f"got {hit_field!r}"
        )
    if max_connections < 1:
        raise ConfigError(f"max_connections must be at least 1, got {max_connections}")
    if max_answer_bytes < 64:
        raise ConfigError(f"max_answer_bytes must be at least 64, got {max_answer_bytes}")
    return method, path


def client_timeouts(timeouts: Timeouts) -> tuple[aiohttp.ClientTimeout, aiohttp.ClientTimeout]:
    """aiohttp's time limits of a single check and of a batch request, built once per source
    (no timeout object per request)."""
    # aiohttp's ``connect`` and ``total`` include the wait for a free pooled
    # connection, so a busy pool would look like a slow API. The request starts only
    # once a slot of the source's ``_slots`` (sized like the pool) is ours, so the
    # connector never queues and aiohttp's own ``total`` bounds the request alone: one timer
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
    single = aiohttp.ClientTimeout(
        total=timeouts.total, connect=None, sock_connect=timeouts.connect,
        ceil_threshold=math.inf,
    )  # fmt: skip
    batch = aiohttp.ClientTimeout(
        total=timeouts.total, connect=None, sock_connect=timeouts.connect,
        sock_read=timeouts.read, ceil_threshold=math.inf,
    )  # fmt: skip
    return single, batch


def batch_results(data: Any, wanted: list[str], shown: str) -> dict[str, Any]:
    """The ``results`` object of a batch answer, with one entry per number sent (and no
    other), else a ``FatalApiError``."""
    results = data.get("results") if type(data) is dict else None
    if type(results) is not dict:
        raise FatalApiError(
            f"the answer of POST {shown} has no object 'results'; expected {BATCH_SHAPE}"
        )
    missing = [p for p in wanted if p not in results]
    if missing:
        raise FatalApiError(
            f"the answer of POST {shown} lacks {len(missing)} of {len(wanted)} numbers "
            f"(first: {mask_phone(missing[0])}); expected one entry per number sent"
        )
    if len(results) > len(wanted):
        sent = set(wanted)
        extra = next(str(p) for p in results if p not in sent)
        raise FatalApiError(
            f"unexpected answer: the answer of POST {shown} has numbers that were not sent "
            f"(first: {mask_phone(extra)[:32]}); expected one entry per number sent"
        )
    return results


def transport_error(
    exc: TimeoutError | aiohttp.ClientError,
    method: str,
    shown: str,
    subject: str,
    timeouts: Timeouts,
    scrub: Callable[[str], str],
) -> TransientApiError | FatalApiError:
    """What a failed request means: a timeout or a connection error is transient (``kind``
    says which), any other client error fatal. ``scrub`` cleans aiohttp's own words."""
    if isinstance(exc, TimeoutError):
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            what = f"connecting took over {timeouts.connect}s"
        elif isinstance(exc, aiohttp.SocketTimeoutError):
            what = f"no data for {timeouts.read}s"
        else:
            what = f"no answer within {timeouts.total}s"
        return TransientApiError(
            f"{method} {shown} timed out for {mask_phone(subject)}: {what}", kind="timeout"
        )
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        kind: TransientKind = "connect" if isinstance(exc, aiohttp.ClientConnectorError) else "reset"
        return TransientApiError(
            f"{method} {shown} failed for {mask_phone(subject)}: connection error "
            f"{type(exc).__name__}: {scrub(str(exc))}",
            kind=kind,
        )
    return FatalApiError(
        f"{method} {shown} failed for {mask_phone(subject)}: "
        f"{type(exc).__name__}: {scrub(str(exc))}"
    )


def missing_field(method: str, shown: str, phone: str, hit_field: str) -> FatalApiError:
    """An answer without the configured ``hit_field``."""
    return FatalApiError(
        f"the answer of {method} {shown} for {mask_phone(phone)} has no field "
        f"{hit_field!r}: check hit_field (a dotted path such as 'data.total')"
    )


def outcome(
    phone: str, value: Any, shown: str, hit_field: str, *, batch: bool = False
) -> CheckOutcome:
    """The outcome an answer's value means (a boolean, or a plausible count), else the
    unexpected answer (:func:`lookup.orders.base.unexpected_answer`)."""
    if type(value) is bool:
        return CheckOutcome(phone=phone, has_orders=value)
    count = plausible_count(value)  # 2.0 is a count; 0.5, -1, 1e308 are not
    if count is not None:
        return CheckOutcome(phone=phone, has_orders=count > 0, order_count=count)
    # The field's name is spelled out only here: masking it per number costs µs per check.
    field = f"results.{mask_phone(phone)}" if batch else hit_field
    raise unexpected_answer(f"{shown}", phone, value, f"field {field!r}")
