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
    sending the same request.

    The claims and answers of one turn of the event loop go to Redis as one script call
    (:data:`~lookup.scale.redis.scripts.OUTCOMES`); a publish does not wait for it (it
    goes on the loop's next turn; :meth:`flush` waits for what is on its way)."""

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
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._base = f"lookup:{quota.namespace}:"
        self._claim_ms = round(CLAIM_TTL * 1000)
        self._ttl_ms = max(1, round(cache_ttl * 1000))
        self._clock = clock
        self._sleep = sleep
        self._token = os.urandom(8).hex()
        self._held: dict[str, tuple[str, str]] = {}  # phone -> its digest, its claim's token
        self._serial = 0
        self._claims: list[tuple[str, asyncio.Future[Any]]] = []
        self._answers: list[str] = []  # digest, token, answer, ...
        self._due = False  # a send is scheduled on the loop's next turn
        self._sending: set[asyncio.Task[None]] = set()
        self.waited = 0  # claims that found another process's flight (for tests)

    def digest(self, phone: str) -> str:
        """What stands for ``phone`` in keys (an HMAC, never the number)."""
        mac = self._mac.copy()
        mac.update(phone.encode())
        return mac.hexdigest()[:32]

    def keys(self, phone: str) -> list[str]:
        """The outcome key and the flight key of ``phone``."""
        digest = self.digest(phone)
        return [f"{self._base}o:{digest}", f"{self._base}f:{digest}"]

    async def claim(self, phone: str) -> CheckOutcome | None:
        if self._quota.away:
            return None
        digest = self.digest(phone)
        give_up = -1.0
        while True:
            found = await self._claim(digest)
            if found is None:
                return None
            result, token = found
            if isinstance(result, bytes | str):
                return _decode(phone, result)
            if int(result) == 2:
                self._held[phone] = (digest, token)
                return None
            if give_up < 0:
                self.waited += 1
                give_up = self._clock() + FLIGHT_WAIT
            elif self._clock() >= give_up:
                return None  # the other flight takes too long: check it ourselves
            await self._sleep(FLIGHT_POLL)

    def _claim(self, digest: str) -> asyncio.Future[Any]:
        found: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._claims.append((digest, found))
        if not self._due:
            self._schedule()
        return found

    async def publish(self, phone: str, outcome: CheckOutcome | None) -> None:
        held = self._held.pop(phone, None)
        if outcome is None and held is None:
            return
        digest, token = held if held is not None else (self.digest(phone), "")
        self._answers += (digest, token, "" if outcome is None else _encode(outcome))
        if not self._due:
            self._schedule()

    async def flush(self) -> None:
        """Wait for the claims and answers on their way to Redis."""
        while self._sending or self._claims or self._answers:
            if self._claims or self._answers:
                self._send()
            await asyncio.wait(set(self._sending))

    def _schedule(self) -> None:
        self._due = True
        asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._due = False
        task = asyncio.ensure_future(self._sync())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _sync(self) -> None:
        claims, self._claims = self._claims, []
        answers, self._answers = self._answers, []
        if not claims and not answers:
            return
        self._serial += 1
        token = f"{self._token}.{self._serial}"
        args: list[Any] = [self._base, self._claim_ms, self._ttl_ms, len(answers) // 3,
                           *answers, token]  # fmt: skip
        args += [digest for digest, _ in claims]
        try:
            result = await self._quota.link.call(scripts.OUTCOMES, [], args)
        except asyncio.CancelledError:
            for _, found in claims:
                found.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - each claimer raises it; the task ends quietly
            for _, found in claims:
                if not found.done():
                    found.set_exception(exc)
            return
        for i, (_, found) in enumerate(claims):
            if not found.done():
                found.set_result(None if result is None else (result[i], token))


def _encode(outcome: CheckOutcome) -> str:
    """``has_orders`` and the order count, as ``1:3`` (``0:`` no orders, count unknown)."""
    count = "" if outcome.order_count is None else str(outcome.order_count)
    return f"{int(outcome.has_orders)}:{count}"


def _decode(phone: str, raw: bytes | str) -> CheckOutcome:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text.startswith("{"):  # written as JSON by an earlier version
        data = json.loads(text)
        return CheckOutcome(phone=phone, has_orders=bool(data["h"]), order_count=data.get("n"))
    has, _, count = text.partition(":")
    return CheckOutcome(phone=phone, has_orders=has == "1", order_count=int(count) if count
                        else None)  # fmt: skip
