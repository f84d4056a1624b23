"""The service's connections: their protocol, the access log, the runner and :func:`listen`.

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
keep-alive connections. Handlers bound the body read with
:func:`lookup.service.body.read_body`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import ContentEncodingError
from aiohttp.web_protocol import RequestHandler

from lookup.orders.base import mask_phone
from lookup.service.http import _parse_reason, new_request_id
from lookup.service.problems import problem_response

__all__ = ["ON_DRAINING", "access_logger", "listen", "make_runner"]

_LINGER: Final = 1.0
_DRAIN_POLL: Final = 0.05

log = logging.getLogger("lookup.service")

ON_DRAINING: Final = web.AppKey("lookup_on_draining", list[Callable[[], None]])
"""Called (in order) when a worker's runner starts draining: the worker is stopping. Put
the list in the app before it starts; append to it later."""


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
        for hook in self.app.get(ON_DRAINING, []):
            hook()
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
