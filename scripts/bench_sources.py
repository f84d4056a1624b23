"""Order sources benchmark: batch checks, the PostgreSQL source, ``find`` on uvloop.

    python scripts/bench.py sources                 # every section, 3 runs each
    python scripts/bench_sources.py [--sections batch,postgres,loop] [--runs 3] [--profile]

batch: ``find`` against the mock order API in its own process at 0 and 20 ms latency, single
checks (``HttpOrderApi(orders_url)``) vs chunks of 100 through ``check_many``
(``batch_url=``), side by side in one run: 3 lookups of 10,000 national candidates each on one
shared checker (100 in flight, no rate ceiling, no cache), the planted hit the last candidate
of each (so both variants answer every candidate), and the answers compared.

postgres: a throwaway PostgreSQL server (tests/pg_fixture.py: initdb in a temp folder,
loopback port) seeded with the synthetic demo orders; the lookup is the demo's national-tier
hit (186****3357, hint 杭州: 121 city + 369 province candidates, the hit 151st of the national
tier). "one query per candidate" checks in tier order, 16 in flight, and stops at the hit;
"check_many" sends the same candidates in chunks of 100 (one ``= ANY($1)`` query each), 4
chunks in flight, and stops at the chunk with the hit; "find" is ``lookup.find`` (the engine
sends chunks of ``Limits.batch_size`` through ``check_many``). Lookups/s = lookups / wall.

loop: ``find`` against the mock order API in its own process (0 ms latency, 10,000 negative
candidates, 100 in flight, as in ``bench.py engine``), on the default asyncio loop and on
uvloop, against the hand-written aiohttp loop on the default loop. Client CPU per check is
``time.process_time()`` of this process. ``--profile`` adds a cProfile of find on uvloop and
the share of JSON decoding in it (is orjson worth it?).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "scripts", ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from _benchlib import MockServer, Sample, Timed, interleaved, median, table, verdict, write_orders
from bench_engine import IN_FLIGHT, LIMITS, MASK, find_variant, hand_variant

from lookup.domain.models import Limits
from lookup.domain.tiers import plan
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.mockapi.pgseed import read_orders, seed
from lookup.orders import HttpOrderApi
from lookup.orders.postgres import PostgresOrderApi
from lookup.runtime import loop as _loop

PG_MASK, PG_HINT, PG_HIT = "186****3357", {"city": "杭州"}, "18601503357"
PG_IN_FLIGHT, CHUNK, CHUNKS_IN_FLIGHT = 16, 100, 4
PG_LOOKUPS = 10
SECTIONS = ("batch", "postgres", "loop")
BATCH_MASKS = ("138****2046", "139****2046", "186****2046")  # 10,000 national candidates each
BATCH_LATENCIES = (0.0, 20.0)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- batch checks --------------------------------------------------------------------------


async def _find_all(url: str, batch_url: str | None) -> tuple[int, list[str], int, int]:
    """``find`` each of BATCH_MASKS on one checker: (answers, phones, requests, numbers)."""
    async with HttpOrderApi(url, batch_url=batch_url, max_connections=IN_FLIGHT) as api:
        checker = Checker(api, LIMITS)
        answers, phones = 0, []
        for mask in BATCH_MASKS:
            result = await find(mask, checker=checker)
            answers += sum(t.checked for t in result.tiers)
            phones.append(result.phone or result.status)
    return answers, phones, checker.counters.requests, checker.counters.numbers


def section_batch(runs: int) -> None:
    lasts = {m: list(plan(m).tier("national"))[-1] for m in BATCH_MASKS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        orders = write_orders(Path(tmp) / "orders.csv", {p: 1 for p in lasts.values()})
        for latency in BATCH_LATENCIES:
            with MockServer(orders=orders, latency_ms=latency) as server:
                urls = {"single checks": None, "chunks of 100": f"{server.url}/orders/batch"}
                samples: dict[str, list[Sample]] = {name: [] for name in urls}
                answers: dict[str, set[tuple[str, ...]]] = {name: set() for name in urls}
                for r, name in interleaved(list(urls), runs):
                    with Timed() as t:
                        checks, phones, requests, numbers = _loop.run(
                            _find_all(server.orders_url, urls[name]), use_uvloop=False
                        )
                    answers[name].add(tuple(phones))
                    samples[name].append(Sample(wall=t.wall, cpu=t.cpu, checks=checks,
                                                requests=requests))  # fmt: skip
                    _say(f"    run {r + 1}/{runs} {latency:g} ms {name:<14} {t.wall:6.2f} s  "
                         f"{checks / t.wall:8.0f}/s  {requests} requests, {numbers} numbers")  # fmt: skip
            single = median(s.rate for s in samples["single checks"])
            expected = {tuple(lasts[m] for m in BATCH_MASKS)}
            same = answers["single checks"] == answers["chunks of 100"] == expected
            for name, ss in samples.items():
                rate = median(s.rate for s in ss)
                target = ""
                if name == "chunks of 100":
                    ok = same and (latency < 20 or rate >= 20 * single)
                    goal = ">= 20x and same answers" if latency >= 20 else "same answers"
                    target = f"{goal}: {rate / single:.1f}x, {'same' if same else 'DIFFERENT'}  {verdict(ok)}"
                rows.append([f"{latency:g} ms", name, f"{rate:,.0f}",
                             f"{median(s.requests for s in ss):,.0f}",
                             f"{median(s.cpu_us for s in ss):,.1f}", f"{rate / single:.1f}x",
                             target])  # fmt: skip
    print("== sources: batch checks vs single checks (find, mock order API in its own process)")
    print(f"  {len(BATCH_MASKS)} lookups x 10,000 national candidates ({', '.join(BATCH_MASKS)}), "
          f"the hit the last candidate of each; one checker, {IN_FLIGHT} in flight, no rate "
          f"ceiling, no cache; median of {runs} interleaved runs, default asyncio loop")  # fmt: skip
    print(table(["latency", "variant", "checks/s", "requests", "client CPU µs/check",
                 "vs single", "target"], rows))  # fmt: skip


# -- PostgreSQL -------------------------------------------------------------------------------


async def _first_hit(
    items: Sequence[Sequence[str]], workers: int, ask: Callable[[Sequence[str]], Awaitable[bool]]
) -> int:
    """Ask about ``items`` in order with ``workers`` at once; stop after the first positive.

    Returns the number of asks sent. Items after the hit's are not started; asks in flight
    when it lands are let finish (their answers are not needed).
    """
    it = iter(items)
    sent = 0
    found = asyncio.Event()

    async def worker() -> None:
        nonlocal sent
        for item in it:
            if found.is_set():
                return
            sent += 1
            if await ask(item):
                found.set()
                return

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert found.is_set(), "the planted hit was not found"
    return sent


async def _pg_per_candidate(api: PostgresOrderApi, phones: list[str]) -> int:
    async def ask(chunk: Sequence[str]) -> bool:
        return (await api.check(chunk[0])).has_orders

    return await _first_hit([[p] for p in phones], PG_IN_FLIGHT, ask)


async def _pg_chunks(api: PostgresOrderApi, phones: list[str]) -> int:
    async def ask(chunk: Sequence[str]) -> bool:
        return any(o.has_orders for o in (await api.check_many(chunk)).values())

    # chunks never straddle tiers: the engine checks a tier before the next
    p = plan(PG_MASK, **PG_HINT)
    tiers = [list(t) for t in p.tiers]
    chunks = [numbers[i : i + CHUNK] for numbers in tiers for i in range(0, len(numbers), CHUNK)]
    return await _first_hit(chunks, CHUNKS_IN_FLIGHT, ask)


async def _pg_find(api: PostgresOrderApi, phones: list[str]) -> int:
    limits = Limits(max_in_flight=PG_IN_FLIGHT, max_per_second=None, cache_ttl=0)
    result = await find(PG_MASK, api=api, limits=limits, **PG_HINT)
    assert result.phone == PG_HIT, result.status
    return result.checks_sent


def section_postgres(runs: int) -> None:
    from support.pg_fixture import PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("== sources: postgres\n  skipped: PostgreSQL is not installed (apt-get install postgresql)")
        return
    p = plan(PG_MASK, **PG_HINT)
    phones = [n for t in p.tiers for n in t]
    position = phones.index(PG_HIT) + 1
    server = PgServer(bin_dir)
    try:
        server.start()
        orders = read_orders()
        asyncio.run(seed(server.dsn, orders))
        variants: dict[str, Callable[[PostgresOrderApi, list[str]], Awaitable[int]]] = {
            "one query per candidate": _pg_per_candidate,
            "check_many (chunks of 100)": _pg_chunks,
            "find (chunks of 100 via the engine)": _pg_find,
        }
        samples: dict[str, list[Sample]] = {name: [] for name in variants}

        async def lookups(name: str) -> tuple[int, int]:
            async with PostgresOrderApi(server.dsn, pool_size=PG_IN_FLIGHT) as api:
                before = api.queries
                asks = 0
                for _ in range(PG_LOOKUPS):
                    asks += await variants[name](api, phones)
                return api.queries - before, asks

        for r, name in interleaved(list(variants), runs):
            with Timed() as t:
                queries, _ = _loop.run(lookups(name), use_uvloop=False)
            samples[name].append(Sample(wall=t.wall, cpu=t.cpu, checks=PG_LOOKUPS,
                                        requests=queries))  # fmt: skip
            _say(f"    run {r + 1}/{runs} {name:<34} {t.wall:6.2f} s")
    finally:
        server.cleanup()

    print("== sources: postgres (national-tier hit)")
    print(f"  {PG_MASK} hint 杭州: {', '.join(f'{t.name} {t.count:,}' for t in p.tiers)}; "
          f"the hit {PG_HIT} is candidate {position:,} in tier order")  # fmt: skip
    print(f"  PostgreSQL {bin_dir.parent.name} on loopback, {len(orders):,} numbers / "
          f"{sum(orders.values()):,} order rows, index on phone; {PG_LOOKUPS} lookups per run, "
          f"median of {runs} interleaved runs, default asyncio loop")  # fmt: skip
    base = median(s.rate for s in samples["one query per candidate"])
    rows = []
    for name, ss in samples.items():
        rate = median(s.rate for s in ss)
        rows.append([name, f"{rate:,.1f}", f"{median(s.requests for s in ss) / PG_LOOKUPS:,.1f}",
                     f"{median(s.cpu for s in ss) / PG_LOOKUPS * 1000:,.1f}",
                     f"{rate / base:.2f}x"])  # fmt: skip
    print(table(["variant", "lookups/s", "queries/lookup", "client CPU ms/lookup",
                 "vs per-candidate"], rows))  # fmt: skip


# -- the loop ---------------------------------------------------------------------------------


def section_loop(runs: int, profile: bool) -> None:
    phones = list(plan(MASK).tier("national"))
    with tempfile.TemporaryDirectory() as tmp:
        empty = write_orders(Path(tmp) / "empty.csv")
        with MockServer(orders=empty) as server:
            url = server.orders_url
            variants: dict[str, Callable[[], tuple[int, str]]] = {
                "hand-written, asyncio loop": lambda: _loop.run(
                    hand_variant(url, phones), use_uvloop=False
                ),
                "find, asyncio loop": lambda: _loop.run(find_variant(url, MASK), use_uvloop=False),
                "find, uvloop ([fast])": lambda: _loop.run(
                    find_variant(url, MASK), use_uvloop=True
                ),
                "hand-written, uvloop": lambda: _loop.run(
                    hand_variant(url, phones), use_uvloop=True
                ),
            }
            samples: dict[str, list[Sample]] = {name: [] for name in variants}
            for r, name in interleaved(list(variants), runs):
                with Timed() as t:
                    checks, result = variants[name]()
                assert result == "not_found", (name, result)
                samples[name].append(Sample(wall=t.wall, cpu=t.cpu, checks=checks, result=result))
                _say(f"    run {r + 1}/{runs} {name:<28} {t.wall:6.2f} s  {checks / t.wall:7.0f}/s")
            shares = _profile_json(url) if profile else None

    print("== sources: event loop (0 ms latency, all negative)")
    print(f"  {len(phones):,} candidates of {MASK}, {IN_FLIGHT} in flight, {LIMITS!r};")
    print(f"  mock order API in its own process ({server.command}); median of {runs} interleaved "
          "runs; CPU = client process_time() per check")  # fmt: skip
    plain = samples["hand-written, asyncio loop"]
    plain_cpu, plain_rate = median(s.cpu_us for s in plain), median(s.rate for s in plain)
    rows = []
    for name, ss in samples.items():
        cpu, rate = median(s.cpu_us for s in ss), median(s.rate for s in ss)
        target = ""
        if name == "find, uvloop ([fast])":
            ok = cpu <= 0.83 * plain_cpu and rate >= plain_rate
            target = f"<= 0.83x CPU and >= checks/s of plain: {cpu / plain_cpu:.2f}x  {verdict(ok)}"
        rows.append([name, f"{rate:,.0f}", f"{cpu:,.0f}", f"{cpu / plain_cpu:.2f}x",
                     f"{rate / plain_rate:.2f}x", target])  # fmt: skip
    print(table(["variant", "checks/s", "CPU µs/check", "CPU vs plain", "rate vs plain",
                 "target"], rows))  # fmt: skip
    if shares is not None:
        total, json_s, top = shares
        print(f"  profile of find on uvloop: JSON decoding {json_s:.3f} s of {total:.3f} s "
              f"profiled ({json_s / total:.1%}); top by own time:")  # fmt: skip
        for line in top:
            print(f"    {line}")


def _profile_json(url: str) -> tuple[float, float, list[str]]:
    prof = cProfile.Profile()
    prof.enable()
    _loop.run(find_variant(url, MASK), use_uvloop=True)
    prof.disable()
    stats = pstats.Stats(prof)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    json_s = 0.0
    for (path, _, func), v in raw.items():
        if "json" in path and ("decoder" in path or func in ("loads", "json")):
            json_s += v[2]
    top = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    lines = [f"{v[2]:.3f} s  {Path(k[0]).name}:{k[1]} {k[2]}" for k, v in top]
    return total, json_s, lines


def run(argv: Sequence[str] | None = None) -> None:
    """Entry of ``python scripts/bench.py sources`` (defaults) and of this script's CLI."""
    parser = argparse.ArgumentParser(prog="bench_sources.py", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile find's JSON decoding")
    args = parser.parse_args(list(argv) if argv is not None else [])
    started = time.perf_counter()
    for name in args.sections.split(","):
        if name == "batch":
            section_batch(args.runs)
        elif name == "postgres":
            section_postgres(args.runs)
        elif name == "loop":
            section_loop(args.runs, args.profile)
        else:
            parser.error(f"unknown section {name!r}: choose from {', '.join(SECTIONS)}")
    _say(f"sources benchmark: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    run(sys.argv[1:])
