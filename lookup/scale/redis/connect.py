"""One quota shared by many processes, through Redis (the ``[redis]`` extra).

Every process that opens a quota on the same Redis for the same order-API identity shares:
the rate budget (GCRA in one Lua script: evenly spaced starts, no burst beyond the
configured rate), the adaptive rate (a throttle seen by one process lowers everyone's),
the ``Retry-After`` pause, the circuit breaker (one open is everyone's; one probe in all),
the outcome cache and single flight of identical checks. Keys are namespaced by a hash of
the API identity, never the URL or a credential; numbers appear only as HMACs.

>>> async with open_quota(url, identity="http GET https://api/o?p={phone}",  # doctest: +SKIP
...                       limits=limits) as quota:
...     checker = Checker(api, limits, quota=quota)

See :mod:`lookup.scale.redis.quota` for what happens when Redis goes away during a run.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from lookup.domain.errors import ConfigError
from lookup.domain.models import Limits
from lookup.domain.privacy import redact_url

if TYPE_CHECKING:
    from lookup.scale.redis.quota import RedisQuota

__all__ = ["INSTALL_HINT", "SCHEMES", "namespace_of", "open_quota", "secret_of"]

INSTALL_HINT = "pip install '.[redis]'"
SCHEMES = ("redis://", "rediss://", "unix://")


def namespace_of(identity: str) -> str:
    """The key namespace of an API identity (method + URL template without credentials,
    a plug-in name, a DSN without password): 16 hex digits of a SHA-256."""
    return hashlib.sha256(b"lookup-quota-v1\0" + identity.encode()).hexdigest()[:16]


def secret_of(identity: str, credentials: str = "") -> bytes:
    """The HMAC key for numbers in keys: from the identity *and* its credentials, so that
    neither Redis nor a reader of its keys holds what it takes to test a number."""
    return hashlib.sha256(b"lookup-keys-v1\0" + f"{identity}\0{credentials}".encode()).digest()


@asynccontextmanager
async def open_quota(
    url: str,
    *,
    identity: str,
    limits: Limits,
    credentials: str = "",
    fallback_rate: float | None = None,
    processes: int = 2,
    connect_timeout: float = 1.0,
) -> AsyncIterator[RedisQuota]:
    """Connect to the Redis at ``url`` and yield the quota of ``identity`` under ``limits``
    (``max_per_second`` is the shared ceiling; ``cache_ttl`` the shared cache's, 0: none).

    :raises ConfigError: the ``redis`` package is missing, the URL is not a Redis URL, or
        Redis does not answer now (at start, an unreachable Redis is an error, not a
        fallback).
    """
    shown = redact_url(url)
    if not url.startswith(SCHEMES):
        raise ConfigError(
            f"--shared {shown} is not a Redis URL: use redis://HOST:PORT/DB "
            "(or rediss://, unix://)"
        )
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import AuthenticationError, RedisError
    except ImportError:
        raise ConfigError(f"--shared needs the redis package: {INSTALL_HINT}") from None
    from lookup.scale.redis.link import DOWN, down_reason
    from lookup.scale.redis.quota import RedisQuota

    try:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=limits.max_in_flight + 8,
            timeout=5.0,
            socket_timeout=max(connect_timeout, 1.0),
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 1),  # one reconnect after a dropped connection
        )
    except ValueError as exc:
        raise ConfigError(f"--shared {shown} is not a valid Redis URL ({exc})") from None
    client = Redis(connection_pool=pool)
    try:
        quota = RedisQuota(
            client,
            url,
            namespace=namespace_of(identity),
            secret=secret_of(identity, credentials),
            ceiling=limits.max_per_second,
            fallback_rate=fallback_rate,
            processes=processes,
            cache_ttl=limits.cache_ttl,
            breaker_cooldown=limits.breaker_cooldown,
        )
        try:
            await client.ping()
            await quota.start()
        except AuthenticationError:
            raise ConfigError(
                f"the shared quota at {shown} refused the credentials: check the password "
                "in the URL (redis://:PASSWORD@HOST:PORT/DB)"
            ) from None
        except DOWN as exc:
            raise ConfigError(
                f"cannot reach the shared quota at {shown} ({down_reason(exc)}): "
                "start Redis or leave out --shared"
            ) from None
        except RedisError as exc:
            raise ConfigError(
                f"the shared quota at {shown} cannot serve the quota ({down_reason(exc)}): "
                "it needs Redis 5 or later, writable"
            ) from None
        try:
            yield quota
        finally:
            await quota.aclose()
    finally:
        await client.aclose()
        await pool.disconnect()
