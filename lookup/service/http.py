"""The HTTP plumbing of the service: middlewares, the access log and :func:`listen`.

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

A request that cannot be parsed as HTTP (a header line over 8190 bytes, too many headers,
a bad chunk size, two ``Content-Length`` ...) never reaches the app: aiohttp answers it
itself, as ``text/plain`` quoting the offending bytes, and logs a traceback at ERROR.
:func:`make_runner` swaps in a protocol whose answer is a ``bad-request`` problem (the
parser's reason, without the bytes; ``Content-Encoding`` it cannot decode: 415) and whose
log line is one DEBUG line.

Timeouts: aiohttp (3.14) starts its keep-alive timer when a connection opens and resets it
only after an answer; when it fires on a connection still waiting for a complete request,
the connection is closed. :func:`listen` sets that timer to ``read_timeout``, which
makes it a deadline for a request's headers (a half-sent request line or header block is
closed after ``read_timeout`` seconds, however slowly it trickles) and for idle
keep-alive connections. Handlers bound the body read with :func:`read_body`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, Final, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError, LineTooLong
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from pydantic import BaseModel, ValidationError

from lookup.domain.errors import ConfigError
from lookup.domain.i18n import N_, language, language_from_accept
from lookup.domain.net import is_loopback
from lookup.orders.base import mask_phone
from lookup.runtime.settings import Settings
from lookup.service.metrics import ServiceMetrics
from lookup.service.problems import FieldProblem, field_problems, problem_response

__all__ = [
    "MIN_TOKEN_LENGTH",
    "ProblemError",
    "access_logger",
    "auth_middleware",
    "caller_name",
    "caller_var",
    "check_exposure",
    "is_loopback",
    "json_body",
    "listen",
    "make_runner",
    "problems_middleware",
    "read_body",
    "request_id_middleware",
    "request_id_var",
    "unknown_path",
]

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
_LINGER: Final = 1.0
_DRAIN_POLL: Final = 0.05
_KEEP_HEADERS: Final = ("Allow", "WWW-Authenticate", "Retry-After")
_DECODED: Final = frozenset({"identity", "gzip", "deflate", "br", "zstd"})
"""Content-Encodings aiohttp decodes (br and zstd when their packages are installed)."""

MIN_TOKEN_LENGTH: Final = 16
"""Service tokens shorter than this are refused off loopback."""
_M = TypeVar("_M", bound=BaseModel)

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


async def read_body(request: web.Request, seconds: float) -> bytes:
    """The whole body, or a 408 problem (connection closed) after ``seconds``."""
    if request.content.is_eof():  # all of it arrived with the headers: nothing to wait for
        return await request.read()
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise ProblemError(
            "request-timeout",
            N_("the request body did not arrive within {seconds} s; send it at once").format(
                seconds=f"{seconds:g}"
            ),
            close=True,
        ) from None


async def json_body(request: web.Request, model: type[_M], read_timeout: float) -> _M:
    """The body validated as ``model``: 415, 422 (encoding, JSON, schema) or 408 problems."""
    declared = request.headers.get("Content-Type")
    if declared is not None:
        mime = request.content_type
        if mime != "application/json" and not mime.endswith("+json"):
            raise ProblemError(
                "unsupported-media-type",
                f"the body is declared as {mime!r}; send JSON with "
                "'Content-Type: application/json'",
            )
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in _DECODED:  # aiohttp passes a coding it does not know through as is
        raise ProblemError(
            "unsupported-media-type",
            "the body's Content-Encoding is not one this service decodes; send it "
            "uncompressed, or as gzip or deflate",
        )
    raw = await read_body(request, read_timeout)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        charset = request.charset
        said = f" (declared charset {charset})" if charset and charset.lower() != "utf-8" else ""
        raise ProblemError(
            "invalid-body",
            f"the body is not UTF-8{said}: byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
            "send JSON encoded as UTF-8",
            errors=[FieldProblem(field="body", message="not UTF-8")],
        ) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = field_problems(exc)
        raise ProblemError(
            "invalid-body",
            "the body does not fit the schema: "
            + "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors=errors,
            kind="ValidationError",
        ) from None


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


class _AccessLogger(AbstractAccessLogger):
    """Peer, method, path (numbers masked), status, size, time, request id: no body or query."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs request_id=%s',
            request.remote or "-",
            request.method,
            mask_phone(request.path),
            response.status,
            response.body_length,
            time,
            response.headers.get("X-Request-Id", "-"),
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


access_logger: Final = _AccessLogger


_QUOTED: Final = re.compile(r":?\s*(b'|b\"|bytearray\().*", re.DOTALL)


