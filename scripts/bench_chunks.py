"""Bigger questions to sources that answer many numbers per request.

    python scripts/bench.py chunks
    PYTHONPATH=/path/to/checkout python scripts/bench_chunks.py    (any checkout: before/after)

postgres: a throwaway PostgreSQL (tests/support/pg_fixture.py) seeded with the demo orders;
queries per lookup (``PostgresOrderApi.queries``) for masks hiding the last four digits:
``1385715****`` (its hit 13857152046, one segment of 10,000 candidates) and
``1390000****`` (no orders: every candidate answered), first-hit mode.

batch: the bundled mock's batch endpoint (no added latency, 20 ms, then 1.5 s per request);
20 national-tier lookups of ``138****2046`` with no hit planted (10,000 candidates each),
the chunk sizes the checker reached and the batch requests per lookup.

This script imports ``lookup`` from ``PYTHONPATH`` (not from its own checkout), so that
the same figures can be taken on an older checkout.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for extra in (HERE.parent / "tests",):
    if str(extra) not in sys.path:
        sys.path.append(str(extra))

import lookup
from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.mockapi.faults import MockConfig
from lookup.mockapi.pgseed import read_orders, seed
from lookup.mockapi.server import MockOrderServer
from lookup.orders import HttpOrderApi
from lookup.orders.postgres import PostgresOrderApi

PG_MASKS = ("1385715****", "1390000****")
LIMITS = Limits(max_per_second=None, start_rate=None, max_in_flight=16, cache_ttl=0)
BATCH_MASK = "138****2046"
BATCH_LOOKUPS = 20


def section_postgres() -> None:
    from support.pg_fixture import PgServer, find_bin_dir

    print(f"== chunks: postgres (lookup from {Path(lookup.__file__).parent})")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("  skipped: PostgreSQL is not installed")
        return
    server = PgServer(bin_dir)
    try:
        server.start()
        asyncio.run(seed(server.dsn, read_orders()))

        async def one(mask: str) -> tuple[str, str | None, int, int]:
            async with PostgresOrderApi(server.dsn, pool_size=16) as api:
                result = await find(mask, api=api, limits=LIMITS)
                return result.status, result.phone, api.queries, result.checks_sent

        for mask in PG_MASKS:
            status, phone, queries, sent = asyncio.run(one(mask))
            print(f"  {mask}: {status} {phone or ''}  queries {queries}  "
                  f"(checks sent {sent})")  # fmt: skip
    finally:
        server.cleanup()


def section_batch() -> None:
    print(f"== chunks: the mock's batch endpoint (lookup from {Path(lookup.__file__).parent})")

    async def run(latency_ms: float, lookups: int) -> None:
        config = MockConfig(latency_ms=latency_ms)
        async with (
            MockOrderServer(orders={}, config=config) as server,
            HttpOrderApi(server.orders_url, batch_url=server.batch_url) as api,
        ):
            checker = Checker(api, LIMITS)
            sizes: list[int] = []
            requests = 0
            for _ in range(lookups):
                result = await find(BATCH_MASK, checker=checker, limits=LIMITS)
                assert result.status == "not_found", result.reason
                requests += result.checks_sent
                chunks = getattr(checker, "chunks", None)  # absent before: a fixed 100
                sizes.append(chunks.size if chunks is not None else LIMITS.batch_size)
            print(f"  latency {latency_ms:g} ms, {lookups} lookups: batch requests per "
                  f"lookup {requests / lookups:,.1f}; chunk size after each lookup "
                  f"{' '.join(map(str, sizes))}")  # fmt: skip

    for latency, lookups in ((0.0, BATCH_LOOKUPS), (20.0, BATCH_LOOKUPS), (1500.0, 3)):
        asyncio.run(run(latency, lookups))


def run() -> None:
    section_postgres()
    section_batch()


if __name__ == "__main__":
    run()
