"""The HTTP middlewares of the service, and who the caller is.

Middlewares, outermost first:

1. *request id*: ``X-Request-Id`` taken from the request when sane (1-128 characters of
   ``[A-Za-z0-9._-]``), else a new uuid4 hex; returned on every answer; counts every
   answer in ``lookup_http_requests_total{route,status}`` and its time in
   ``lookup_http_request_duration_seconds{route}`` (the route template).
2. *problems*: every error becomes ``application/problem+json`` (:mod:`lookup.service.problems`):
   a :class:`ProblemError` raised by a handler, aiohttp's HTTP errors (404, 405, 413),
   a broken request body (400) and anything unexpected (500, logged once).
3. *auth* (when tokens are configured): ``Authorization: Bearer <token>``; 401 with
   ``WWW-Authenticate: Bearer`` without one, 401 with ``error="invalid_token"`` for an
   unknown one; 400 for two ``Authorization`` headers (a proxy and this service could
   each read a different one). ``open_paths`` need no token, nor do paths no route has
   (a 404 problem).

The body checks are in :mod:`lookup.service.body`; the connection protocol, the access log
and :func:`~lookup.service.listen.listen` in :mod:`lookup.service.listen`.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError, LineTooLong
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestPayloadError

from lookup.domain.errors import ConfigError
from lookup.domain.i18n import N_, language, language_from_accept
from lookup.domain.net import is_loopback
from lookup.orders.base import mask_phone
from lookup.runtime.settings import Settings
from lookup.service.metrics import ServiceMetrics
from lookup.service.problems import FieldProblem, problem_response

__all__ = [
    "MIN_TOKEN_LENGTH",
    "ProblemError",
    "auth_middleware",
    "caller_name",
    "caller_var",
    "check_exposure",
    "is_loopback",
    "problems_middleware",
    "request_id_middleware",
    "request_id_var",
    "unknown_path",
]

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
_KEEP_HEADERS: Final = ("Allow", "WWW-Authenticate", "Retry-After")

MIN_TOKEN_LENGTH: Final = 16
"""Service tokens shorter than this are refused off loopback."""

log = logging.getLogger("lookup.service")

# Set by the middlewares for the handler they call (context variables, not request
# storage: aiohttp's typed RequestKey is only in recent versions).
request_id_var: Final[contextvars.ContextVar[str]] = contextvars.ContextVar(
    "lookup_request_id", default="-"
)
caller_var: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "lookup_service_caller", default=None
)


class ProblemError(Exception):
    """Raised by a handler: answer with this problem (see :mod:`lookup.service.problems`)."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        errors: list[FieldProblem] | None = None,
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(detail)
        self.slug, self.detail, self.errors, self.kind = slug, detail, errors, kind
        self.headers = dict(headers or {})
        self.close = close


_NO_DIGITS: Final = str.maketrans("0123456789", "ghjkmnpqrs")


def new_request_id() -> str:
    """32 random letters (a uuid4 with its digits spelled as letters): an id the privacy
    filter can never take for a phone number, so it comes back exactly as it was sent."""
    return uuid.uuid4().hex.translate(_NO_DIGITS)


def request_id_middleware(metrics: ServiceMetrics) -> Middleware:
    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id", "")
        rid = given if _REQUEST_ID.fullmatch(given) else new_request_id()
        reset = request_id_var.set(rid)
        lang = language_from_accept(request.headers.get("Accept-Language"))
        started = time.perf_counter()
        try:
            with language(lang):  # problems' title and detail in the reader's language
                response = await handler(request)
        finally:
            request_id_var.reset(reset)
        response.headers["X-Request-Id"] = rid
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics.http_answered(route, response.status, time.perf_counter() - started)
        return response

    return request_id


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id_var.get()
    try:
        return await handler(request)
    except ProblemError as exc:
        response = problem_response(
            exc.slug, exc.detail, instance=rid, errors=exc.errors, kind=exc.kind,
            headers=exc.headers,
        )  # fmt: skip
        if exc.close:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        default = f"{exc.status}: {exc.reason}"
        detail = exc.text if exc.text and exc.text != default else exc.reason
        keep = {k: v for k, v in exc.headers.items() if k in _KEEP_HEADERS}
        return problem_response(exc.status, detail, instance=rid, headers=keep)
    except (HttpProcessingError, RequestPayloadError) as exc:  # a broken body on the wire
        cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
        if isinstance(cause, ContentEncodingError):
            coding = request.headers.get("Content-Encoding", "").strip().lower()[:20]
            detail = N_(
                "the request body is not valid {coding}; send it uncompressed, or "
                "compress the whole body"
            ).format(coding=coding or "compressed data")
        else:
            detail = f"the request body could not be read: {_parse_reason(cause)}"
        response = problem_response("bad-request", detail, instance=rid)
        response.force_close()
        # Nothing more of this body is read: aiohttp would otherwise drain it after the
        # answer, meet the same error again and log it as an unhandled exception.
        request.content.feed_eof()
        return response
    except Exception:
        log.exception(
            "unexpected error in %s %s (request_id=%s)",
            request.method, mask_phone(request.path), rid,
        )  # fmt: skip
        return problem_response(
            "internal", f"internal error: the service log has the details (request id {rid})",
            instance=rid,
        )  # fmt: skip


