"""Quota benchmark: the engine against a throttled, flaky order API, side by side.

    python scripts/bench.py quota
    python scripts/bench_quota.py [--sections nginx,faults,concurrent,throughput] [--runs 3]
                                  [--seeds 12]

Sections (every server on loopback, the mock in its own process, as in ``bench_engine``):

* ``nginx``: a real nginx ``limit_req`` (100 r/s, burst 20, bare 429s) in front of the mock;
  ``find('199****0000', city='广州')`` with the hit 60 % into the province tier, at
  ``max_in_flight=20`` with no rate ceiling, a ceiling of 300/s and one of 100/s. Goodput =
  requests nginx let through per second over the lookup (its access log); 429 share = of
  the requests sent, those nginx rejected. A fresh nginx (full burst) per variant.
* ``faults``: time to the right answer with the hit in the national tier (``186****3357``,
  杭州) under 30 % 500s + 10 % resets (mock seeds 1..``--seeds``, median and worst),
  against the same lookup without faults.
* ``concurrent``: 24 lookups (the 6 demo cases x 4) at once through one checker at 64 in
  flight, against ``run_batch`` over the same rows (its default 8 lookups in flight, and 24),
  and against the minimum: the sum of the hit positions (candidates before each hit + 1;
  every candidate for a miss).
* ``throughput``: ``find`` over 10,000 negative candidates (100 in flight, no ceiling, no
  cache) against the hand-written aiohttp loop of ``bench_engine``, at 0 ms and 20 ms.

One run per figure, except ``throughput`` (``--runs``, median, interleaved).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from _benchlib import MockServer, shown_command, stats_delta, table, verdict, write_orders
from bench_engine import MASK as THROUGHPUT_MASK
from bench_engine import Options, Variant, find_variant, hand_variant, measure
from support.nginx import NginxLimiter, find_nginx

from lookup.domain.models import Limits, LookupResult
from lookup.domain.tiers import plan
from lookup.engine.batch import BatchRow, run_batch
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders.http import HttpOrderApi

SECTIONS = ("nginx", "faults", "concurrent", "throughput")
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
NATIONAL = next(c for c in CASES if c["expected_tier"] == "national")
ROWS = [c for c in CASES for _ in range(4)]

QUOTA_MASK, QUOTA_CITY = "199****0000", "广州"
NGINX_RATE, NGINX_BURST = 100, 20
# (label, ceiling, goodput target /s, 429 share target or None)
NGINX_VARIANTS: tuple[tuple[str, float | None, float, float | None], ...] = (
    ("no ceiling", None, 70.0, 0.05),
    ("ceiling 300", 300.0, 70.0, 0.10),
    ("ceiling 100", 100.0, 85.0, None),
)
FAULT_LIMITS = Limits(max_in_flight=32, max_per_second=None, cache_ttl=0)
FAULTS = ("--error-rate", "0.3", "--reset-rate", "0.1")


@dataclass
class Target:
    section: str
    what: str
    target: str
    measured: str
    ok: bool | None


TARGETS: list[Target] = []


def _target(section: str, what: str, target: str, measured: str, ok: bool | None) -> str:
    TARGETS.append(Target(section, what, target, measured, ok))
    return verdict(ok)


def _header(title: str, notes: Sequence[str]) -> None:
    print(f"\n== {title}")
    for note in notes:
        print(f"   {note}")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- nginx limit_req --------------------------------------------------------------------------


def _province_hit() -> tuple[str, int]:
    tiers = plan(QUOTA_MASK, city=QUOTA_CITY).tiers
    at = int(tiers[1].count * 0.6)
    return list(tiers[1])[at], tiers[0].count + at + 1


async def _behind_nginx(url: str, ceiling: float | None) -> tuple[LookupResult, Checker, float]:
    limits = Limits(max_in_flight=20, max_per_second=ceiling, cache_ttl=0)
    async with HttpOrderApi(url) as api:
        checker = Checker(api, limits)
        t0 = time.time()
        result = await find(QUOTA_MASK, city=QUOTA_CITY, checker=checker, limits=limits)
    return result, checker, t0


def section_nginx(tmp: Path) -> None:
    binary = find_nginx()
    hit, position = _province_hit()
    _header(
        f"behind nginx limit_req {NGINX_RATE} r/s burst {NGINX_BURST} (bare 429s)",
        [
            (
                f"find('{QUOTA_MASK}', city='{QUOTA_CITY}'), max_in_flight=20, cache_ttl=0; the hit "
                f"is candidate {position:,} (60 % into the province tier)"
            ),
            "goodput = requests nginx passed per second between the start and the end of find;",
            "429 share = nginx's rejections / every request it got; a fresh nginx per variant",
        ],
    )
    if binary is None:
        print("   SKIPPED: nginx not installed (apt-get install nginx-light)")
        for label, _, _, _ in NGINX_VARIANTS:
            _target("nginx", label, "nginx", "not installed", None)
        return
    orders = write_orders(tmp / "quota_orders.csv", {hit: 2})
    rows = []
    with MockServer(orders=orders) as mock:
        port = int(mock.url.rsplit(":", 1)[1])
        for label, ceiling, goodput_min, share_max in NGINX_VARIANTS:
            with NginxLimiter(
                ("127.0.0.1", port), rate=NGINX_RATE, burst=NGINX_BURST, binary=binary
            ) as nginx:
                result, checker, t0 = asyncio.run(_behind_nginx(nginx.orders_url, ceiling))
                t1 = time.time()
            log = nginx.log()
            goodput = log.passed_per_second(t0, t1)
            share = log.rejected() / len(log.records) if log.records else 0.0
            right = result.status == "matched" and result.phone == hit
            targets = [f">= {goodput_min:.0f}/s"]
            ok = right and goodput >= goodput_min
            if share_max is not None:
                targets.append(f"429 <= {share_max:.0%}")
                ok = ok and share <= share_max
            measured = f"{goodput:.1f}/s, 429 {share:.1%}"
            mark = _target("nginx", label, ", ".join(targets), measured, ok)
            counters = checker.counters
            _progress(f"    nginx {label}: {t1 - t0:.2f} s, {measured}")
            rows.append(
                [
                    label,
                    "yes" if right else f"NO ({result.status})",
                    f"{t1 - t0:.2f}",
                    f"{len(log.records):,}",
                    f"{log.passed():,}",
                    f"{log.rejected():,}",
                    f"{goodput:.1f}",
                    f"{share:.1%}",
                    str(counters.breaker_opens),
                    f"{checker.rate:.0f}" if checker.rate is not None else "unpaced",
                    ", ".join(targets),
                    mark,
                ]
            )
    print(
        table(
            [
                "variant",
                "right",
                "wall s",
                "sent",
                "passed",
                "429",
                "goodput/s",
                "429 share",
                "breaker opens",
                "end rate/s",
                "target",
                "PASS/MISS",
            ],
            rows,
        )
    )


# -- faults ---------------------------------------------------------------------------------


async def _national(url: str) -> tuple[LookupResult, float]:
    async with HttpOrderApi(url) as api:
        t = time.perf_counter()
        result = await find(
            NATIONAL["mask"], checker=Checker(api, FAULT_LIMITS), **NATIONAL["hints"]
        )
        return result, time.perf_counter() - t


def section_faults(seeds: int) -> None:
    _header(
        "time to the right answer under 30 % errors + 10 % resets (national hit)",
        [
            (
                f"find('{NATIONAL['mask']}', city='{NATIONAL['hints']['city']}'): the hit is in the "
                "national tier; Limits(max_in_flight=32, max_per_second=None, cache_ttl=0),"
            ),
            "default retry / budget / breaker settings; time = find only (adapter opened first);",
            f"the faulty server with mock seeds 1..{seeds}: which checks fail differs by seed and",
            "by timing, and a hit whose own check failed is the slow case",
        ],
    )
    rows = []
    fault_free = 0.0
    walls: list[float] = []
    checks: list[int] = []
    all_right = True
    runs: list[tuple[str, tuple[str, ...]]] = [("no faults", ())]
    runs += [(f"faults, seed {n}", (*FAULTS, "--seed", str(n))) for n in range(1, seeds + 1)]
    for label, extra in runs:
        with MockServer(extra=extra) as mock:
            before = mock.stats()
            result, wall = asyncio.run(_national(mock.orders_url))
            delta = stats_delta(before, mock.stats())
            mock_command = mock.command
        right = result.status == "matched" and result.phone == NATIONAL["expected_phone"]
        if extra:
            walls.append(wall)
            checks.append(result.checks_sent)
            all_right = all_right and right
        else:
            fault_free = wall
        statuses = " ".join(f"{c}:{n}" for c, n in sorted(delta["statuses"].items()))
        rows.append(
            [
                label,
                "yes" if right else f"NO ({result.status})",
                f"{wall:.2f}",
                f"{result.checks_sent:,}",
                f"{result.retries:,}",
                f"{delta['orders_requests']:,}",
                statuses,
                "yes" if result.complete else "no",
            ]
        )
        _progress(f"    {label}: {wall:.2f} s ({mock_command})")
    median, worst = statistics.median(walls), max(walls)
    _target(
        "faults",
        f"30 % errors + 10 % resets, {seeds} seeds",
        "right answer",
        f"median {median:.2f} s = {median / fault_free:.1f}x, worst {worst:.2f} s = "
        f"{worst / fault_free:.1f}x the fault-free {fault_free:.2f} s",
        all_right,
    )
    print(
        table(
            [
                "server",
                "right",
                "time s",
                "checks sent",
                "retries",
                "srv reqs",
                "srv statuses",
                "complete",
            ],
            rows,
        )
    )
    print(
        f"   faults: median {median:.2f} s ({median / fault_free:.1f}x the fault-free "
        f"{fault_free:.2f} s), worst {worst:.2f} s ({worst / fault_free:.1f}x); checks sent "
        f"median {statistics.median(checks):,.0f}, worst {max(checks):,}"
    )


# -- 24 concurrent lookups -------------------------------------------------------------------


def _hit_position(case: dict[str, Any]) -> int:
    """Candidates checked up to and including the hit (every one when there is none)."""
    n = 0
    for tier in plan(case["mask"], **case["hints"]).tiers:
        phones = list(tier)
        if case["expected_phone"] in phones:
            return n + phones.index(case["expected_phone"]) + 1
        n += tier.count
    return n


async def _concurrent(url: str) -> dict[str, tuple[int, int, float, bool]]:
    limits = Limits(max_in_flight=64, max_per_second=None, cache_ttl=0)
    out: dict[str, tuple[int, int, float, bool]] = {}
    async with HttpOrderApi(url) as api:
        shared = Checker(api, limits)
        t = time.perf_counter()
        results = await asyncio.gather(
            *(find(c["mask"], checker=shared, **c["hints"]) for c in ROWS)
        )
        wall = time.perf_counter() - t
        right = all(
            (r.status, r.phone) == (c["expected_status"], c["expected_phone"])
            for c, r in zip(ROWS, results, strict=True)
        )
        out["24 x find(), one checker"] = (
            sum(r.checks_sent for r in results),
            shared.counters.requests,
            wall,
            right,
        )
        for width in (8, 24):
            checker = Checker(api, limits)
            rows = [BatchRow(row=n, mask=c["mask"], **c["hints"]) for n, c in enumerate(ROWS, 1)]
            t = time.perf_counter()
            summary = await run_batch(rows, checker=checker, lookups_in_flight=width)
            wall = time.perf_counter() - t
            right = summary.by_status["matched"] == 20 and summary.all_definite
            out[f"run_batch, {width} lookups in flight"] = (
                summary.checks_sent,
                checker.counters.requests,
                wall,
                right,
            )
    return out


def section_concurrent() -> None:
    minimum = sum(_hit_position(c) for c in ROWS)
    distinct = sum(_hit_position(c) for c in CASES)
    _header(
        "24 concurrent lookups through one checker at 64 in flight",
        [
            (
                "the 6 demo cases x 4 against the bundled mock; Limits(max_in_flight=64, "
                "max_per_second=None, cache_ttl=0);"
            ),
            (
                f"minimum = sum of the hit positions = {minimum:,} for the 24 rows, {distinct:,} for "
                "the 6 distinct ones"
            ),
            (
                "(the 4 copies of a case share requests through single flight, so the distinct "
                "figure is the floor)"
            ),
        ],
    )
    with MockServer() as mock:
        figures = asyncio.run(_concurrent(mock.orders_url))
    batch8 = figures["run_batch, 8 lookups in flight"][0]
    rows = []
    for label, (sent, requests, wall, right) in figures.items():
        rows.append(
            [
                label,
                "yes" if right else "NO",
                f"{wall:.2f}",
                f"{sent:,}",
                f"{requests:,}",
                f"{sent / distinct:.2f}x",
                f"{sent / batch8:.2f}x",
            ]
        )
    sent = figures["24 x find(), one checker"][0]
    mark = _target(
        "concurrent",
        "24 concurrent find()",
        "<= 1.05x run_batch",
        f"{sent:,} = {sent / batch8:.2f}x of {batch8:,}",
        sent <= 1.05 * batch8 and figures["24 x find(), one checker"][3],
    )
    print(
        table(
            [
                "variant",
                "right",
                "wall s",
                "checks sent",
                "checker reqs",
                "vs minimum",
                "vs run_batch(8)",
            ],
            rows,
        )
    )
    print(f"   target: 24 x find() <= 1.05x run_batch(8): {mark}")


# -- throughput vs the hand-written loop -----------------------------------------------------


def section_throughput(tmp: Path, runs: int) -> None:
    phones = list(plan(THROUGHPUT_MASK).tier("national"))
    empty = write_orders(tmp / "empty_orders.csv")
    o = Options(
        runs=runs,
        client=shown_command(sys.argv),
        tmp=tmp,
        experiments=(),
        skip_naive=True,
        naive_bounded=False,
    )
    _header(
        "find vs the hand-written aiohttp loop (10,000 negative candidates)",
        [
            (
                f"{THROUGHPUT_MASK} (national tier), Limits(max_in_flight=100, max_per_second=None, "
                f"cache_ttl=0); median of {runs} interleaved runs; checks/s = answers / wall"
            ),
        ],
    )
    rows = []
    for latency, needed in ((0.0, 0.9), (20.0, 0.95)):
        with MockServer(latency_ms=latency, orders=empty) as server:
            url = server.orders_url

            def run_find(u: str = url) -> tuple[int, str]:
                return asyncio.run(find_variant(u, THROUGHPUT_MASK))

            def run_hand(u: str = url) -> tuple[int, str]:
                return asyncio.run(hand_variant(u, phones))

            variants = [
                Variant("find", run_find, "not_found"),
                Variant("hand-written", run_hand, "not_found"),
            ]
            measure(server, variants, o)
        find_rate, hand_rate = (v.med("rate") for v in variants)
        noise = max((s.others_cores for v in variants for s in v.samples), default=float("nan"))
        ratio = find_rate / hand_rate if hand_rate else float("nan")
        right = all(v.correct for v in variants)
        mark = _target(
            "throughput",
            f"{latency:g} ms",
            f">= {needed:.2f}x hand-written",
            f"{ratio:.2f}x ({find_rate:,.0f} vs {hand_rate:,.0f}/s)",
            right and ratio >= needed,
        )
        rows.append(
            [
                f"{latency:g} ms",
                f"{noise:.2f}",
                f"{find_rate:,.0f}",
                f"{hand_rate:,.0f}",
                f"{ratio:.2f}x",
                f">= {needed:.2f}x",
                mark,
            ]
        )
    print(
        table(
            [
                "latency",
                "other procs, cores",
                "find checks/s",
                "hand-written checks/s",
                "ratio",
                "target",
                "PASS/MISS",
            ],
            rows,
        )
    )


# -- main ------------------------------------------------------------------------------------


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of the throughput section")
    parser.add_argument(
        "--seeds", type=int, default=12, help="faulty-server seeds of the faults section"
    )
    args = parser.parse_args(argv if argv is not None else [])
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    print(f"== quota: {shown_command([sys.executable, *sys.argv])}")
    with tempfile.TemporaryDirectory(prefix="bench-quota-") as folder:
        tmp = Path(folder)
        for name in chosen:
            if name == "nginx":
                section_nginx(tmp)
            elif name == "faults":
                section_faults(args.seeds)
            elif name == "concurrent":
                section_concurrent()
            else:
                section_throughput(tmp, args.runs)
    print("\n== quota targets")
    print(
        table(
            ["section", "case", "target", "measured", "PASS/MISS"],
            [[t.section, t.what, t.target, t.measured, verdict(t.ok)] for t in TARGETS],
        )
    )


if __name__ == "__main__":
    run(sys.argv[1:])
