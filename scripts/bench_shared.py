"""The shared limiter's cost per check against the local one, side by side.

One :class:`~lookup.engine.checker.Checker` over an in-process fake order API (no network, so only
the limiter's own work shows), 16 checks in flight, :data:`CHECKS` distinct numbers, a
ceiling too high to pace (1,000,000/s), on a fresh ``redis-server`` (loopback, temp folder):

* ``local``: the checker's own pacer (today's single-process path);
* ``shared, cache off``: ``--shared`` with ``cache_ttl=0``: one Redis round trip per check
  (the Lua GCRA reserve, which also reads the shared rate, pause and breaker);
* ``shared, cache on``: also the shared outcome cache and cross-process single flight
  (claim before, publish after: three round trips).

Wall µs per check and client CPU µs per check (this process: the checker, redis-py, the
loop; Redis's own CPU is not counted); "vs local" is the difference per check.

    python scripts/bench_shared.py        # also part of: python scripts/bench.py scale
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from _benchlib import table
from support.redis_fixture import RedisServer, find_redis

from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.orders import FakeOrderApi

CHECKS = 4_000
IN_FLIGHT = 16


async def _drive(checker: Checker, offset: int) -> tuple[float, float]:
    numbers = iter(f"138{offset + i:08d}" for i in range(CHECKS))

    async def worker() -> None:
        for phone in numbers:
            await checker.check(phone)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return (time.perf_counter() - wall) / CHECKS * 1e6, (time.process_time() - cpu) / CHECKS * 1e6


async def _measure(url: str) -> list[tuple[str, float, float]]:
    from lookup.scale.redis.connect import open_quota

    api = FakeOrderApi(lambda phone: False)
    out = []
    for name, ttl, shared in (("local", 0.0, False), ("shared, cache off", 0.0, True),
                              ("shared, cache on", 300.0, True)):  # fmt: skip
        limits = Limits(max_in_flight=IN_FLIGHT, max_per_second=1e6, cache_ttl=ttl)
        offset = len(out) * CHECKS  # fresh numbers: no cache hit anywhere
        if not shared:
            wall, cpu = await _drive(Checker(api, limits), offset)
        else:
            async with open_quota(url, identity=f"bench-{name}", limits=limits) as quota:
                wall, cpu = await _drive(Checker(api, limits, quota=quota), offset)
        out.append((name, wall, cpu))
    return out


def rows() -> list[list[str]]:
    binary = find_redis()
    if binary is None:
        return [["(no redis-server: apt-get install redis-server)", "", "", "", ""]]
    server = RedisServer(binary).start()
    try:
        measured = asyncio.run(_measure(server.url))
    finally:
        server.cleanup()
    base_wall, base_cpu = measured[0][1], measured[0][2]
    return [[name, f"{wall:,.1f}", f"{cpu:,.1f}", f"+{wall - base_wall:,.1f}",
             f"+{cpu - base_cpu:,.1f}"] for name, wall, cpu in measured]  # fmt: skip


def run() -> None:
    print(f"\n== the shared limiter's overhead ({CHECKS:,} checks, {IN_FLIGHT} in flight, "
          "fake API, Redis on loopback)")  # fmt: skip
    header = ["limiter", "wall µs/check", "client CPU µs/check", "wall vs local",
              "CPU vs local"]  # fmt: skip
    print(table(header, rows()))


if __name__ == "__main__":
    run()