def auth_middleware(
    tokens: Sequence[bytes],
    open_paths: Collection[str],
    is_open: Callable[[str], bool] | None = None,
) -> Middleware:
    """Bearer-token authentication; the caller (:func:`caller_name` of its token) goes to
    :data:`caller_var`.

    ``open_paths`` (exact) and the paths ``is_open`` accepts (the desk page's assets) need
    no token.
    """

    names = [caller_name(token) for token in tokens]

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.path in open_paths or (is_open is not None and is_open(request.path))
                or unknown_path(request)):  # fmt: skip
            return await handler(request)
        given_all = request.headers.getall("Authorization", [])
        if len(given_all) > 1:  # which one counts would differ between proxies and us
            raise ProblemError(
                "bad-request",
                f"{len(given_all)} Authorization headers; send exactly one: "
                "'Authorization: Bearer <token>'",
                close=True,
            )
        scheme, _, credentials = (given_all[0] if given_all else "").partition(" ")
        given = credentials.strip().encode("utf-8", "backslashreplace")
        if scheme.lower() != "bearer" or not given:
            raise ProblemError(
                "unauthorized",
                "authentication required: send 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": 'Bearer realm="lookup"'},
            )
        match = 0
        for i, token in enumerate(tokens, 1):  # no early exit: same time for every token
            if hmac.compare_digest(given, token):
                match = match or i
        if not match:
            raise ProblemError(
                "unauthorized",
                "invalid token: this service does not know it; check LOOKUP_SERVICE_TOKENS",
                headers={"WWW-Authenticate": 'Bearer realm="lookup", error="invalid_token"'},
            )
        reset = caller_var.set(names[match - 1])
        try:
            return await handler(request)
        finally:
            caller_var.reset(reset)

    return auth


def unknown_path(request: web.Request) -> bool:
    """No route has this path (whatever the method): a 404 for everyone, token or not; a
    401 would tell a client to authenticate for a page that is not there."""
    return isinstance(request.match_info.http_exception, web.HTTPNotFound)


def caller_name(token: bytes) -> str:
    """The stable, non-secret name of a token's holder: ``token:`` and 12 hex digits of a
    keyed SHA-256 of the token. Jobs belong to it and audit lines name it; reordering or
    adding tokens changes nothing, and it does not reveal the token (a token is a long
    random secret: its hash cannot be searched back)."""
    return "token:" + hmac.new(b"lookup-caller-v1", token, "sha256").hexdigest()[:12]


def check_exposure(settings: Settings) -> None:
    """Refuse to serve without authentication, or with short tokens, off loopback.

    :raises ConfigError: an empty token; no ``service_tokens`` or a token shorter than
        :data:`MIN_TOKEN_LENGTH` characters and a ``service_host`` that is not loopback.
    """
    tokens = [t.get_secret_value() for t in settings.service_tokens]
    if any(not t.strip() for t in tokens):
        raise ConfigError("service_tokens: a token is empty; remove it or give it a value")
    if is_loopback(settings.service_host):
        return
    if not tokens:
        raise ConfigError(
            f"refusing to serve on {settings.service_host} without authentication: set "
            "LOOKUP_SERVICE_TOKENS='[\"<token>\", ...]' (or service_tokens in --config), "
            "or bind a loopback host such as 127.0.0.1"
        )
    short = [n for n, t in enumerate(tokens, 1) if len(t) < MIN_TOKEN_LENGTH]
    if short:
        raise ConfigError(
            f"refusing to serve on {settings.service_host}: service token #{short[0]} has "
            f"fewer than {MIN_TOKEN_LENGTH} characters; use long random tokens, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
        )


_QUOTED: Final = re.compile(r":?\s*(b'|b\"|bytearray\().*", re.DOTALL)


def _parse_reason(exc: BaseException | None) -> str:
    """The parser's reason for refusing a request, without the bytes it quotes."""
    if isinstance(exc, LineTooLong):
        return "a request line or header field is longer than 8190 bytes"
    message = getattr(exc, "message", None) or str(exc or "")
    first = str(message).strip().split("\n", 1)[0]
    first = _QUOTED.sub("", first).rstrip(" :")
    return mask_phone(first[:120]) or type(exc).__name__
