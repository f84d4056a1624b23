"""Engine benchmark: ``lookup.find`` vs a hand-written aiohttp loop vs the naive patterns.

    python scripts/bench.py engine      # every section, 3 runs each (the default; ~4-5 min)
    python scripts/bench_engine.py [--sections zero,latency,first-hit,rate-limit] [--runs 3]
        [--experiment NAME ...] [--skip-naive] [--naive-bounded] [--wait-quiet SECONDS]

Every figure comes from the mock order API (``python -m lookup.mockapi``) in its own process on
loopback, so the client CPU (``time.process_time()`` of this process, all threads) excludes the
server's. Each timed variant runs ``--runs`` times, interleaved round-robin (the first variant
rotates each round); the tables show medians. ``--experiment`` adds a row ``find[NAME]`` that
runs ``lookup.find`` with a patch applied for that row only (see ``EXPERIMENTS``); the plain
``find`` row always measures the real, unpatched engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import aiohttp
from _benchlib import (
    MockServer,
    Sample,
    Timed,
    interleaved,
    median,
    shown_command,
    stats_delta,
    system_busy_seconds,
    table,
    verdict,
    wait_quiet,
    write_orders,
)

from lookup.domain.models import Limits
from lookup.domain.tiers import plan
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders import http as http_module
from lookup.orders.http import HttpOrderApi

MASK = "138****2046"  # no hint: all 10,000 candidates in the national tier
IN_FLIGHT = 100
LIMITS = Limits(max_in_flight=IN_FLIGHT, max_per_second=None, cache_ttl=0)
CACHED_LIMITS = Limits(max_in_flight=IN_FLIGHT, max_per_second=None)
"""As ``LIMITS`` with the outcome cache on (the default ``cache_ttl`` of the CLI and service)."""
LATENCY_MS = 20.0
FIRST_HIT_AT = 5_000  # 1-based position of the planted positive in the shuffled tier
FIRST_HIT_SEED = 2046
RATE = 200.0
RATE_MASKS = ("13805712***", "13805713***")  # 1,000 candidates each, one tier each
NAIVE_THREADS = 4
SECTIONS = ("zero", "latency", "first-hit", "rate-limit")


# -- variants -------------------------------------------------------------------------------


class _Hit(Exception):
    """Stops the hand-written loop's task group at the first positive."""


async def find_variant(
    url: str, mask: str, *, limits: Limits = LIMITS, seed: int | None = None
) -> tuple[int, str]:
    """The engine as a library caller uses it: one adapter, one ``find``."""
    async with HttpOrderApi(url, max_connections=IN_FLIGHT) as api:
        result = await find(mask, api=api, limits=limits, seed=seed)
    checked = sum(t.checked for t in result.tiers)
    return checked, result.phone or result.status


async def hand_variant(url: str, phones: Sequence[str], *, first: bool = False) -> tuple[int, str]:
    """The minimal hand-written loop: one session, 100 workers pulling from one iterator."""
    checked = 0
    hit = ""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:
        it = iter(phones)

        async def worker() -> None:
            nonlocal checked, hit
            for phone in it:
                async with session.get(url.replace("{phone}", phone)) as resp:
                    data = await resp.json()
                checked += 1
                if data["total"] > 0:
                    hit = hit or phone
                    if first:
                        raise _Hit

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(IN_FLIGHT):
                    tg.create_task(worker())
        except* _Hit:
            pass
    return checked, hit or "not_found"


async def _naive_check(url: str, phone: str) -> bool:
    # The pattern of the articles: a new session (and so a new connection) per request.
    async with aiohttp.ClientSession() as session, session.get(url.replace("{phone}", phone)) as r:
        data = await r.json()
    return bool(data["total"] > 0)


async def naive_gather_variant(
    url: str, phones: Sequence[str], *, bounded: bool = False
) -> tuple[int, str]:
    """(a) ``asyncio.gather`` over every candidate, a new ``ClientSession`` per request."""
    sem = asyncio.Semaphore(IN_FLIGHT) if bounded else None

    async def one(phone: str) -> bool:
        if sem is None:
            return await _naive_check(url, phone)
        async with sem:
            return await _naive_check(url, phone)

    answers = await asyncio.gather(*(one(p) for p in phones))
    hits = [p for p, a in zip(phones, answers, strict=True) if a]
    return len(answers), hits[0] if hits else "not_found"


