"""The HTTP service: ``lookup serve [--host 127.0.0.1] [--port 8000] --api ...``.

Routes (JSON in and out, UTF-8):

* ``POST /v1/lookups``: body :class:`LookupRequest`; answer :class:`~lookup.models.LookupResult`.
* ``POST /v1/lookups/batch``: ``{"lookups": [LookupRequest, ...]}`` (at most
  ``service_max_batch``); answer ``{"results": [...]}`` in request order, each a result or
  ``{"status": "invalid", "error": ..., "kind": ...}``. At most
  :data:`BATCH_LOOKUPS_IN_FLIGHT` lookups of a batch run at once.
* ``GET /v1/segments/{seven}``: what the segment database knows of a 7-digit segment, or 404.
* ``GET /healthz``: ``{"status": "ok", "data_version", "breaker"}``; never needs a token.
* ``GET /metrics``: Prometheus text format.

Decisions:

* Every lookup *outcome* is ``200``: ``matched``, ``not_found``, ``inconclusive`` and
  ``api_error`` are answers about the number, not failures of this request; the ``status``
  field says which (an ``api_error`` is not a bug of this service and must not trip
  proxies' 5xx alarms or retries).
* Input errors (bad mask, unknown region, more candidates than the cap, a ``max_candidates``
  above the service's cap) are ``422 {"error", "kind"}``, ``kind`` being the exception class.
  A body that is not valid JSON or breaks the schema is ``422 {"error", "kind":
  "ValidationError", "details": <pydantic errors()>}``. A body over ``service_max_body``
  bytes, or a batch of more than ``service_max_batch`` lookups, is ``413``. Other errors
  (404, 405) have a JSON ``{"error"}`` body too.
* Authentication: ``Authorization: Bearer <token>`` with one of ``service_tokens``; 401
  (with ``WWW-Authenticate: Bearer``) without one, 403 with a wrong one. ``/metrics``
  needs a token like the API (it tells traffic volumes and error rates; Prometheus sends
  ``authorization: {credentials: ...}``); only ``/healthz`` is open. Without tokens the
  service runs unauthenticated on a loopback host only (with a warning) and refuses any
  other host.
* The audit line of a lookup names the caller ``token#N`` (the N-th configured token,
  from 1), or the peer address when authentication is off; never the token.
* The access log (logger ``aiohttp.access``, INFO) has the peer, method, path with any
  11-digit run masked, status, size and time: no query string, headers or body.
* One checker and one order-API session serve every request (limits, cache and breaker
  hold across requests). On shutdown in-flight requests get :data:`SHUTDOWN_GRACE` seconds
  to finish, then are cancelled; then the session closes. A client that disconnects
  cancels its lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import ipaddress
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lookup.checker import Checker
from lookup.errors import ConfigError, InputError, UnknownRegionError
from lookup.matcher import find
from lookup.models import LookupResult
from lookup.orders.base import OrderApi, mask_phone
from lookup.runtime import open_api
from lookup.segments import SegmentDB
from lookup.settings import Settings
from lookup.webui import is_open_path, setup_web

if TYPE_CHECKING:
    import argparse

__all__ = [
    "BATCH_LOOKUPS_IN_FLIGHT",
    "SHUTDOWN_GRACE",
    "BatchRequest",
    "LookupRequest",
    "check_exposure",
    "cmd_serve",
    "create_app",
    "is_loopback",
    "serving",
]

BATCH_LOOKUPS_IN_FLIGHT: Final = 8
"""Lookups of one batch request at once (their checks share the service's checker)."""
SHUTDOWN_GRACE: Final = 10.0
"""Seconds in-flight requests get to finish on shutdown before they are cancelled."""

_LOOKUP_STATUSES: Final = ("matched", "not_found", "inconclusive", "api_error", "invalid")
_BREAKER_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}
_CHECK_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
)  # fmt: skip
_LOOKUP_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_OPEN_PATHS: Final = frozenset({"/healthz"})
_LOCAL_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})

log = logging.getLogger("lookup.service")


# -- request models --------------------------------------------------------------------------


