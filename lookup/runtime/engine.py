"""Opening the engine that settings describe: the order API and its checker.

:func:`open_engine` is the one place that wires an :class:`~lookup.orders.base.OrderApi`
to a :class:`~lookup.engine.checker.Checker`; the CLI, batch runs and the service all use it.
``api_url = "demo"`` starts the bundled mock order API on a free loopback port with the
synthetic demo orders, for as long as the context lasts. A ``postgresql://`` (or
``postgres://``) URL opens the PostgreSQL order source (the ``[postgres]`` extra).
With ``shared_url`` the checker paces by a quota in Redis shared with every process of
the same API identity (:mod:`lookup.scale.redis`, the ``[redis]`` extra).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from lookup.domain.errors import ConfigError
from lookup.domain.models import Limits
from lookup.domain.privacy import redact_url, url_secrets
from lookup.engine.checker import Checker
from lookup.engine.policies.quota import Quota
from lookup.orders.base import OrderApi
from lookup.orders.postgres import is_postgres_url
from lookup.runtime.settings import Settings

log = logging.getLogger("lookup.shared")

__all__ = ["DEMO", "Engine", "OpenedApi", "api_identity", "open_api", "open_engine"]

DEMO = "demo"
# The bundled mock runs on this machine's loopback: no need to be gentle with it.
DEMO_MAX_IN_FLIGHT = 64
_PLUGIN_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")  # package.module:attr


@dataclass(frozen=True)
class OpenedApi:
    """An open order API with the limits to use against it and a description for humans."""

    api: OrderApi
    limits: Limits
    description: str


@asynccontextmanager
async def open_api(settings: Settings) -> AsyncIterator[OpenedApi]:
    """Open the order API of ``settings`` (URL, ``demo`` or plug-in); close it on exit.

    With ``demo``, the limits the operator did not set (on the command line, in the
    environment or the config file) are lifted: the mock is ours and on loopback.
    """
    limits = settings.limits()
    async with AsyncExitStack() as stack:
        if settings.api_plugin:
            from lookup.orders.plugin import load_plugin

            api = load_plugin(settings.api_plugin, call_timeout=settings.total_timeout)
            await stack.enter_async_context(api)
            description = f"plug-in {settings.api_plugin}"
        elif settings.api_url and is_postgres_url(settings.api_url):
            from lookup.orders.postgres import PostgresOrderApi

            pg = PostgresOrderApi(
                settings.api_url,
                sql=settings.sql,
                table=settings.sql_table,
                column=settings.sql_column,
                pool_size=limits.max_in_flight,
                statement_timeout=settings.read_timeout,
                connect_timeout=settings.connect_timeout,
            )
            api = await stack.enter_async_context(pg)
            query = "custom SQL" if settings.sql else f"{settings.sql_table}.{settings.sql_column}"
            description = f"PostgreSQL orders at {pg.url} ({query})"
        elif settings.api_url:
            if _PLUGIN_SPEC.fullmatch(settings.api_url.strip()):
                raise ConfigError(
                    f"--api takes a URL; {settings.api_url.strip()!r} looks like a plug-in: "
                    "pass it as --api-plugin (LOOKUP_API_PLUGIN)"
                )
            from lookup.orders.http import HttpOrderApi, Timeouts

            url, batch_url = settings.api_url, settings.batch_url
            description = "order API " + redact_url(url.split("?")[0])
            if url == DEMO:
                from lookup.mockapi.server import MockOrderServer

                server = await stack.enter_async_context(MockOrderServer())
                url, batch_url = server.orders_url, server.batch_url
                description = f"bundled demo order API at {server.url} (synthetic orders)"
                given = settings.model_fields_set
                lifted = {
                    "max_in_flight": DEMO_MAX_IN_FLIGHT,
                    "max_per_second": None,
                    "start_rate": None,  # no slow start against our own mock
                }
                if "max_in_flight" in given:
                    del lifted["max_in_flight"]
                if "rate" in given:
                    del lifted["max_per_second"], lifted["start_rate"]
                limits = limits.model_copy(update=lifted)
            api = HttpOrderApi(
                url,
                method=settings.api_method,
                headers=settings.headers(),
                hit_field=settings.hit_field,
                batch_url=batch_url,
                throttled_when=settings.throttled_when,
                timeouts=Timeouts(
                    connect=settings.connect_timeout,
                    read=settings.read_timeout,
                    total=settings.total_timeout,
                ),
                max_connections=max(settings.max_connections, limits.max_in_flight),
            )
            await stack.enter_async_context(api)
        else:
            raise ConfigError(
                "no order API configured: pass --api URL (a template with {phone}), "
                "--api demo (the bundled mock), --api postgresql://USER@HOST:PORT/DB, or "
                "--api-plugin package.module:attr; "
                "or set LOOKUP_API_URL"
            )
        yield OpenedApi(api=api, limits=limits, description=description)


@dataclass(frozen=True)
class Engine:
    """An open order API, the one checker in front of it, its limits and a description."""

    api: OrderApi
    checker: Checker
    limits: Limits
    description: str


@asynccontextmanager
async def open_engine(
    settings: Settings,
    *,
    api: OrderApi | None = None,
    on_latency: Callable[[float, str], None] | None = None,
    quota: Quota | None = None,
    one_lookup: bool = False,
) -> AsyncIterator[Engine]:
    """Open the order API of ``settings`` and the :class:`Checker` every lookup shares.

    ``api``: use this adapter instead of the one ``settings`` describe (it is neither
    entered nor closed here; the settings' limits apply). ``on_latency(seconds, outcome)``
    is called for every request the checker sends (the service's histogram).
    ``quota``: pace by this shared budget instead of the settings' (a Ray batch's token
    actor); ``settings.shared_url`` is then not used. ``one_lookup``: the checker serves one
    lookup only (``lookup find``), which never asks a number twice: no outcome cache and
    no single flight in this process (a shared quota's still answer).

    >>> async with open_engine(settings) as engine:  # doctest: +SKIP
    ...     result = await find("138****1234", checker=engine.checker)
    """
    if api is not None:
        limits = settings.limits()
        async with _shared_quota(settings, limits, quota) as paced_by:
            checker = Checker(api, limits, on_latency=on_latency, quota=paced_by,
                              one_lookup=one_lookup)  # fmt: skip
            description = f"injected {type(api).__name__}" + _shared_text(settings)
            yield Engine(api, checker, limits, description)
        return
    async with (
        open_api(settings) as opened,
        _shared_quota(settings, opened.limits, quota) as paced_by,
    ):
        checker = Checker(opened.api, opened.limits, on_latency=on_latency, quota=paced_by,
                          one_lookup=one_lookup)  # fmt: skip
        description = opened.description + _shared_text(settings)
        yield Engine(opened.api, checker, opened.limits, description)


def api_identity(settings: Settings) -> tuple[str, str]:
    """What names the order API for a shared quota, and its credentials, kept apart.

    The identity (method and URL template with credentials redacted, a DSN without its
    password and the query, a plug-in's name) picks the quota's namespace: processes with
    the same one share a budget. The credentials only key the hashes of numbers.
    """
    if settings.api_plugin:
        identity = f"plugin {settings.api_plugin}"
    elif settings.api_url and is_postgres_url(settings.api_url):
        query = settings.sql or f"{settings.sql_table}.{settings.sql_column}"
        identity = f"postgresql {redact_url(settings.api_url)} {query}"
    else:
        identity = f"http {settings.api_method} {redact_url(settings.api_url or '')}"
        if settings.batch_url:
            identity += f" batch {redact_url(settings.batch_url)}"
    credentials = json.dumps(sorted(set(settings.secret_values()) - set(
        url_secrets(settings.shared_url or ""))))  # fmt: skip
    return identity, credentials


@asynccontextmanager
async def _shared_quota(settings: Settings, limits: Limits,
                        given: Quota | None = None) -> AsyncIterator[Quota | None]:  # fmt: skip
    if given is not None or not settings.shared_url:
        yield given
        return
    from lookup.scale.redis.connect import open_quota

    identity, credentials = api_identity(settings)
    if credentials == "[]":  # nothing secret: anyone reading Redis could hash the candidates
        if limits.cache_ttl > 0:
            log.info(
                "the shared outcome cache is off: with no API credentials and no "
                "LOOKUP_SHARED_SECRET its keys could be recomputed by whoever reads Redis "
                "(the quota, breaker and this process's own cache still work)"
            )
        limits = limits.model_copy(update={"cache_ttl": 0.0})
    async with open_quota(
        settings.shared_url,
        identity=identity,
        credentials=credentials,
        limits=limits,
        fallback_rate=settings.shared_fallback_rate,
        processes=settings.shared_processes,
        connect_timeout=min(settings.connect_timeout, 2.0),
    ) as quota:
        yield quota


def _shared_text(settings: Settings) -> str:
    if not settings.shared_url:
        return ""
    return f"; quota shared through {redact_url(settings.shared_url)}"
