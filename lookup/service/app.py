"""The HTTP service: ``lookup serve [--host 127.0.0.1] [--port 8000] --api ...``.

Routes (JSON in and out, UTF-8; the full reference is ``/docs``, or ``/openapi.json``):

* ``POST /v1/lookups``: body :class:`LookupRequest`; answer :class:`~lookup.domain.models.LookupResult`.
* ``POST /v1/lookups/batch``: :class:`BatchRequest`; answer :class:`BatchResponse`, the
  results in request order (through :func:`lookup.engine.batch.run_batch`).
* ``GET /v1/segments/{seven}``: :class:`~lookup.domain.segments.SegmentInfo` of a 7-digit segment.
* ``GET /healthz``, ``GET /openapi.json``, ``GET /docs``: open (no token).
* ``GET /metrics``: Prometheus text format (needs a token: it tells traffic volumes).

Decisions:

* Every lookup *outcome* is ``200``: ``matched``, ``not_found``, ``inconclusive`` and
  ``api_error`` are answers about the number; the ``status`` field says which.
* Every error is ``application/problem+json`` (:mod:`lookup.service.problems`), with the request
  id as ``instance``; a 422 names the offending fields and never echoes the body.
* Fairness: each caller (its token's ``caller_name``, or the peer without tokens) is its own fair-share
  group of the checker, and may have at most ``service_max_queued`` lookups running or
  queued (a batch counts as the lookups it runs at once); beyond that, 429 with
  ``Retry-After``.
* The audit line of a lookup names the caller and the request id, never the token.
* One checker and one order-API session serve every request. On shutdown in-flight
  requests get :data:`SHUTDOWN_GRACE` seconds, requests that still arrive get 503; a
  client that disconnects cancels its lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import ValidationError

from lookup import __version__
from lookup.domain.errors import (
    ConfigError,
    InputError,
    TooManyQueuedError,
)
from lookup.domain.segments import SegmentDB
from lookup.engine.batch import BatchRow, RowResult, run_batch
from lookup.engine.checker import Checker
from lookup.orders.base import OrderApi
from lookup.runtime.engine import open_engine
from lookup.runtime.lookups import LookupPath
from lookup.runtime.regions import region_sink
from lookup.runtime.settings import Settings
from lookup.service import schemas as ops
from lookup.service.body import json_body
from lookup.service.desk import REVEALS, is_open_path, setup_web
from lookup.service.http import (
    MIN_TOKEN_LENGTH,
    ProblemError,
    auth_middleware,
    check_exposure,
    is_loopback,
    problems_middleware,
    request_id_middleware,
)
from lookup.service.listen import listen
from lookup.service.lookups import (
    LOOKUPS,
    Lookups,
    audit_caller,
    caller_of,
    input_problem,
    post_lookup,
    post_stream,
    too_many,
)
from lookup.service.metrics import ServiceMetrics
from lookup.service.openapi import (
    DOCS_CSP,
    add_operation,
    described,
    docs_page,
    openapi_document,
)
from lookup.service.problems import FieldProblem, field_problems
from lookup.service.schemas import (
    BatchBody,
    BatchItem,
    BatchRequest,
    BatchResponse,
    BatchResult,
    Health,
    LookupRequest,
)

__all__ = [
    "BATCH_LOOKUPS_IN_FLIGHT",
    "MIN_TOKEN_LENGTH",
    "SHUTDOWN_GRACE",
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "BatchResult",
    "Health",
    "LookupRequest",
    "check_exposure",
    "create_app",
    "is_loopback",
    "openapi",
    "serve",
    "serving",
]

BATCH_LOOKUPS_IN_FLIGHT: Final = 8
"""Lookups of one batch request at once (their checks share the service's checker)."""
SHUTDOWN_GRACE: Final = 10.0
"""Seconds in-flight requests get to finish on shutdown before they are cancelled."""
OPEN_PATHS: Final = frozenset({"/healthz", "/openapi.json", "/docs"})
_PLANS: Final = 256
"""Plans kept for repeated lookups: planning a 10,000-segment mask costs ~1 ms of CPU, most
of a cached lookup's; a plan is immutable and holds at most a few thousand small ints."""

log = logging.getLogger("lookup.service")


# -- state -----------------------------------------------------------------------------------


@dataclass
class _State:
    settings: Settings
    db: SegmentDB
    metrics: ServiceMetrics = field(init=False)
    checker: Checker | None = None
    path: LookupPath | None = None
    description: str = ""
    stopping: bool = False

    def __post_init__(self) -> None:
        self.metrics = ServiceMetrics(lambda: self.checker, lambda: self.db.version)

    def ready_path(self) -> LookupPath:
        if self.path is None:  # pragma: no cover - routes run only after startup
            raise ProblemError(
                "unavailable", "the service is starting", headers={"Retry-After": "1"}
            )
        return self.path


_STATE: Final = web.AppKey("lookup_service_state", _State)


# -- helpers ---------------------------------------------------------------------------------


async def _post_batch(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    batch: BatchBody = await json_body(request, BatchBody, state.settings.service_read_timeout)
    limit = state.settings.service_max_batch
    if len(batch.lookups) > limit:
        raise ProblemError(
            "too-large",
            f"{len(batch.lookups):,} lookups in one batch; at most {limit:,}: split it",
        )
    path = state.ready_path()
    try:
        cap = path.cap(batch.max_candidates)
    except InputError as exc:
        raise input_problem(exc) from None
    rows: list[BatchRow] = []
    problems: dict[int, list[FieldProblem]] = {}
    for n, data in enumerate(batch.lookups, 1):
        try:
            item = BatchItem.model_validate(data)
        except ValidationError as exc:
            errors = problems[n] = field_problems(exc, prefix=f"lookups.{n - 1}")
            reason = "; ".join(f"{e.field}: {e.message}" for e in errors)
            rows.append(BatchRow(row=n, problem=reason))
        else:
            rows.append(BatchRow(row=n, **item.model_dump()))
    results: list[BatchResult | None] = [None] * len(rows)

    def on_result(result: RowResult) -> None:
        results[result.row - 1] = BatchResult(
            **result.model_dump(), errors=problems.get(result.row)
        )

    caller = caller_of(request)
    runnable = len(rows) - len(problems)
    at_once = min(BATCH_LOOKUPS_IN_FLIGHT, state.settings.service_max_queued, runnable)

    async def lookup(row: BatchRow) -> RowResult:
        return await path.row(row, caller=caller, surface="service_batch", mode=batch.mode,
                              audit_caller=audit_caller(caller), max_candidates=cap)  # fmt: skip

    try:
        with path.admit(caller, at_once, surface="service_batch"):
            summary = await run_batch(
                rows, checker=path.checker, lookups_in_flight=max(at_once, 1),
                mode=batch.mode, on_result=on_result, lookup=lookup,
            )  # fmt: skip
    except TooManyQueuedError as exc:
        raise too_many(exc) from None
    done = [r for r in results if r is not None]
    answer = BatchResponse(results=done, summary=summary)
    return web.Response(
        text=answer.model_dump_json(exclude_none=True), content_type="application/json"
    )


async def _get_segment(request: web.Request) -> web.Response:
    seven = request.match_info["seven"]
    if not (len(seven) == 7 and seven.isascii() and seven.isdigit()):
        raise ProblemError(
            "invalid-input",
            "a segment is the first 7 digits of a mobile number, e.g. /v1/segments/1380571",
            errors=[FieldProblem(field="seven", message="7 ASCII digits")],
            kind="UnknownRegionError",
        )
    info = request.app[_STATE].db.segment(seven)
    if info is None:
        raise ProblemError("not-found", f"no segment {seven} in the numbering plan")
    return _json(info.as_dict())


async def _get_health(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    checker = state.checker
    health = Health(
        status="stopping" if state.stopping else "ok",
        data_version=state.db.version,
        breaker=checker.breaker_state if checker is not None else "closed",
        checker=checker.status().text if checker is not None else None,
    )
    return _json(health.model_dump(exclude_none=True))


async def _get_metrics(request: web.Request) -> web.Response:
    accept = request.headers.get("Accept", "")
    body, kind = request.app[_STATE].metrics.exposition(accept)
    return web.Response(body=body, headers={"Content-Type": kind, "Vary": "Accept"})


_OPENAPI: Final = web.AppKey("lookup_openapi", dict[str, Any])
"""The document, filled in when the app starts (every route is added by then)."""


async def _get_openapi(request: web.Request) -> web.Response:
    return _json(request.app[_OPENAPI])


async def _get_docs(request: web.Request) -> web.Response:
    return web.Response(
        text=docs_page(request.app[_OPENAPI]),
        content_type="text/html",
        headers={"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"},
    )


def _json(payload: object) -> web.Response:
    return web.Response(
        text=json.dumps(payload, ensure_ascii=False), content_type="application/json"
    )


# -- the app ---------------------------------------------------------------------------------


def create_app(
    settings: Settings,
    *,
    api: OrderApi | None = None,
    checker: Checker | None = None,
    worker: str | None = None,
) -> web.Application:
    """The service as an aiohttp application.

    Without ``api`` or ``checker`` the order API of ``settings`` is opened when the app
    starts (``open_engine``) and closed when it stops. An injected ``api`` (tests: a
    ``FakeOrderApi``) gets a checker with the settings' limits and is not closed; an
    injected ``checker`` is used as is (its latencies then miss the histogram).

    ``worker`` (a gunicorn worker's pid, ``--workers N``): ``/metrics`` says which worker
    answered, a stopping worker still serves the requests it already received (the
    port stays open on the others, so no client is told to go elsewhere), and the jobs
    folder is shared with the other workers (:mod:`lookup.service.jobshare`).

    :raises ConfigError: see :func:`check_exposure`.
    """
    check_exposure(settings)
    tokens = tuple(t.get_secret_value().encode() for t in settings.service_tokens)
    if not tokens:
        log.warning(
            "no service tokens configured: authentication is OFF (allowed on loopback only)"
        )
    state = _State(settings=settings, db=SegmentDB.default())
    if worker is not None:
        state.metrics.worker_info(worker)
    middlewares: list[Middleware] = [request_id_middleware(state.metrics), problems_middleware]
    if tokens:
        middlewares.append(auth_middleware(tokens, OPEN_PATHS, is_open_path))
    if worker is None:
        middlewares.append(_refuse_when_stopping)
    app = web.Application(client_max_size=settings.service_max_body, middlewares=middlewares)
    app[_STATE] = state
    app[_OPENAPI] = {}

    async def document(app: web.Application) -> None:
        app[_OPENAPI].update(openapi(app))

    async def order_api(app: web.Application) -> AsyncIterator[None]:
        if checker is not None:
            state.checker, state.description = checker, "injected checker"
            state.path = _path(settings, state)
            yield
        else:
            async with open_engine(settings, api=api, on_latency=state.metrics.on_latency) as e:
                state.checker, state.description = e.checker, e.description
                state.path = _path(settings, state)
                yield
        state.checker = state.path = None

    async def stopping(app: web.Application) -> None:
        state.stopping = True

    app.cleanup_ctx.append(order_api)
    app.on_shutdown.append(stopping)
    app[LOOKUPS] = Lookups(path=lambda: state.path, read_timeout=settings.service_read_timeout,
                           reveal=lambda caller, result: app[REVEALS](caller, result))  # fmt: skip
    for op, handler in (
        (ops.LOOKUP, post_lookup), (ops.STREAM, post_stream), (ops.BATCH, _post_batch),
        (ops.SEGMENT, _get_segment), (ops.HEALTH, _get_health), (ops.METRICS, _get_metrics),
        (ops.OPENAPI, _get_openapi), (ops.DOCS, _get_docs),
    ):  # fmt: skip
        add_operation(app, op, handler)
    setup_web(app, settings, checker=lambda: state.checker, caller=caller_of, db=state.db,
              path=lambda: state.path, shared_jobs=worker is not None)  # fmt: skip
    app.on_startup.append(document)
    return app


def openapi(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s routes (what ``/openapi.json`` answers once it
    started), with this service's caps as maximums.

    :raises UndescribedRouteError: a route was added without its operation.
    """
    settings = app[_STATE].settings
    doc = openapi_document(
        described(app), title="lookup service", version=__version__,
        description="Finds the order behind a masked Chinese mobile number, tier by tier.",
    )  # fmt: skip
    schemas = doc["components"]["schemas"]
    for model in ("LookupRequest", "BatchRequest"):
        for branch in schemas[model]["properties"]["max_candidates"].get("anyOf", ()):
            if branch.get("type") == "integer":
                branch["maximum"] = settings.max_candidates
    schemas["BatchRequest"]["properties"]["lookups"]["maxItems"] = settings.service_max_batch
    return doc


def _path(settings: Settings, state: _State) -> LookupPath:
    """The service's one lookup path over its checker (every route's lookups go through it)."""
    assert state.checker is not None
    return LookupPath(
        state.checker, state.db, max_candidates=settings.max_candidates,
        max_queued=settings.service_max_queued, secrets=settings.secret_values(),
        metrics=state.metrics, regions=region_sink(settings, state.checker),
    )  # fmt: skip


@web.middleware
async def _refuse_when_stopping(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.app[_STATE].stopping and request.path not in OPEN_PATHS:
        raise ProblemError(
            "unavailable", "the service is stopping: retry on another instance or shortly",
            headers={"Retry-After": "5"}, close=True,
        )  # fmt: skip
    response: web.StreamResponse = await handler(request)
    return response


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
    """Serve ``app`` on ``host:port`` (0: a free port; ``[::1]`` is fine) and yield its URL.

    Stopping closes the listening socket, gives in-flight requests ``shutdown_timeout``
    seconds, cancels what is left, then runs the app's cleanup (the order-API session).
    Headers and bodies must arrive within the settings' ``service_read_timeout``.

    :raises OSError: the address cannot be bound.
    """
    timeout = app[_STATE].settings.service_read_timeout
    async with listen(
        app, host, port, shutdown_timeout=shutdown_timeout, read_timeout=timeout
    ) as url:
        yield url


# -- the command -----------------------------------------------------------------------------


async def serve(settings: Settings, out: TextIO) -> None:
    """Serve until SIGINT or SIGTERM, saying where on ``out``.

    :raises ConfigError: the address cannot be bound.
    """
    app = create_app(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    host, port = settings.service_host, settings.service_port
    listening = False
    try:
        async with serving(app, host, port) as url:
            listening = True
            out.write(f"lookup service listening on {url} (order API: {_description(app)})\n")
            out.flush()
            await stop.wait()
            log.info("stopping: in-flight requests get %.0f s to finish", SHUTDOWN_GRACE)
    except OSError as exc:
        if listening:
            raise
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"cannot listen on {host} port {port}: {reason}; pick a free --port, or a "
            "--host address of this machine (e.g. 127.0.0.1, ::1, 0.0.0.0)"
        ) from None
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
