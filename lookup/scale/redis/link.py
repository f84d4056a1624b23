"""The link to Redis: its client, its scripts, and whether Redis answers now (the fallback
state every shared policy reads)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lookup.domain.privacy import redact_url

__all__ = ["DOWN", "RETRY_EVERY", "UNUSABLE", "Link", "down_reason"]

log = logging.getLogger("lookup.shared")

RETRY_EVERY = 1.0
"""Seconds between tries to reach Redis again while away."""

DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    asyncio.TimeoutError,
)
"""What "Redis is away" looks like to the client."""
UNUSABLE: tuple[type[BaseException], ...] = (*DOWN, RedisError)
"""What makes this process decide alone during a run: Redis away, or refusing the scripts
(out of memory, a read-only replica): pacing alone is safe, failing every check is not."""


def down_reason(exc: BaseException) -> str:
    """A short reason for a Redis connection failure (no addresses beyond the URL's)."""
    text = str(exc).lower()
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    if "refused" in text or "error 111 " in text or "connect call failed" in text:
        return "connection refused"
    if isinstance(exc, RedisTimeoutError | asyncio.TimeoutError) or "timed out" in text:
        return "timed out"
    if "reset" in text or "closed" in text:
        return "connection lost"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return first[:120]


class Link:
    """The client, its scripts, and whether Redis is reachable now (the fallback state).

    :meth:`call` runs a script; ``None`` means "Redis is away: decide locally".
    """

    def __init__(
        self,
        client: Redis,
        url: str,
        *,
        clock: Callable[[], float],
        on_away: Callable[[], None],
        on_back: Callable[[], None],
        fallback_text: Callable[[], str] = lambda: "pacing this process alone",
    ) -> None:
        self.client = client
        self._fallback_text = fallback_text
        self.shown = redact_url(url)
        self._clock = clock
        self._on_away = on_away
        self._on_back = on_back
        self.away = False
        self._last_try = -math.inf
        self.outages = 0
        self.calls = 0  # round trips made (for tests and the bench)
        self._scripts: dict[str, AsyncScript] = {}

    def script(self, source: str) -> AsyncScript:
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    async def call(self, source: str, keys: list[str], args: list[Any]) -> Any | None:
        if self.away:
            now = self._clock()
            if now - self._last_try < RETRY_EVERY:
                return None
            self._last_try = now  # one try a second, whoever makes it
        self.calls += 1
        try:
            result = await self.script(source)(keys=keys, args=args)
        except UNUSABLE as exc:
            self._went_away(exc)
            return None
        if self.away:
            self.away = False
            log.info("shared quota at %s is reachable again: pacing by the shared budget",
                     self.shown)  # fmt: skip
            self._on_back()
        return result

    def _went_away(self, exc: BaseException) -> None:
        self._last_try = self._clock()
        if self.away:
            return
        self.away = True
        self.outages += 1
        self._on_away()
        log.warning("shared quota at %s unreachable (%s): %s; retrying every %.0f s",
                    self.shown, down_reason(exc), self._fallback_text(), RETRY_EVERY)  # fmt: skip
