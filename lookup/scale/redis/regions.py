"""The learned region counts in Redis, beside the quota (``--shared`` with ``--learn-regions``).

One hash per API namespace, ``lookup:{namespace}:regions``, a field per region label (a
city name, never a number): ``HINCRBY`` by one for each matched lookup, ``HGETALL`` at most
every few seconds per process. Every process of the same order API shares the counts, and
they outlive any one of them. Redis away: the counts last read stay in use, and a hit that
cannot be counted is skipped (logged once per outage), never an error of the lookup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis

from lookup.domain.order import DEFAULT_LEARN_THRESHOLD
from lookup.files.regions import REFRESH_EVERY, RegionSink, is_label
from lookup.scale.redis.link import UNUSABLE, down_reason

__all__ = ["RedisRegionCounts", "regions_key"]

log = logging.getLogger("lookup.regions")


def regions_key(namespace: str) -> str:
    """The hash of a namespace's region counts."""
    return f"lookup:{namespace}:regions"


class RedisRegionCounts(RegionSink):
    """Hits per region in a Redis hash shared by every process of one order API.

    :param client: a ``redis.asyncio.Redis`` (owned by the caller: the quota's).
    :param namespace: the quota's namespace (a hash of the API identity).
    """

    def __init__(self, client: Redis, namespace: str, *,
                 threshold: int = DEFAULT_LEARN_THRESHOLD, ttl: float = REFRESH_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__(threshold=threshold, ttl=ttl, clock=clock)
        self._client = client
        self.key = regions_key(namespace)
        self._away = False

    async def counts(self) -> dict[str, int]:
        """The shared counts now (read at once, no cache)."""
        return await self._read()

    async def _read(self) -> dict[str, int]:
        try:
            raw = await self._client.hgetall(self.key)
        except UNUSABLE as exc:
            self._went_away(exc, "reading")
            return dict(self._known)
        self._away = False
        counts: dict[str, int] = {}
        for k, v in raw.items():
            label = k.decode(errors="replace") if isinstance(k, bytes) else str(k)
            try:
                n = int(v)
            except ValueError:
                continue
            if is_label(label) and n > 0:
                counts[label] = n
        return counts

    async def _add(self, label: str) -> bool:
        try:
            await self._client.hincrby(self.key, label, 1)
        except UNUSABLE as exc:
            self._went_away(exc, "counting a hit in")
            return False
        self._away = False
        return True

    def _went_away(self, exc: BaseException, doing: str) -> None:
        if not self._away:
            self._away = True
            log.warning("%s the shared region counts failed (%s): going on with the counts "
                        "last read", doing.capitalize(), down_reason(exc))  # fmt: skip