def naive_threads_variant(url: str, phones: Sequence[str]) -> tuple[int, str]:
    """(b) 4 threads; each call runs a new event loop (``asyncio.run``) and a new session."""

    def call(phone: str) -> bool:
        return asyncio.run(_naive_check(url, phone))

    with ThreadPoolExecutor(NAIVE_THREADS) as pool:
        answers = list(pool.map(call, phones))
    hits = [p for p, a in zip(phones, answers, strict=True) if a]
    return len(answers), hits[0] if hits else "not_found"


# -- experiments: patched copies of engine parts, applied to one row only -------------------


# Each experiment patches lookup's classes for the duration of one find[NAME] run and puts
# everything back afterwards (unittest.mock.patch); nothing under lookup/ is edited.
# no-read-timer is a proposed fix; the others separate the causes. (rate-headroom, local-429
# and rate-fix patched the checker's pacing before it moved to the Pacer, which now spaces
# starts with a headroom of its own: they are gone.)


class _NoTimeout:
    """A do-nothing async context manager: stands in for ``asyncio.timeout(...)`` inside
    ``lookup.orders.http`` (no timer) or for its connection-slot semaphore."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class _AsyncioWithoutTimeout:
    """``asyncio`` as seen by ``lookup.orders.http``, with ``timeout()`` a no-op."""

    _none = _NoTimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def timeout(self, delay: float | None) -> _NoTimeout:
        return self._none


def _timeouts_patch(*, read_timer: bool, total_in_aiohttp: bool) -> Any:
    """Rebuild ``HttpOrderApi._client_timeout`` after ``__init__``."""
    original = HttpOrderApi.__init__

    def __init__(self: HttpOrderApi, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        t = self._timeouts
        self._client_timeout = aiohttp.ClientTimeout(
            total=t.total if total_in_aiohttp else None,
            connect=None,
            sock_connect=t.connect,
            sock_read=t.read if read_timer else None,
        )

    return mock.patch.object(HttpOrderApi, "__init__", __init__)


@contextlib.contextmanager
def exp_no_read_timer() -> Iterator[None]:
    """Only drop aiohttp's sock_read timer (re-armed on every chunk received)."""
    with _timeouts_patch(read_timer=False, total_in_aiohttp=False):
        yield


@contextlib.contextmanager
def exp_one_deadline() -> Iterator[None]:
    """One timer per request: aiohttp's ``ClientTimeout(total=...)`` (taken after the slot,
    like now) instead of ``asyncio.timeout`` + the sock_read timer."""
    with (
        _timeouts_patch(read_timer=False, total_in_aiohttp=True),
        mock.patch.object(http_module, "asyncio", _AsyncioWithoutTimeout()),
    ):
        yield


@contextlib.contextmanager
def exp_aiohttp_total() -> Iterator[None]:
    """Keep all three timeouts but let aiohttp enforce ``total`` (``ClientTimeout(total=...)``,
    started after the slot is held, like now) instead of a per-request ``asyncio.timeout``."""
    with (
        _timeouts_patch(read_timer=True, total_in_aiohttp=True),
        mock.patch.object(http_module, "asyncio", _AsyncioWithoutTimeout()),
    ):
        yield


@contextlib.contextmanager
def exp_no_slots() -> Iterator[None]:
    """one-deadline, and no ``asyncio.Semaphore`` in front of the pool (the checker already
    caps checks in flight at max_in_flight <= max_connections, so the pool never queues)."""
    original = HttpOrderApi.__aenter__

    async def __aenter__(self: HttpOrderApi) -> HttpOrderApi:
        await original(self)
        self._slots = _NoTimeout()  # type: ignore[assignment]
        return self

    with exp_one_deadline(), mock.patch.object(HttpOrderApi, "__aenter__", __aenter__):
        yield


EXPERIMENTS: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
    "no-read-timer": exp_no_read_timer,
    "one-deadline": exp_one_deadline,
    "aiohttp-total": exp_aiohttp_total,
    "no-slots": exp_no_slots,
}


