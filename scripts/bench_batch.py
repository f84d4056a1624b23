"""Batch throughput: checks/s of ``run_batch`` over 1,000 masks vs one single lookup.

    python scripts/bench.py batch

The mock order API runs in its own process at 0 ms latency. Both sides use the same
``Limits(max_in_flight=100, max_per_second=None, cache_ttl=0)``:

* single: ``find`` of one 10,000-candidate mask with no orders (every candidate checked);
* batch: ``run_batch`` of 1,000 masks ``SSSSSSSDD**`` (a 杭州 segment, two known digits,
  two hidden) with the hint 杭州: 100 candidates each, all in the city tier; 95 % have a
  planted order at one of their first 20 candidates, 5 % have none (~25,000 checks).

Target: batch checks/s >= 0.8 x single. A third line runs the same 1,000 rows through the
CLI (``lookup batch``: process start-up, journal and output included), for information;
it is skipped when the machine is so slow that the bench would pass ~2 minutes.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _benchlib import ROOT, MockServer, median, spread, stats_delta, table, write_orders

ROWS = 1000
ROUNDS = 3
HIT_WITHIN = 20
NOT_FOUND_EVERY = 20
CLI_DEADLINE = 80.0  # seconds since the start: no CLI run after that
TARGET = 0.8
SINGLE_MASK = "138****0000"
LOOKUPS_IN_FLIGHT = 8


def _city_segments() -> list[int]:
    from lookup.domain.tiers import plan

    segments: list[int] = []
    for prefix in ("134", "135", "136", "137", "138", "139", "150", "151", "152", "158", "159"):
        segments.extend(plan(f"{prefix}****0000", city="杭州").tier("city").segments)
    return segments


def make_cases(seed: int = 7) -> tuple[list[dict[str, str]], dict[str, int]]:
    """1,000 masks with the hint 杭州, and the orders planted behind 90 % of them."""
    rng = random.Random(seed)
    segments = _city_segments()
    pairs = [(s, d) for s in segments for d in range(100)]
    rng.shuffle(pairs)
    rows: list[dict[str, str]] = []
    orders: dict[str, int] = {}
    for i, (segment, digits) in enumerate(pairs[:ROWS]):
        head = f"{segment}{digits:02d}"
        rows.append({"id": f"r{i + 1}", "mask": f"{head}**", "city": "杭州"})
        if i % NOT_FOUND_EVERY != NOT_FOUND_EVERY - 1:
            phone = f"{head}{rng.randrange(HIT_WITHIN):02d}"
            if not phone.startswith("138") or not phone.endswith("0000"):  # keep SINGLE_MASK dry
                orders[phone] = 1 + rng.randrange(5)
    return rows, orders


async def _single(url: str) -> tuple[int, float]:
    from lookup.domain.models import Limits
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import find
    from lookup.orders.http import HttpOrderApi

    limits = Limits(max_in_flight=100, max_per_second=None, cache_ttl=0)
    async with HttpOrderApi(url, max_connections=100) as api:
        checker = Checker(api, limits)
        await find("138057100**", checker=checker)  # warm the connection pool
        t = time.perf_counter()
        result = await find(SINGLE_MASK, checker=checker)
        wall = time.perf_counter() - t
    assert result.status == "not_found", result.status
    return result.checks_sent, wall


async def _batch(url: str, rows: list[dict[str, str]]) -> tuple[int, float, dict[str, int]]:
    from lookup.domain.models import Limits
    from lookup.engine.batch import BatchRow, run_batch
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import find
    from lookup.orders.http import HttpOrderApi

    limits = Limits(max_in_flight=100, max_per_second=None, cache_ttl=0)
    batch_rows = [BatchRow(row=i + 1, **r) for i, r in enumerate(rows)]
    async with HttpOrderApi(url, max_connections=100) as api:
        checker = Checker(api, limits)
        await find("138057100**", checker=checker)  # warm the connection pool
        t = time.perf_counter()
        summary = await run_batch(batch_rows, checker=checker, lookups_in_flight=LOOKUPS_IN_FLIGHT)
        wall = time.perf_counter() - t
    counts = {s: n for s, n in summary.by_status.items() if n}
    return summary.checks_sent, wall, counts


def _cli(server: MockServer, folder: Path, in_csv: Path, n: int) -> tuple[int, float, int]:
    out = folder / f"cli{n}.jsonl"
    argv = [
        sys.executable, "-m", "lookup", "batch", str(in_csv), "--out", str(out),
        "--api", server.orders_url, "--max-in-flight", "100", "--rate", "none",
        "--lookups-in-flight", str(LOOKUPS_IN_FLIGHT),
    ]  # fmt: skip
    env = {**os.environ, "LOOKUP_CACHE_TTL": "0", "PYTHONPATH": str(ROOT)}
    before = server.stats()
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"lookup batch exited {proc.returncode}: {proc.stderr[-2000:]}")
    requests = stats_delta(before, server.stats())["orders_requests"]
    return requests, wall, sum(1 for _ in out.open(encoding="utf-8"))


def run() -> None:
    print("== batch")
    started = time.perf_counter()
    rows, orders = make_cases()
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        folder = Path(tmp)
        orders_file = write_orders(folder / "orders.csv", orders)
        in_csv = folder / "in.csv"
        with in_csv.open("w", encoding="utf-8") as stream:
            stream.write("id,mask,city\n")
            stream.writelines(f"{r['id']},{r['mask']},{r['city']}\n" for r in rows)
        with MockServer(orders=orders_file) as server:
            print(f"mock: {server.command}")
            print(f"{ROWS:,} rows, {len(orders):,} planted orders; single mask {SINGLE_MASK} "
                  "(10,000 candidates, none with orders)")  # fmt: skip
            singles: list[tuple[int, float]] = []
            batches: list[tuple[int, float, dict[str, int]]] = []
            for _ in range(ROUNDS):  # interleaved, so drift hits both alike
                singles.append(asyncio.run(_single(server.orders_url)))
                batches.append(asyncio.run(_batch(server.orders_url, rows)))
            late = time.perf_counter() - started > CLI_DEADLINE
            cli = None if late else _cli(server, folder, in_csv, 0)
    single_rates = [c / w for c, w in singles]
    batch_rates = [c / w for c, w, _ in batches]
    s_rate, b_rate = median(single_rates), median(batch_rates)
    b_checks = int(median([c for c, _, _ in batches]))
    ratio = b_rate / s_rate
    lines = [
        ["single lookup (find)", f"{singles[0][0]:,}", f"{median([w for _, w in singles]):.2f}",
         f"{s_rate:,.0f}", spread(single_rates)],
        [f"batch (run_batch, {LOOKUPS_IN_FLIGHT} at once)", f"{b_checks:,}",
         f"{median([w for _, w, _ in batches]):.2f}", f"{b_rate:,.0f}", spread(batch_rates)],
    ]  # fmt: skip
    if cli is not None:
        lines.append(["batch CLI end to end (1 run)", f"{cli[0]:,}", f"{cli[1]:.2f}",
                      f"{cli[0] / cli[1]:,.0f}", "incl. start-up"])  # fmt: skip
    print(table(["run", "checks", "wall s", "checks/s", f"range ({ROUNDS} runs)"], lines))
    print(
        f"rows by status: {batches[0][2]}"
        + (f"; CLI wrote {cli[2]:,} rows" if cli else "; CLI run skipped (slow machine)")
    )
    print(f"bench time {time.perf_counter() - started:.0f} s")
    verdict = "PASS" if ratio >= TARGET else "MISS"
    print(f"batch / single checks/s: {ratio:.2f}x (target >= {TARGET}x)  {verdict}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    run()
