"""The shared breaker and the shared outcomes (cache + single flight) of a Redis quota.

Both ride on the quota's :class:`~lookup.scale.redis.quota.Link`: while Redis is away they
answer "decide locally" (breaker closed here, no shared answer, probe allowed), so the
checker's own breaker, cache and single flight carry on alone.

Outcome keys are ``lookup:{namespace}:o:{hmac}`` (the answer) and ``...:f:{hmac}`` (a
flight's claim), where ``hmac`` is HMAC-SHA256 of the number under a secret derived from
the API identity and its credentials: never the number, and not a plain hash that a
list of every number would reverse. Values hold only ``has_orders`` and the order count.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from lookup.domain.models import CheckOutcome
from lookup.scale.redis import scripts
from lookup.scale.redis.link import Link

__all__ = ["CLAIM_TTL", "FLIGHT_WAIT", "PROBE_TTL", "RedisBreaker", "RedisOutcomes"]

PROBE_TTL = 15.0
"""Seconds a half-open probe's claim lasts if its process dies before the answer."""
CLAIM_TTL = 30.0
"""Seconds a flight's claim lasts if its process dies (or gives up) before the answer."""
FLIGHT_WAIT = 30.0
"""Seconds a process waits for another's flight before checking the number itself."""
FLIGHT_POLL = 0.05
"""Seconds between looks at another process's flight (bounded by ``FLIGHT_WAIT``)."""


class RedisQuota(Protocol):
    """What the shared breaker and outcomes read of their :class:`~.quota.RedisQuota`."""

    namespace: str
    key: str
    link: Link

    @property
    def away(self) -> bool: ...

    def clock(self) -> float: ...

    def args(self, *first: object) -> list[Any]: ...


class RedisBreaker:
    """:class:`~lookup.engine.policies.quota.SharedBreaker` in the quota's hash (``bo``, ``bp``)."""

    def __init__(self, quota: RedisQuota, cooldown: float) -> None:
        self._quota = quota
        self._cooldown = cooldown
        self._open_until = -math.inf  # local clock

    def learn(self, open_for: float, now: float) -> None:
        """The shared breaker is open for ``open_for`` more seconds (``0``: not open)."""
        self._open_until = now + open_for if open_for > 0 else -math.inf

    def open_for(self) -> float:
        quota = self._quota
        if quota.away:
            return 0.0
        return max(0.0, self._open_until - quota.clock())

    async def _call(self, op: str, seconds: float) -> bool | None:
        quota = self._quota
        result = await quota.link.call(scripts.BREAKER, [quota.key], quota.args(op, seconds))
        if result is None:
            return None
        self.learn(float(result[1]), quota.clock())
        return bool(int(result[0]))

    async def opened(self, cooldown: float, error: str) -> None:
        await self._call("open", cooldown)

    async def claim_probe(self) -> bool:
        granted = await self._call("claim", PROBE_TTL)
        return granted is None or granted  # away: this process decides alone

    async def closed(self) -> None:
        await self._call("close", 0.0)


class RedisOutcomes:
    """:class:`~lookup.engine.policies.quota.SharedOutcomes` in Redis: a TTL cache of answers and
    a claim per number being checked, that other processes wait on (bounded) instead of
    sending the same request."""

    def __init__(
        self,
        quota: RedisQuota,
        *,
        secret: bytes,
        cache_ttl: float,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._quota = quota
        self._secret = secret
        self._ttl_ms = max(1, round(cache_ttl * 1000))
        self._clock = clock
        self._sleep = sleep
        self._token = os.urandom(8).hex()
        self._held: dict[str, str] = {}  # phone -> the token of this process's claim
        self._serial = 0
        self.waited = 0  # claims that found another process's flight (for tests)

    def keys(self, phone: str) -> list[str]:
        """The outcome key and the flight key of ``phone`` (an HMAC, never the number)."""
        digest = hmac.new(self._secret, phone.encode(), hashlib.sha256).hexdigest()[:32]
        base = f"lookup:{self._quota.namespace}:"
        return [f"{base}o:{digest}", f"{base}f:{digest}"]

    async def claim(self, phone: str) -> CheckOutcome | None:
        link = self._quota.link
        if link.away:
            return None
        keys = self.keys(phone)
        self._serial += 1
        token = f"{self._token}.{self._serial}"
        give_up = self._clock() + FLIGHT_WAIT
        counted = False
        while True:
            result = await link.call(scripts.CLAIM, keys, [token, round(CLAIM_TTL * 1000)])
            if result is None:
                return None
            kind = int(result[0])
            if kind == 1:
                return _decode(phone, result[1])
            if kind == 2:
                self._held[phone] = token
                return None
            if not counted:
                self.waited += 1
                counted = True
            if self._clock() >= give_up:
                return None  # the other flight takes too long: check it ourselves
            await self._sleep(FLIGHT_POLL)

    async def publish(self, phone: str, outcome: CheckOutcome | None) -> None:
        token = self._held.pop(phone, "")
        if outcome is None and not token:
            return
        link = self._quota.link
        value = "" if outcome is None else _encode(outcome)
        await link.call(scripts.PUBLISH, self.keys(phone), [token, value, self._ttl_ms])


def _encode(outcome: CheckOutcome) -> str:
    return json.dumps({"h": outcome.has_orders, "n": outcome.order_count}, separators=(",", ":"))


def _decode(phone: str, raw: bytes | str) -> CheckOutcome:
    data = json.loads(raw)
    return CheckOutcome(phone=phone, has_orders=bool(data["h"]), order_count=data.get("n"))