# -- running --------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    run: Callable[[], tuple[int, str]]
    expect: str
    """The right answer: a phone, or ``not_found``."""
    patch: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    before: Callable[[], None] | None = None
    """Untimed preparation before each run."""
    samples: list[Sample] = field(default_factory=list)

    def med(self, attr: str) -> float:
        return median(getattr(s, attr) for s in self.samples)

    @property
    def correct(self) -> bool:
        return all(s.result == self.expect for s in self.samples)


def measure(
    server: MockServer,
    variants: Sequence[Variant],
    o: Options,
    *,
    settle: float = 0.05,
) -> None:
    """Run every variant ``o.runs`` times, interleaved, recording client and server figures."""
    runs = o.runs
    for r, name in interleaved([v.name for v in variants], runs):
        v = next(v for v in variants if v.name == name)
        if v.before is not None:
            v.before()
        waited = wait_quiet(o.wait_quiet) if o.wait_quiet > 0 else 0.0
        gc.collect()
        before = server.stats()
        server_cpu = server.cpu_seconds()
        busy = system_busy_seconds()
        patch = v.patch() if v.patch is not None else contextlib.nullcontext()
        with patch, Timed() as t:
            checks, result = v.run()
        busy_after = system_busy_seconds()
        time.sleep(settle)  # requests cancelled in flight may still reach the server
        delta = stats_delta(before, server.stats())
        server_cpu_after = server.cpu_seconds()
        s = Sample(
            wall=t.wall,
            cpu=t.cpu,
            checks=checks,
            requests=delta["orders_requests"],
            statuses=delta["statuses"],
            max_concurrent=delta["max_concurrent"],
            result=result,
        )
        if server_cpu is not None and server_cpu_after is not None:
            s.server_cpu = server_cpu_after - server_cpu
            if busy is not None and busy_after is not None:
                # /proc/stat counts until busy_after, before the settle pause: close enough.
                s.others_cpu = busy_after - busy - t.cpu - s.server_cpu
        v.samples.append(s)
        _progress(
            f"    run {r + 1}/{runs} {v.name:<20} {t.wall:6.2f} s  {s.rate:7.0f}/s  "
            f"others {s.others_cores:.2f} cores" + (f"  (waited {waited:.1f} s)" if waited else "")
        )


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _fmt_wall(v: Variant) -> str:
    walls = [s.wall for s in v.samples]
    text = f"{median(walls):.2f}"
    if len(walls) > 1:
        text += f" ({min(walls):.2f}-{max(walls):.2f})"
    return text


def _statuses(v: Variant) -> str:
    merged: dict[str, int] = {}
    for s in v.samples:
        for code, n in s.statuses.items():
            merged[code] = merged.get(code, 0) + n
    return " ".join(f"{c}:{n}" for c, n in sorted(merged.items()))


def _header(title: str, server: MockServer, client: str, notes: Sequence[str] = ()) -> None:
    print(f"\n== {title}")
    print(f"   client: {client}")
    print(f"   server: {server.command}")
    for note in notes:
        print(f"   {note}")


NOISY_CORES = 0.3
"""Other processes busier than this (cores, averaged over a run) make a run noisy."""


def _others(variants: Sequence[Variant]) -> float:
    """The largest average number of cores other processes used during any run."""
    values = [s.others_cores for v in variants for s in v.samples]
    values = [x for x in values if not math.isnan(x)]
    return max(values) if values else math.nan


def _footer(variants: Sequence[Variant]) -> None:
    odd = [f"{v.name}: {_statuses(v)}" for v in variants if set(_codes(v)) - {"200"}]
    print("   server statuses: " + ("; ".join(odd) if odd else "200 only, every run"))
    values = [s.others_cores for v in variants for s in v.samples]
    values = [x for x in values if not math.isnan(x)]
    if values:
        worst = max(values)
        flag = "  <- NOISY: ratios and times above are unreliable" if worst > NOISY_CORES else ""
        print(f"   other processes on this machine: {median(values):.2f} cores median, "
              f"{worst:.2f} max over the runs{flag}")  # fmt: skip


def _codes(v: Variant) -> list[str]:
    return [code for s in v.samples for code in s.statuses]


@dataclass
class Target:
    section: str
    text: str
    measured: str
    ok: bool
    noise: float = math.nan


TARGETS: list[Target] = []