class LookupRequest(BaseModel):
    """The body of ``POST /v1/lookups`` (and each item of a batch)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    mask: str = Field(min_length=1, max_length=64, description="e.g. 138****1234")
    city: str | None = Field(None, max_length=64)
    province: str | None = Field(None, max_length=64)
    area_code: str | None = Field(None, max_length=16)
    zip: str | None = Field(None, max_length=16)
    carrier: str | None = Field(None, max_length=32)
    mode: Literal["first", "all"] = "first"
    max_candidates: int | None = Field(
        None, ge=1, description="refuse masks with more candidates (at most the service's cap)"
    )


class BatchRequest(BaseModel):
    """The body of ``POST /v1/lookups/batch``; each item is validated on its own."""

    model_config = ConfigDict(extra="forbid")

    lookups: list[Any]


# -- state and metrics -----------------------------------------------------------------------


class _Metrics:
    """The service's own metrics and the checker's counters, in a per-app registry."""

    def __init__(self, checker: Callable[[], Checker | None]) -> None:
        self.registry = CollectorRegistry()
        self._checker = checker
        r = self.registry
        self.lookups = Counter(
            "lookup_lookups", "Lookups answered, by status ('invalid': input errors)",
            ["status"], registry=r,
        )  # fmt: skip
        for status in _LOOKUP_STATUSES:
            self.lookups.labels(status)
        self.lookup_seconds = Histogram(
            "lookup_lookup_duration_seconds", "Wall time of a lookup", registry=r,
            buckets=_LOOKUP_BUCKETS,
        )  # fmt: skip
        self.in_progress = Gauge("lookup_lookups_in_progress", "Lookups running", registry=r)
        self.check_seconds = Histogram(
            "lookup_check_duration_seconds", "Latency of one order-API request (any outcome)",
            registry=r, buckets=_CHECK_BUCKETS,
        )  # fmt: skip
        r.register(self)  # collect() below: the checker's counters, read at scrape time

    def on_latency(self, seconds: float, outcome: str) -> None:
        del outcome  # counted by the checker itself; see collect()
        self.check_seconds.observe(seconds)

    def collect(self) -> Iterable[Metric]:
        checker = self._checker()
        if checker is None:
            return
        c = checker.counters
        checks = CounterMetricFamily(
            "lookup_checks", "Order-API requests by outcome", labels=["outcome"]
        )
        for outcome, value in (
            ("hit", c.hits), ("miss", c.misses),
            ("transient", c.transient_errors), ("fatal", c.fatal_errors),
        ):  # fmt: skip
            checks.add_metric([outcome], value)
        yield checks
        simple: tuple[tuple[str, str, int], ...] = (
            ("lookup_check_retries", "Retries of transient errors", c.retries),
            ("lookup_check_retries_denied", "Retries refused by the retry budget",
             c.retries_denied),
            ("lookup_rate_limited", "429 answers received from the order API", c.rate_limited),
            ("lookup_check_cache_hits", "Checks answered from the cache", c.cache_hits),
            ("lookup_checks_deduped", "Checks that joined an identical check in flight",
             c.deduped),
            ("lookup_breaker_opens", "Times the circuit breaker opened", c.breaker_opens),
            ("lookup_checks_short_circuited", "Checks refused by the open breaker",
             c.short_circuited),
        )  # fmt: skip
        for name, doc, value in simple:
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "lookup_checks_in_flight", "Order-API requests in flight (slots held)",
            value=c.in_flight,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "lookup_breaker_state", "Circuit breaker: 0 closed, 1 half_open, 2 open",
            value=_BREAKER_VALUES[checker.breaker_state],
        )  # fmt: skip


@dataclass
class _State:
    settings: Settings
    db: SegmentDB
    metrics: _Metrics = field(init=False)
    checker: Checker | None = None
    description: str = ""

    def __post_init__(self) -> None:
        self.metrics = _Metrics(lambda: self.checker)

    def ready_checker(self) -> Checker:
        if self.checker is None:  # pragma: no cover - routes run only after startup
            raise web.HTTPServiceUnavailable(text="the service is starting")
        return self.checker


_STATE: Final = web.AppKey("lookup_service_state", _State)
# Who is asking, set by the auth middleware for the handler it calls (a context variable,
# not request storage: aiohttp's typed RequestKey is only in recent versions).
_caller_var: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "lookup_service_caller", default=None
)


# -- helpers ---------------------------------------------------------------------------------


def _json(
    payload: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(payload, ensure_ascii=False),
        content_type="application/json",
        headers=headers,
    )


def _input_error(exc: InputError) -> dict[str, Any]:
    return {"error": str(exc), "kind": type(exc).__name__}


def _validation_error(exc: ValidationError) -> dict[str, Any]:
    details: list[dict[str, Any]] = json.loads(exc.json(include_url=False))
    summary = "; ".join(
        f"{'.'.join(str(p) for p in d['loc']) or 'body'}: {d['msg']}" for d in details
    )
    return {"error": summary, "kind": "ValidationError", "details": details}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only reaches this machine."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _AccessLogger(AbstractAccessLogger):
    """Peer, method, path (11-digit runs masked), status, size, time: never a body or query."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fs',
            request.remote or "-",
            request.method,
            mask_phone(request.path),
            response.status,
            response.body_length,
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


