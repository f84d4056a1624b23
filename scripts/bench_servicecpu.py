"""The service's CPU per cached lookup with 50 concurrent clients (target: <= 0.3 ms).

Three processes: the mock order API, ``lookup serve`` against it (the default outcome
cache, a bearer token, ``--rate none``) and this one, the client. The cheap demo masks (city
hit: 102 candidates; area-code city hit: 22) are looked up once each to fill the cache;
then :data:`ROUNDS` rounds of :data:`LOOKUPS` lookups of the same masks from 50 client tasks
(each POSTs ``/v1/lookups`` one after the other). The service process's CPU (utime + stime
from ``/proc/PID/stat``, not the client's) is read before and after each round: CPU ms per
lookup, lookups/s, p50/p99 latency; medians of the rounds with their spread.

Every measured lookup must be answered from the cache: its ``requests`` is 0, the mock's
request counter does not move, and the phone is the expected one; otherwise the run fails.

``LOOKUP_BENCH_PROFILE=FILE`` runs the service under cProfile and writes its stats to FILE
when it stops (``python -m pstats FILE``); its figures are then not the service's own.

    python scripts/bench.py servicecpu   # or: python scripts/bench_servicecpu.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from _benchlib import MockServer, median, spread, table
from bench_service import CLIENTS, REQUEST_TIMEOUT, TOKEN, ServiceProcess, _cases

ROOT = Path(__file__).resolve().parent.parent
LOOKUPS = 3_000
ROUNDS = 3
TARGET_MS = 0.3
FILL_TRIES = 10


@dataclass
class Round:
    lookups: int
    wall: float
    cpu: float
    p50: float
    p99: float

    @property
    def cpu_ms(self) -> float:
        return self.cpu / self.lookups * 1e3

    @property
    def rate(self) -> float:
        return self.lookups / self.wall


class NotCached(AssertionError):
    """A measured lookup was not answered from the cache (or not right)."""


async def _rounds(service: ServiceProcess, mock: MockServer) -> list[Round]:
    cases = _cases()
    bodies = [json.dumps({"mask": c["mask"], **c["hints"]}).encode() for c in cases]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(
        service.url, connector=connector, headers=headers, timeout=timeout
    ) as session:

        async def lookup(i: int) -> float:
            case = cases[i % len(cases)]
            t = time.perf_counter()
            async with session.post("/v1/lookups", data=bodies[i % len(bodies)]) as resp:
                data = await resp.json()
            elapsed = time.perf_counter() - t
            if resp.status != 200 or data["phone"] != case["expected_phone"]:
                raise NotCached(f"{case['mask']}: HTTP {resp.status}, {data}")
            if data["requests"] != 0:
                raise NotCached(f"{case['mask']}: {data['requests']} requests, not cached")
            return elapsed

        # Fill the cache: a first-hit lookup cancels the checks still in flight at its hit,
        # so a mask may need a few lookups before all of its answers are cached.
        for i in range(len(cases)):
            for _ in range(FILL_TRIES):
                async with session.post("/v1/lookups", data=bodies[i]) as resp:
                    if (await resp.json()).get("requests") == 0:
                        break
            else:
                raise NotCached(f"{cases[i]['mask']}: still sends requests after {FILL_TRIES} lookups")
        # open the clients' connections (not measured)
        await asyncio.gather(*(lookup(i) for i in range(CLIENTS)))

        async def client(queue: Iterator[int], latencies: list[float]) -> None:
            for i in queue:  # the round's one queue, shared by its clients
                latencies.append(await lookup(i))

        rounds = []
        for _ in range(ROUNDS):
            queue = iter(range(LOOKUPS))
            latencies: list[float] = []

            sent = mock.stats()["orders_requests"]
            cpu = service.cpu_seconds()
            start = time.perf_counter()
            await asyncio.gather(*(client(queue, latencies) for _ in range(CLIENTS)))
            wall = time.perf_counter() - start
            cpu = service.cpu_seconds() - cpu
            if mock.stats()["orders_requests"] != sent:
                raise NotCached("the mock order API was asked during a cached round")
            q = statistics.quantiles(latencies, n=100, method="inclusive")
            rounds.append(Round(len(latencies), wall, cpu, q[49], q[98]))
    return rounds


def run() -> None:
    profile = os.environ.get("LOOKUP_BENCH_PROFILE")
    print(f"\n== the service's CPU per cached lookup ({CLIENTS} concurrent clients, "
          f"{ROUNDS} rounds x {LOOKUPS:,} lookups; city-hit and area-code demo masks)")  # fmt: skip
    with MockServer() as mock:
        before = mock.stats()["orders_requests"]
        prefix = ["-m", "cProfile", "-o", str(Path(profile).resolve())] if profile else []
        with ServiceProcess(mock.orders_url, python_args=prefix) as service:
            rounds = asyncio.run(_rounds(service, mock))
        sent = mock.stats()["orders_requests"] - before
        print(f"  mock:    {mock.command}")
        print(f"  service: {service.command.replace(mock.url, 'http://127.0.0.1:P')}")
    if service.exit_code != 0:
        raise SystemExit(f"{service.command} exited {service.exit_code}:\n{service.stderr_tail}")
    cpu = [r.cpu_ms for r in rounds]
    rate = [r.rate for r in rounds]
    p50 = [r.p50 * 1e3 for r in rounds]
    p99 = [r.p99 * 1e3 for r in rounds]
    got = median(cpu)
    verdict = "met" if got <= TARGET_MS else f"missed by {got - TARGET_MS:.2f} ms"
    print(table(["service CPU ms/lookup", "lookups/s", "p50 ms", "p99 ms", "target <= 0.3 ms"],
                [[f"{got:.3f} ({spread(cpu)})", f"{median(rate):,.0f} ({spread(rate)})",
                  f"{median(p50):.1f}", f"{median(p99):.1f}", verdict]]))  # fmt: skip
    print(f"  cached: every measured lookup had requests=0; the mock answered {sent} requests "
          "in all (the cache fill), none during the rounds")  # fmt: skip
    if profile:
        print(f"  (under cProfile: the figures include its overhead; stats in {profile})")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "scripts"))
    run()