def _target(section: str, text: str, measured: str, ok: bool) -> tuple[str, str]:
    TARGETS.append(Target(section, text, measured, ok))
    return text, verdict(ok)


def _set_noise(section: str, variants: Sequence[Variant]) -> None:
    noise = _others(variants)
    for t in TARGETS:
        if t.section == section:
            t.noise = noise


def _num(x: float, fmt: str = ",.0f") -> str:
    return "-" if math.isnan(x) else format(x, fmt)


# -- sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    runs: int
    client: str
    """The command line that produced the figures, shown in every header."""
    tmp: Path
    experiments: Sequence[str]
    skip_naive: bool
    naive_bounded: bool
    wait_quiet: float = 0.0
    """Before each run, wait up to this many seconds for other processes to go idle."""


def _throughput_section(
    o: Options, key: str, title: str, latency_ms: float, *, naive: bool, find_ratio: float
) -> None:
    phones = list(plan(MASK).tier("national"))
    assert len(phones) == 10_000, len(phones)
    empty = write_orders(o.tmp / "empty_orders.csv")
    notes = [
        f"{len(phones):,} candidates of {MASK} (all in the national tier), {IN_FLIGHT} in flight,",
        "no cache: Limits(max_in_flight=100, max_per_second=None, cache_ttl=0);",
        "orders file with the header only (all negative);",
        f"median of {o.runs} interleaved runs; checks/s = definite answers / wall;",
        "CPU = client process_time() (all threads) per check; srv CPU = the server process",
        "(/proc, not part of the client's figure) per request it received",
    ]
    if naive:
        notes.append("naive (a): gather over all 10,000 coroutines, no cap; naive (b): "
                     f"ThreadPoolExecutor({NAIVE_THREADS}) + asyncio.run per check")  # fmt: skip
    elif latency_ms:
        est = len(phones) * latency_ms / 1000 / NAIVE_THREADS
        notes.append(
            f"naive patterns skipped at {latency_ms:g} ms (optional): (b) alone needs >= "
            f"{len(phones):,} x {latency_ms:g} ms / {NAIVE_THREADS} threads = {est:.0f} s per run"
        )
    else:
        notes.append("naive patterns skipped (--skip-naive): their targets are not checked")
    with MockServer(latency_ms=latency_ms, orders=empty) as server:
        _header(title, server, o.client, notes)
        url = server.orders_url

        def run_find() -> tuple[int, str]:
            return asyncio.run(find_variant(url, MASK))

        def run_find_cached() -> tuple[int, str]:
            return asyncio.run(find_variant(url, MASK, limits=CACHED_LIMITS))

        variants = [
            Variant("find", run_find, "not_found"),
            Variant("find cache on", run_find_cached, "not_found"),
            Variant("hand-written", lambda: asyncio.run(hand_variant(url, phones)), "not_found"),
        ]
        for name in o.experiments:
            variants.append(Variant(f"find[{name}]", run_find, "not_found",
                                    patch=EXPERIMENTS[name]))  # fmt: skip
        if naive:
            variants.append(
                Variant(
                    "naive (a) gather",
                    lambda: asyncio.run(naive_gather_variant(url, phones)),
                    "not_found",
                )
            )
            if o.naive_bounded:
                variants.append(
                    Variant(
                        "naive (a') +sem100",
                        lambda: asyncio.run(naive_gather_variant(url, phones, bounded=True)),
                        "not_found",
                    )
                )
            variants.append(
                Variant(
                    "naive (b) threads", lambda: naive_threads_variant(url, phones), "not_found"
                )
            )
        measure(server, variants, o)

    by = {v.name: v for v in variants}
    hand_rate = by["hand-written"].med("rate")
    hand_cpu = by["hand-written"].med("cpu_us")
    find_rate = by["find"].med("rate")
    rows = []
    for v in variants:
        rate = v.med("rate")
        ratio = rate / hand_rate if hand_rate else float("nan")
        target, mark = "", "-"
        if v.name == "find":
            target, mark = _target(
                key, f"find >= {find_ratio:.2f}x hand-written", f"{ratio:.2f}x",
                ratio >= find_ratio and v.correct,
            )  # fmt: skip
            cpu_ratio = v.med("cpu_us") / hand_cpu if hand_cpu else math.nan
            _target(key, "find CPU <= 1.10x hand-written", f"{cpu_ratio:.2f}x",
                    cpu_ratio <= 1.10)  # fmt: skip
        elif v.name == "find cache on":
            target = f"(info) cache on: {ratio:.2f}x"
        elif v.name.startswith("find["):
            target = "(experiment)"
        elif v.name in ("naive (a) gather", "naive (b) threads"):
            speedup = find_rate / rate if rate else float("inf")
            target, mark = _target(
                key, f"find >= 4x {v.name}", f"{speedup:.1f}x", speedup >= 4 and v.correct
            )
            target = f"find >= 4x this: {speedup:.1f}x"
        elif v.name.startswith("naive"):
            target = f"(info) find is {find_rate / rate:.1f}x this" if rate else ""
        if not v.correct:
            mark = "WRONG"
        rows.append(
            [
                v.name,
                _fmt_wall(v),
                f"{rate:,.0f}",
                _num(v.med("cpu_us")),
                _num(v.med("server_cpu_us")),
                f"{ratio:.2f}x",
                f"{v.med('cpu_us') / hand_cpu:.2f}x" if hand_cpu else "-",
                target,
                mark,
                f"{median(s.requests for s in v.samples):,.0f}",
            ]
        )
    print(
        table(
            ["variant", "wall s (min-max)", "checks/s", "CPU µs/check", "srv CPU µs/req",
             "vs hand", "CPU vs hand", "target", "PASS/MISS", "srv reqs"],
            rows,
        )
    )  # fmt: skip
    _footer(variants)
    _set_noise(key, variants)