# -- middlewares -----------------------------------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON: aiohttp's HTTP errors (404, 405, 413) and unexpected ones (500)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        default = f"{exc.status}: {exc.reason}"
        message = exc.text if exc.text and exc.text != default else exc.reason
        keep = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
        return _json({"error": message}, exc.status, keep)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, mask_phone(request.path))
        return _json({"error": "internal error (see the service log)"}, 500)


def _auth_middleware(tokens: Sequence[bytes]) -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _OPEN_PATHS or is_open_path(request.path):
            return await handler(request)
        scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
        given = credentials.strip().encode("utf-8", "backslashreplace")
        if scheme.lower() != "bearer" or not given:
            return _json(
                {"error": "authentication required: send 'Authorization: Bearer <token>'"},
                401,
                {"WWW-Authenticate": 'Bearer realm="lookup"'},
            )
        match = 0
        for i, token in enumerate(tokens, 1):  # no early exit: same time for every token
            if hmac.compare_digest(given, token):
                match = match or i
        if not match:
            return _json({"error": "invalid token"}, 403)
        reset = _caller_var.set(f"token#{match}")
        try:
            return await handler(request)
        finally:
            _caller_var.reset(reset)

    return auth


# -- handlers --------------------------------------------------------------------------------


async def _run_lookup(state: _State, req: LookupRequest, caller: str) -> LookupResult:
    cap = state.settings.max_candidates
    metrics = state.metrics
    if req.max_candidates is not None and req.max_candidates > cap:
        metrics.lookups.labels("invalid").inc()
        raise ConfigError(
            f"max_candidates {req.max_candidates:,} is above this service's cap of {cap:,}; "
            "omit it or ask for less"
        )
    checker = state.ready_checker()
    started = time.perf_counter()
    metrics.in_progress.inc()
    try:
        result = await find(
            req.mask,
            checker=checker,
            db=state.db,
            city=req.city,
            province=req.province,
            area_code=req.area_code,
            zip=req.zip,
            carrier=req.carrier,
            mode=req.mode,
            max_candidates=req.max_candidates or cap,
            caller=caller,
        )
    except InputError:
        metrics.lookups.labels("invalid").inc()
        raise
    finally:
        metrics.in_progress.dec()
    metrics.lookups.labels(result.status).inc()
    metrics.lookup_seconds.observe(time.perf_counter() - started)
    return result


def _caller(request: web.Request) -> str:
    return _caller_var.get() or request.remote or "-"