def _parse_reason(exc: BaseException | None) -> str:
    """The parser's reason for refusing a request, without the bytes it quotes."""
    if isinstance(exc, LineTooLong):
        return "a request line or header field is longer than 8190 bytes"
    message = getattr(exc, "message", None) or str(exc or "")
    first = str(message).strip().split("\n", 1)[0]
    first = _QUOTED.sub("", first).rstrip(" :")
    return mask_phone(first[:120]) or type(exc).__name__


class _ProblemProtocol(RequestHandler):
    """aiohttp's connection protocol, answering requests it cannot parse with a problem."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # too late for an answer: aiohttp closes
            return super().handle_error(request, status, exc, message)
        rid = new_request_id()
        if status >= 500:  # outside the app's middlewares (which answer their own)
            log.error("unexpected error (request_id=%s)", rid, exc_info=exc)
            response = problem_response(
                "internal",
                f"internal error: the service log has the details (request id {rid})",
                instance=rid,
            )  # fmt: skip
            response.headers["X-Request-Id"] = rid
            response.force_close()
            return response
        reason = _parse_reason(exc)
        log.debug("unreadable request from %s: %s (request_id=%s)", request.remote, reason, rid)
        if isinstance(exc, ContentEncodingError):
            response = problem_response(
                "unsupported-media-type",
                "this service cannot decode the body's Content-Encoding; send it "
                "uncompressed, or as gzip or deflate",
                instance=rid,
            )  # fmt: skip
        else:
            response = problem_response(
                "bad-request" if status == 400 else status,
                f"the request could not be read as HTTP/1.1: {reason}",
                instance=rid,
            )  # fmt: skip
        response.headers["X-Request-Id"] = rid
        response.force_close()
        return response


class _ProblemServer(web.Server):
    """The protocol factory of :class:`_ProblemProtocol`."""

    def __call__(self) -> RequestHandler:
        return _ProblemProtocol(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """An :class:`~aiohttp.web.AppRunner` whose connections answer unparsable requests
    with a problem (see :class:`_ProblemProtocol`)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # the same object; only its protocol differs
        return server


class _DrainingRunner(_Runner):
    """An :class:`~aiohttp.web.AppRunner` that drains keep-alive connections on cleanup.

    aiohttp closes idle keep-alive connections as soon as it stops; a client that was
    just writing its next request on one sees a reset. Here, after the listening socket
    closed, the connections already open are served for up to ``drain`` seconds, every
    answer closing its connection, before aiohttp's own shutdown closes what is left.
    """

    def __init__(self, app: web.Application, *, drain: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._drain = drain
        self.draining = False

    async def cleanup(self) -> None:
        for site in list(self.sites):
            await site.stop()
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._drain
        # aiohttp signals no "connection closed" to wait on: poll its list, bounded.
        while self.server is not None and self.server.connections and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(_DRAIN_POLL)
        await super().cleanup()

    async def close_when_draining(self, request: web.Request, response: web.StreamResponse) -> None:
        del request
        if self.draining:
            # The hook runs after aiohttp computed the headers: say "close" ourselves.
            response.force_close()
            response.headers["Connection"] = "close"


def make_runner(
    app: web.Application, *, shutdown_timeout: float, read_timeout: float, drain: float = 0.0
) -> web.AppRunner:
    """The runner of the service app (not set up): the access log, cancellation of a
    lookup whose client left, the header deadline and the shutdown grace.

    :func:`listen` uses it, and so does each gunicorn worker of ``--workers N``, with
    ``drain`` seconds for the open keep-alive connections (see :class:`_DrainingRunner`).
    """
    if drain > 0:
        runner = _DrainingRunner(
            app, drain=drain, access_log_class=_AccessLogger, handler_cancellation=True,
            shutdown_timeout=shutdown_timeout, keepalive_timeout=read_timeout,
            lingering_time=_LINGER,
        )  # fmt: skip
        app.on_response_prepare.append(runner.close_when_draining)
        return runner
    return _Runner(
        app,
        access_log_class=_AccessLogger,
        handler_cancellation=True,  # a client that goes away cancels its lookup
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=read_timeout,  # the header deadline: see the module docstring
        # After an answer to a request whose body did not all arrive (a 408, a 413),
        # read and drop the rest for at most this long, then close (aiohttp: 10 s).
        lingering_time=_LINGER,
    )


@contextlib.asynccontextmanager
async def listen(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float,
    read_timeout: float,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) and yield its URL; stop on exit.

    ``host`` may be an IPv6 address in brackets (``[::1]``). Stopping closes the listening
    socket, gives in-flight requests ``shutdown_timeout`` seconds, cancels what is left,
    then runs the app's cleanup.

    :raises OSError: the address cannot be bound (busy port, an address not of this host).
    """
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    runner = make_runner(app, shutdown_timeout=shutdown_timeout, read_timeout=read_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, bare, port).start()
        bound = runner.addresses[0][1]
        shown = f"[{bare}]" if ":" in bare else bare
        yield f"http://{shown}:{bound}"
    finally:
        await runner.cleanup()