def section_zero(o: Options) -> None:
    _throughput_section(o, "0 ms", "engine: 0 ms latency, all negative", 0,
                        naive=not o.skip_naive, find_ratio=0.95)  # fmt: skip


def section_latency(o: Options) -> None:
    _throughput_section(o, f"{LATENCY_MS:g} ms", f"engine: {LATENCY_MS:g} ms latency, all "
                        "negative", LATENCY_MS, naive=False, find_ratio=0.95)  # fmt: skip


def section_first_hit(o: Options) -> None:
    tier = plan(MASK, seed=FIRST_HIT_SEED).tier("national")
    phones = list(tier)
    positive = phones[FIRST_HIT_AT - 1]
    orders = write_orders(o.tmp / "first_hit_orders.csv", {positive: 1})
    ideal = FIRST_HIT_AT / IN_FLIGHT * LATENCY_MS / 1000
    max_requests = FIRST_HIT_AT + IN_FLIGHT
    max_time = 1.15 * ideal
    notes = [
        f"{len(phones):,} candidates of {MASK} shuffled by plan(seed={FIRST_HIT_SEED});",
        f"the one positive is number {FIRST_HIT_AT:,} of that order; find(..., seed={FIRST_HIT_SEED})",
        f"ideal = {FIRST_HIT_AT:,} / {IN_FLIGHT} x {LATENCY_MS:g} ms = {ideal:.2f} s;",
        f"median of {o.runs} interleaved runs;",
        "requests = what the server counted (GET /stats diff, 0.3 s after the result);",
        "time to result = wall of `async with HttpOrderApi(...)` + find (cold connections);",
        "hand-written (same order, stops at the first positive) shown for reference",
    ]
    with MockServer(latency_ms=LATENCY_MS, orders=orders) as server:
        _header(f"engine: first hit at {FIRST_HIT_AT:,} of 10,000 shuffled, {LATENCY_MS:g} ms",
                server, o.client, notes)  # fmt: skip
        url = server.orders_url

        def run_find() -> tuple[int, str]:
            return asyncio.run(find_variant(url, MASK, seed=FIRST_HIT_SEED))

        variants = [
            Variant("find", run_find, positive),
            Variant(
                "hand-written",
                lambda: asyncio.run(hand_variant(url, phones, first=True)),
                positive,
            ),
        ]
        for name in o.experiments:
            variants.append(Variant(f"find[{name}]", run_find, positive, patch=EXPERIMENTS[name]))
        measure(server, variants, o, settle=0.3)

    hand_time = variants[1].med("wall")
    cores = os.cpu_count() or 1
    rows = []
    floors = []
    for v in variants:
        wall = v.med("wall")
        reqs = [s.requests for s in v.samples]
        target, mark = "", "-"
        if v.name == "find":
            t_ok = wall <= max_time
            r_ok = max(reqs) <= max_requests
            _target("first hit", f"requests <= {max_requests:,}", f"max {max(reqs):,}", r_ok)
            _target("first hit", f"time to result <= {max_time:.2f} s", f"{wall:.2f} s", t_ok)
            _target("first hit", "right result", "the planted number" if v.correct
                    else "wrong", v.correct)  # fmt: skip
            target = f"<= {max_time:.2f} s, <= {max_requests:,} req"
            missed = [w for w, ok in (("time", t_ok), ("requests", r_ok)) if not ok]
            mark = "PASS" if not missed else "MISS " + "+".join(missed)
        elif v.name.startswith("find["):
            target = "(experiment)"
        if not v.correct:
            mark = "WRONG"
        client_cpu = v.med("cpu")
        server_cpu = median(s.server_cpu or 0.0 for s in v.samples)
        floor = max(ideal, client_cpu, server_cpu, (client_cpu + server_cpu) / cores)
        floors.append(f"{v.name} {floor:.2f} s (client {client_cpu:.2f} + server "
                      f"{server_cpu:.2f} CPU-s)")  # fmt: skip
        rows.append(
            [
                v.name,
                _fmt_wall(v),
                f"{wall / ideal:.2f}x",
                f"{wall / hand_time:.2f}x" if hand_time else "-",
                f"{median(reqs):,.0f} (max {max(reqs):,})",
                f"{v.med('checks'):,.0f}",
                _num(v.med("cpu_us")),
                _num(v.med("server_cpu_us")),
                target,
                mark,
            ]
        )
    print(
        table(
            ["variant", "time to result s", "vs ideal", "vs hand", "srv requests", "checks",
             "CPU µs/check", "srv CPU µs/req", "target", "PASS/MISS"],
            rows,
        )
    )  # fmt: skip
    print(f"   lower bound max(ideal, client CPU, server CPU, (client + server CPU) / {cores} "
          "cores): " + "; ".join(floors))  # fmt: skip
    _footer(variants)
    _set_noise("first hit", variants)


