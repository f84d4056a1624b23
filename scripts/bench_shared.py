"""The shared limiter's cost per check against the local one, side by side.

One :class:`~lookup.engine.checker.Checker` over an in-process fake order API (no network, so only
the limiter's own work shows), 16 checks in flight, :data:`CHECKS` distinct numbers, a
ceiling too high to pace (1,000,000/s), on a fresh ``redis-server`` (loopback, temp folder):

* ``local``: the checker's own pacer (the single-process path), cache off and on;
* ``shared, cache off``: ``--shared`` with ``cache_ttl=0``: start slots leased from Redis
  (one round trip per lease of many slots), served locally;
* ``shared, cache on``: also the shared outcome cache and cross-process single flight
  (claims and answers batched per turn of the loop).

Wall µs per check and client CPU µs per check (this process: the checker, redis-py, the
loop; Redis's own CPU is not counted); "vs local" is the difference per check against the
local row with the same cache setting, "throughput" the ratio of checks per second.

A second table: ``--rate none`` (no ceiling: the slow start from 50/s) on one
10,000-candidate lookup (``138****2046``, no hit: every candidate is checked), local vs
shared (cache off), seconds per lookup and the ratio.

Every variant runs :data:`RUNS` times, interleaved round-robin; medians, with the spread.

    python scripts/bench_shared.py        # also part of: python scripts/bench.py scale
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from _benchlib import interleaved, median, spread, table
from support.redis_fixture import RedisServer, find_redis

from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders import FakeOrderApi

CHECKS = 4_000
IN_FLIGHT = 16
RUNS = 5
LOOKUP_MASK = "138****2046"  # 10,000 candidates
VARIANTS = (("local, cache off", 0.0, False), ("shared, cache off", 0.0, True),
            ("local, cache on", 300.0, False), ("shared, cache on", 300.0, True))  # fmt: skip


async def _drive(checker: Checker, offset: int) -> tuple[float, float]:
    numbers = iter(f"138{offset + i:08d}" for i in range(CHECKS))

    async def worker() -> None:
        for phone in numbers:
            await checker.check(phone)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return (time.perf_counter() - wall) / CHECKS * 1e6, (time.process_time() - cpu) / CHECKS * 1e6


async def _with_checker(
    url: str, name: str, limits: Limits, shared: bool, body: Callable[[Checker], Awaitable[object]]
) -> None:
    from lookup.scale.redis.connect import open_quota

    api = FakeOrderApi(lambda phone: False)
    if not shared:
        await body(Checker(api, limits))
        return
    async with open_quota(url, identity=f"bench-{name}", limits=limits) as quota:
        await body(Checker(api, limits, quota=quota))


async def _measure(url: str) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in VARIANTS}
    settings = {name: (ttl, shared) for name, ttl, shared in VARIANTS}
    for serial, (_, name) in enumerate(interleaved([n for n, _, _ in VARIANTS], RUNS)):
        ttl, shared = settings[name]
        limits = Limits(max_in_flight=IN_FLIGHT, max_per_second=1e6, cache_ttl=ttl)
        offset = serial * CHECKS  # fresh numbers: no cache hit anywhere

        async def body(checker: Checker, name: str = name, offset: int = offset) -> None:
            found[name].append(await _drive(checker, offset))

        await _with_checker(url, f"{name}-{serial}", limits, shared, body)
    return found


async def _measure_lookup(url: str) -> dict[str, list[tuple[float, int]]]:
    found: dict[str, list[tuple[float, int]]] = {"local": [], "shared": []}
    limits = Limits(max_per_second=None, cache_ttl=0.0)
    for serial, (_, name) in enumerate(interleaved(list(found), RUNS)):

        async def body(checker: Checker, name: str = name) -> None:
            began = time.perf_counter()
            result = await find(LOOKUP_MASK, checker=checker)
            found[name].append((time.perf_counter() - began, result.checks_sent))

        await _with_checker(url, f"lookup-{serial}", limits, name == "shared", body)
    return found


def rows() -> tuple[list[list[str]], list[list[str]]]:
    binary = find_redis()
    if binary is None:
        return [["(no redis-server: apt-get install redis-server)", "", "", "", "", ""]], []
    server = RedisServer(binary).start()
    try:
        measured = asyncio.run(_measure(server.url))
        lookups = asyncio.run(_measure_lookup(server.url))
    finally:
        server.cleanup()
    out = []
    for name, _, shared in VARIANTS:
        walls = [w for w, _ in measured[name]]
        cpus = [c for _, c in measured[name]]
        wall, cpu = median(walls), median(cpus)
        base = name.replace("shared", "local")
        base_wall = median(w for w, _ in measured[base])
        base_cpu = median(c for _, c in measured[base])
        out.append([name, f"{wall:,.1f} ({spread(walls)})", f"{cpu:,.1f} ({spread(cpus)})",
                    f"{cpu - base_cpu:+,.1f}" if shared else "",
                    f"{base_wall / wall:.2f}x" if shared else ""])  # fmt: skip
    local = median(s for s, _ in lookups["local"])
    second = []
    for name, samples in lookups.items():
        secs = [s for s, _ in samples]
        checked = {c for _, c in samples}
        second.append([name, f"{median(secs):.2f} ({spread(secs)})",
                       "/".join(f"{c:,}" for c in sorted(checked)),
                       f"{local / median(secs):.2f}x"])  # fmt: skip
    return out, second


def run() -> None:
    first, second = rows()
    print(f"\n== the shared limiter's overhead ({CHECKS:,} checks, {IN_FLIGHT} in flight, "
          f"fake API, Redis on loopback; medians of {RUNS} interleaved runs, spread)")  # fmt: skip
    header = ["limiter", "wall µs/check", "client CPU µs/check", "CPU vs local",
              "throughput vs local"]  # fmt: skip
    print(table(header, first))
    if second:
        print(f"\n== --rate none: one {LOOKUP_MASK} lookup (10,000 candidates, no hit), "
              "local vs --shared (cache off)")  # fmt: skip
        print(table(["quota", "seconds", "checks sent", "throughput vs local"], second))


if __name__ == "__main__":
    run()
