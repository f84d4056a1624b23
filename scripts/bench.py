"""Benchmarks: figures printed side by side, not timed tests (shared machines are noisy).

    python scripts/bench.py foundation   # SegmentDB.load, plan + iteration, cold CLI
    python scripts/bench.py engine       # find vs hand-written loop vs naive patterns
    python scripts/bench.py cli          # cold `lookup demo` / `lookup find --api demo`; plan vs python
    python scripts/bench.py batch        # batch checks/s vs single-lookup engine
    python scripts/bench.py batchmem     # `lookup batch` peak RSS at 10k/100k rows (LOOKUP_BENCH_ROWS)
    python scripts/bench.py service      # lookups/s, p50/p99 with 50 concurrent clients
    python scripts/bench.py servicecpu   # the service's CPU per cached lookup at c=50
    python scripts/bench.py sources      # PostgreSQL source; find on uvloop vs the default loop
    python scripts/bench.py web          # desk page vs CLI: one lookup, a 1,000-row job
    python scripts/bench.py quota        # nginx limit_req goodput, faults, 24 lookups, throughput
    python scripts/bench.py scale        # service lookups/s on 1 process vs 2 and 4 workers
    python scripts/bench.py order        # numbers checked to the answer: plain, nearer, learned
    python scripts/bench.py cached       # a cached 100-candidate lookup's CPU in-process
    python scripts/bench.py fast         # [fast] (uvloop + orjson): find vs hand-tuned loop; parsers
    python scripts/bench.py all
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def _median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times), max(times)


def _cold(cmd: list[str], runs: int = 7) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def bench_foundation() -> None:
    from lookup.domain.segments import SegmentDB
    from lookup.domain.tiers import plan

    print("== foundation")
    SegmentDB.load()  # warm the page cache: we measure loading, not the disk
    med, lo, hi = _median_ms(SegmentDB.load, 20)
    print(f"SegmentDB.load            median {med:6.2f} ms  (min {lo:.2f}, max {hi:.2f}; n=20)")
    gc.collect()
    tracemalloc.start()
    db = SegmentDB.load()
    size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"SegmentDB memory          {size / 2**20:6.2f} MiB held, {peak / 2**20:.2f} MiB peak")

    def plan_and_iterate() -> int:
        p = plan("138****1234", db, city="杭州")
        return sum(1 for t in p.tiers for _ in t)

    assert plan_and_iterate() == 10_000
    med, lo, hi = _median_ms(plan_and_iterate, 20)
    print(f"plan + iterate 10,000     median {med:6.2f} ms  (min {lo:.2f}, max {hi:.2f}; n=20)")
    med, lo, hi = _median_ms(lambda: plan("138****1234", db, city="杭州"), 20)
    print(f"plan only (counts known)  median {med:6.2f} ms  (min {lo:.2f})")
    py = [sys.executable, "-c", "pass"]
    base, _ = _cold(py)
    med, lo = _cold([sys.executable, "-m", "lookup", "segment", "1380571"])
    print(f"cold `lookup segment`     median {med:6.1f} ms  (min {lo:.1f}; bare python {base:.1f})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="all",
                        choices=["foundation", "engine", "cli", "batch", "batchmem", "service",
                                 "servicecpu", "sources", "web", "quota", "scale", "order", "chunks",
                                 "hostile", "cached", "fast", "all"])  # fmt: skip
    args = parser.parse_args(argv)
    everything = ["foundation", "engine", "cli", "batch", "batchmem", "service", "servicecpu",
                  "sources", "web", "quota", "scale", "order", "chunks", "hostile", "cached",
                  "fast"]  # fmt: skip
    chosen = everything if args.what == "all" else [args.what]
    for name in chosen:
        if name == "foundation":
            bench_foundation()
        else:
            import importlib

            module = importlib.import_module(f"bench_{name}")
            module.run()


if __name__ == "__main__":
    main()