async def _rate_find(url: str, masks: Sequence[str], limits: Limits) -> tuple[int, str]:
    # One checker shared by both lookups (as a batch run or the service does), so the rate
    # holds across them instead of restarting at each lookup.
    checked = 0
    found = []
    async with HttpOrderApi(url, max_connections=IN_FLIGHT) as api:
        checker = Checker(api, limits)
        for mask in masks:
            result = await find(mask, checker=checker)
            checked += sum(t.checked for t in result.tiers)
            found.append(result.phone or result.status)
    return checked, ",".join(found)


def section_rate_limit(o: Options) -> None:
    positives = [list(plan(m).tier("national"))[-1] for m in RATE_MASKS]
    orders = write_orders(o.tmp / "rate_orders.csv", dict.fromkeys(positives, 1))
    total = sum(plan(m).total for m in RATE_MASKS)
    limits = Limits(max_in_flight=IN_FLIGHT, max_per_second=RATE, cache_ttl=0)
    notes = [
        f"{len(RATE_MASKS)} lookups, {' and '.join(RATE_MASKS)} ({total:,} candidates),",
        "one tier each; the positive is the last candidate of each;",
        f"one Checker(api, Limits(max_in_flight={IN_FLIGHT}, max_per_second={RATE:g}, cache_ttl=0))",
        "shared by both find() calls; 1.1 s pause before each run (server window, not timed);",
        f"median of {o.runs} interleaved runs; goodput = definite answers / wall;",
        "429 share = 429s / requests the server received",
    ]
    with MockServer(rate_limit=RATE, orders=orders) as server:
        _header(f"engine: server rate limit {RATE:g}/s, find max_per_second={RATE:g}",
                server, o.client, notes)  # fmt: skip
        url = server.orders_url

        def run() -> tuple[int, str]:
            return asyncio.run(_rate_find(url, RATE_MASKS, limits))

        def drain() -> None:
            time.sleep(1.1)  # let the server's 1 s window empty: runs must not see each other

        expect = ",".join(positives)
        variants = [Variant("find", run, expect, before=drain)]
        for name in o.experiments:
            variants.append(
                Variant(f"find[{name}]", run, expect, patch=EXPERIMENTS[name], before=drain)
            )
        measure(server, variants, o, settle=0.05)

    rows = []
    for v in variants:
        goodput = v.med("rate")
        shares = [s.statuses.get("429", 0) / s.requests if s.requests else 0.0 for s in v.samples]
        share = median(shares)
        target, mark = "", "-"
        if v.name == "find":
            g_ok = goodput >= 180
            s_ok = share <= 0.01
            _target("rate limit", "goodput >= 180 checks/s", f"{goodput:.0f}/s", g_ok)
            _target("rate limit", "429s <= 1 % of requests", f"{share:.2%}", s_ok)
            _target("rate limit", "right result", "both planted numbers" if v.correct
                    else "wrong", v.correct)  # fmt: skip
            target = ">= 180/s, <= 1 % 429"
            missed = [w for w, ok in (("goodput", g_ok), ("429s", s_ok)) if not ok]
            mark = "PASS" if not missed else "MISS " + "+".join(missed)
        else:
            target = "(experiment)"
        if not v.correct:
            mark = "WRONG"
        rows.append(
            [
                v.name,
                _fmt_wall(v),
                f"{goodput:,.0f}",
                _num(v.med("cpu_us")),
                f"{median(s.requests for s in v.samples):,.0f}",
                f"{share:.2%} (max {max(shares):.2%})",
                target,
                mark,
            ]
        )
    print(
        table(
            ["variant", "wall s (min-max)", "goodput/s", "CPU µs/check", "srv requests",
             "429 share", "target", "PASS/MISS"],
            rows,
        )
    )  # fmt: skip
    _footer(variants)
    _set_noise("rate limit", variants)