async def _post_lookup(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        req = LookupRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        state.metrics.lookups.labels("invalid").inc()
        return _json(_validation_error(exc), 422)
    try:
        result = await _run_lookup(state, req, _caller(request))
    except InputError as exc:
        return _json(_input_error(exc), 422)
    return web.Response(text=result.model_dump_json(), content_type="application/json")


async def _post_batch(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    try:
        batch = BatchRequest.model_validate_json(await request.read())
    except ValidationError as exc:
        return _json(_validation_error(exc), 422)
    cap = state.settings.service_max_batch
    if len(batch.lookups) > cap:
        return _json(
            {"error": f"{len(batch.lookups):,} lookups in one batch; at most {cap:,}: split it",
             "kind": "BatchTooLarge"},
            413,
        )  # fmt: skip
    caller = _caller(request)
    results: list[dict[str, Any]] = [{} for _ in batch.lookups]
    todo: list[tuple[int, LookupRequest]] = []
    for i, item in enumerate(batch.lookups):
        try:
            todo.append((i, LookupRequest.model_validate(item)))
        except ValidationError as exc:
            state.metrics.lookups.labels("invalid").inc()
            results[i] = {"status": "invalid", **_validation_error(exc)}

    pending = iter(todo)

    async def worker() -> None:
        for i, req in pending:
            try:
                result = await _run_lookup(state, req, caller)
            except InputError as exc:
                results[i] = {"status": "invalid", **_input_error(exc)}
            else:
                results[i] = result.model_dump(mode="json")

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(BATCH_LOOKUPS_IN_FLIGHT, len(todo))):
            tg.create_task(worker())
    return _json({"results": results})


async def _get_segment(request: web.Request) -> web.Response:
    seven = request.match_info["seven"]
    if not (len(seven) == 7 and seven.isascii() and seven.isdigit()):
        exc = UnknownRegionError(
            "a segment is the first 7 digits of a mobile number, e.g. /v1/segments/1380571"
        )
        return _json(_input_error(exc), 422)
    info = request.app[_STATE].db.segment(seven)
    if info is None:
        return _json({"error": f"no segment {seven} in the numbering plan"}, 404)
    return _json(info.as_dict())


async def _get_health(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    breaker = state.checker.breaker_state if state.checker is not None else "closed"
    return _json({"status": "ok", "data_version": state.db.version, "breaker": breaker})


async def _get_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[_STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- the app ---------------------------------------------------------------------------------


def check_exposure(settings: Settings) -> None:
    """Refuse to serve without authentication anywhere but on a loopback host.

    :raises ConfigError: no ``service_tokens`` and ``service_host`` is not loopback, or an
        empty token.
    """
    if any(not t.get_secret_value().strip() for t in settings.service_tokens):
        raise ConfigError("service_tokens: a token is empty; remove it or give it a value")
    if not settings.service_tokens and not is_loopback(settings.service_host):
        raise ConfigError(
            f"refusing to serve on {settings.service_host} without authentication: set "
            "LOOKUP_SERVICE_TOKENS='[\"<token>\", ...]' (or service_tokens in --config), "
            "or bind a loopback host such as 127.0.0.1"
        )


def create_app(
    settings: Settings, *, api: OrderApi | None = None, checker: Checker | None = None
) -> web.Application:
    """The service as an aiohttp application.

    Without ``api`` or ``checker`` the order API of ``settings`` is opened when the app
    starts (``open_api``) and closed when it stops. An injected ``api`` (tests: a
    ``FakeOrderApi``) gets a checker with the settings' limits and is not closed; an
    injected ``checker`` is used as is (its latencies then miss the histogram).

    :raises ConfigError: no ``service_tokens`` and a ``service_host`` that is not loopback.
    """
    check_exposure(settings)
    tokens = tuple(t.get_secret_value().encode() for t in settings.service_tokens)
    if not tokens:
        log.warning(
            "no service tokens configured: authentication is OFF (allowed on loopback only)"
        )
    state = _State(settings=settings, db=SegmentDB.default())
    middlewares: list[Middleware] = [_errors]
    if tokens:
        middlewares.append(_auth_middleware(tokens))
    app = web.Application(client_max_size=settings.service_max_body, middlewares=middlewares)
    app[_STATE] = state

    async def order_api(app: web.Application) -> AsyncIterator[None]:
        if checker is not None:
            state.checker, state.description = checker, "injected checker"
            yield
        elif api is not None:
            state.checker = Checker(api, settings.limits(), on_latency=state.metrics.on_latency)
            state.description = f"injected {type(api).__name__}"
            yield
        else:
            async with open_api(settings) as opened:
                state.checker = Checker(
                    opened.api, opened.limits, on_latency=state.metrics.on_latency
                )
                state.description = opened.description
                yield
        state.checker = None

    app.cleanup_ctx.append(order_api)
    app.router.add_post("/v1/lookups", _post_lookup)
    app.router.add_post("/v1/lookups/batch", _post_batch)
    app.router.add_get("/v1/segments/{seven}", _get_segment)
    app.router.add_get("/healthz", _get_health)
    app.router.add_get("/metrics", _get_metrics)
    setup_web(app, settings, checker=lambda: state.checker, caller=_caller, db=state.db)
    return app


def _description(app: web.Application) -> str:
    """How the running app reaches its order API (for the listening line)."""
    return app[_STATE].description


@contextlib.asynccontextmanager
async def serving(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = SHUTDOWN_GRACE,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) and yield its URL; stop on exit.

    Stopping closes the listening socket, gives in-flight requests ``shutdown_timeout``
    seconds, cancels what is left, then runs the app's cleanup (the order-API session).
    """
    runner = web.AppRunner(
        app,
        access_log_class=_AccessLogger,
        handler_cancellation=True,  # a client that goes away cancels its lookup
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound}"
    finally:
        await runner.cleanup()


# -- the command -----------------------------------------------------------------------------


async def _serve(settings: Settings, out: TextIO) -> None:
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serving(app, settings.service_host, settings.service_port) as url:
            out.write(f"lookup service listening on {url} (order API: {_description(app)})\n")
            out.flush()
            await stop.wait()
            log.info("stopping: in-flight requests get %.0f s to finish", SHUTDOWN_GRACE)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    """``lookup serve``: run the service until SIGINT or SIGTERM; exit 0 after a clean stop."""
    from lookup.cli import ExitStatus, configure_logging, settings_from_args

    more = {
        name: value
        for name in ("service_host", "service_port")
        if (value := getattr(args, name, None)) is not None
    }
    settings = settings_from_args(args, **more)
    check_exposure(settings)  # before anything starts: exit 2 with the message
    configure_logging(settings)
    asyncio.run(_serve(settings, out))
    return ExitStatus.OK
