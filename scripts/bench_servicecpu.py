"""The service's CPU per cached lookup with 50 concurrent clients (target: <= 0.3 ms).

Three processes: the mock order API, ``lookup serve`` against it (the default outcome
cache, a bearer token, ``--rate none``) and this one, the client. The cheap demo masks (city
hit: 102 candidates; area-code city hit: 22) are looked up once each to fill the cache;
then :data:`ROUNDS` rounds of :data:`LOOKUPS` lookups of the same masks from 50 client tasks
(each POSTs ``/v1/lookups`` one after the other). The service process's CPU (utime + stime
from ``/proc/PID/stat``, not the client's) is read before and after each round: CPU ms per
lookup (and the kernel's share of it), lookups/s, p50/p99 latency; medians of the rounds
with their spread. Each round is followed by one of as many ``GET /v1/segments/1385715``
(the same middlewares, no lookup): the floor any answer of this service costs.

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
from collections.abc import Awaitable, Callable
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
FLOOR_PATH = "/v1/segments/1385715"
LOOKUP = "POST /v1/lookups (cached)"
FLOOR = "floor: GET a segment"


@dataclass
class Round:
    requests: int
    wall: float
    user: float
    system: float
    p50: float
    p99: float

    @property
    def cpu_ms(self) -> float:
        return (self.user + self.system) / self.requests * 1e3

    @property
    def system_share(self) -> float:
        return self.system / max(self.user + self.system, 1e-9)

    @property
    def rate(self) -> float:
        return self.requests / self.wall


class NotCached(AssertionError):
    """A measured lookup was not answered from the cache (or not right)."""


Fetch = Callable[[int], Awaitable[float]]


async def _round(service: ServiceProcess, fetch: Fetch, n: int) -> Round:
    """``n`` requests from :data:`CLIENTS` tasks, each one after the other."""
    queue = iter(range(n))
    latencies: list[float] = []

    async def client() -> None:
        for i in queue:  # the round's one queue, shared by its clients
            latencies.append(await fetch(i))

    user, system = service.cpu_split()
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    wall = time.perf_counter() - start
    user_after, system_after = service.cpu_split()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Round(len(latencies), wall, user_after - user, system_after - system, q[49], q[98])


async def _rounds(service: ServiceProcess, mock: MockServer) -> dict[str, list[Round]]:
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

        async def segment(i: int) -> float:
            del i
            t = time.perf_counter()
            async with session.get(FLOOR_PATH) as resp:
                await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {FLOOR_PATH}: HTTP {resp.status}")
            return time.perf_counter() - t

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

        out: dict[str, list[Round]] = {LOOKUP: [], FLOOR: []}
        for _ in range(ROUNDS):
            sent = mock.stats()["orders_requests"]
            out[LOOKUP].append(await _round(service, lookup, LOOKUPS))
            if mock.stats()["orders_requests"] != sent:
                raise NotCached("the mock order API was asked during a cached round")
            out[FLOOR].append(await _round(service, segment, LOOKUPS))
    return out


def _row(name: str, rounds: list[Round], target: bool) -> list[str]:
    cpu = [r.cpu_ms for r in rounds]
    rate = [r.rate for r in rounds]
    got = median(cpu)
    verdict = ("met" if got <= TARGET_MS else f"missed by {got - TARGET_MS:.2f} ms") if target else "-"
    return [name, f"{got:.3f} ({spread(cpu)})", f"{median([r.system_share for r in rounds]):.0%}",
            f"{median(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f})", f"{median([r.p50 * 1e3 for r in rounds]):.1f}",
            f"{median([r.p99 * 1e3 for r in rounds]):.1f}", verdict]  # fmt: skip


def run() -> None:
    profile = os.environ.get("LOOKUP_BENCH_PROFILE")
    print(f"\n== the service's CPU per cached lookup ({CLIENTS} concurrent clients, "
          f"{ROUNDS} rounds x {LOOKUPS:,} requests; city-hit and area-code demo masks)")  # fmt: skip
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
    print(table(["request", "service CPU ms/request", "of it system", "requests/s", "p50 ms",
                 "p99 ms", "target <= 0.3 ms"],
                [_row(LOOKUP, rounds[LOOKUP], True), _row(FLOOR, rounds[FLOOR], False)]))  # fmt: skip
    print(f"  cached: every measured lookup had requests=0; the mock answered {sent} requests "
          "in all (the cache fill), none during the rounds")  # fmt: skip
    print(f"  floor: GET {FLOOR_PATH} crosses the same middlewares (request id, problems, "
          "auth, metrics, access log) and runs no lookup: what any answer costs the service")  # fmt: skip
    if profile:
        print(f"  (under cProfile: the figures include its overhead; stats in {profile})")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "scripts"))
    run()