_SECTIONS: dict[str, Callable[[Options], None]] = {
    "zero": section_zero,
    "latency": section_latency,
    "first-hit": section_first_hit,
    "rate-limit": section_rate_limit,
}


def _client_command() -> str:
    argv = list(sys.argv)
    with contextlib.suppress(ValueError):
        argv[0] = str(Path(argv[0]).resolve().relative_to(ROOT))
    return shown_command(["python", *argv])


def run(argv: Sequence[str] | None = None) -> None:
    """Entry of ``python scripts/bench.py engine`` (defaults) and of this script's CLI."""
    parser = argparse.ArgumentParser(prog="bench_engine.py", description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--experiment", action="append", default=[],
                        choices=sorted(EXPERIMENTS) or None,
                        help="add a find[NAME] row with a patched engine (repeatable)")  # fmt: skip
    parser.add_argument("--skip-naive", action="store_true",
                        help="leave out the naive patterns (their targets are then not checked)")  # fmt: skip
    parser.add_argument("--naive-bounded", action="store_true",
                        help="also run naive (a) with an asyncio.Semaphore(100) (info only)")  # fmt: skip
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run wait up to SECONDS for other processes to idle "
                             "(shared machines)")  # fmt: skip
    args = parser.parse_args(list(argv) if argv is not None else [])
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    client = _client_command()
    TARGETS.clear()
    started = time.perf_counter()
    print("== engine" + (f"   (experiments: {', '.join(args.experiment)})" if args.experiment
                         else ""))  # fmt: skip
    print(f"   python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, "
          f"{os.cpu_count()} CPUs; client pid {os.getpid()}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        for name in chosen:
            options = Options(
                runs=args.runs,
                client=client,
                tmp=Path(tmp),
                experiments=args.experiment,
                skip_naive=args.skip_naive,
                naive_bounded=args.naive_bounded,
                wait_quiet=args.wait_quiet,
            )
            _SECTIONS[name](options)
    print(f"\n== engine targets  ({client}; {time.perf_counter() - started:.0f} s in all)")
    rows = [[t.section, t.text, t.measured, _num(t.noise, ".2f"), verdict(t.ok)] for t in TARGETS]
    print(table(["section", "target", "measured", "others' cores (max)", "PASS/MISS"], rows))
    if any(t.noise > NOISY_CORES for t in TARGETS):
        print(f"   sections where other processes took > {NOISY_CORES} cores during a run are "
              "noisy: rerun on a quiet machine before trusting a PASS or a MISS there")  # fmt: skip


if __name__ == "__main__":
    run(sys.argv[1:])
