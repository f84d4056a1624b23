"""Numbers checked to the answer by the order inside a tier: a simulation, no network.

    python scripts/bench.py order
    python scripts/bench_order.py [--lookups 2000] [--warmup 500] [--seed 7]

2,000 lookups of 10 masks (``1xx****abcd``, 10,000 candidates each) hinted 杭州, whose
hits are planted by three distributions over the located segments the masks allow:

- ``uniform``: every segment alike (hits spread over the country);
- ``near``: a segment's weight falls with its region's distance from 杭州 (exp(-d/300 km));
- ``distant``: 90 % of the hits in 新疆, 黑龙江 and 云南 (a shop with a distant customer
  base), the rest uniform.

Each runs with today's plain order, nearer first, and learned (counts recorded from a
warm-up of 500 lookups of the same distribution, then from every lookup; the learned plans
are re-made every 50 lookups). A lookup's cost is the hit's position in the plan + 1: the
numbers the matcher checks, one at a time, to reach it. The sampled mean carries about
1.5 % of noise; the exact mean (each lookup's plan's expected cost under the distribution)
does not. Also: the candidates of 10 masked
pairs before and after ``--also``.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lookup.domain.order import NEARER, RegionOrder, distance_km
from lookup.domain.segments import FIRST_SEGMENT, SegmentDB
from lookup.domain.tiers import TierPlan, plan

CITY = "杭州"
PREFIXES = ("138", "139", "150", "186", "133", "137", "158", "188", "189", "135")
DISTANT = ("新疆", "黑龙江", "云南")
REFRESH = 50
THRESHOLD = 50


def _positions(p: TierPlan) -> dict[int, int]:
    """Segment -> numbers checked before its first number (one tail per segment here)."""
    out: dict[int, int] = {}
    before = 0
    for tier in p.tiers:
        width = len(tier.tails)
        for i, seg in enumerate(tier.segments):
            out[seg] = before + i * width
        before += tier.count
    return out


def _weights(kind: str, segs: Sequence[int], db: SegmentDB) -> list[float]:
    codes = db.codes
    names = db.region_names()
    geo = db.geo()
    here = geo.points[min(db.region_codes([CITY]))]
    near_w = [0.0] + [math.exp(-distance_km(here, geo.points[c]) / 300.0)
                      for c in range(1, len(names) + 1)]  # fmt: skip
    out = []
    for seg in segs:
        code = codes[seg - FIRST_SEGMENT]
        if kind == "uniform":
            out.append(1.0)
        elif kind == "near":
            out.append(near_w[code])
        else:
            out.append(1.0 if names[code - 1][0] in DISTANT else 0.0)
    if kind == "distant":  # 90 % on the distant provinces, 10 % spread over all
        far = sum(out) or 1.0
        spread = 0.1 * far / 0.9 / len(out)
        out = [w + spread for w in out]
    return out


def simulate(
    kind: str, lookups: int, warmup: int, seed: int, db: SegmentDB
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Costs per order: sampled (one planted hit per lookup) and exact (the expected cost of
    each lookup's plan under the distribution, free of sampling noise)."""
    rng = random.Random(seed)
    masks = [f"{p}****{rng.randrange(10_000):04d}" for p in PREFIXES]
    plain = {m: plan(m, db, city=CITY, order=None) for m in masks}
    nearer = {m: plan(m, db, city=CITY, order=NEARER) for m in masks}
    draws: dict[str, tuple[list[int], list[float]]] = {}
    weights: dict[str, list[float]] = {}
    for m, p in plain.items():
        segs = [s for t in p.tiers if t.name != "unlocated" for s in t.segments]
        weights[m] = _weights(kind, segs, db)
        draws[m] = (segs, list(itertools.accumulate(weights[m])))

    def expected(m: str, pos: dict[int, int]) -> float:
        """The exact mean cost of mask m's lookups under the distribution (no sampling)."""
        segs, cum = draws[m]
        return sum(w * (pos[s] + 1) for s, w in zip(segs, weights[m], strict=True)) / cum[-1]

    pos_plain = {m: _positions(p) for m, p in plain.items()}
    pos_near = {m: _positions(p) for m, p in nearer.items()}
    exact_plain = {m: expected(m, pos_plain[m]) for m in masks}
    exact_near = {m: expected(m, pos_near[m]) for m in masks}
    counts: Counter[str] = Counter()
    learned_pos: dict[str, dict[int, int]] = {}
    exact_learned: dict[str, float] = {}

    def learned_position(m: str, seg: int) -> int:
        if m not in learned_pos:
            order = RegionOrder(dict(counts), threshold=THRESHOLD)
            learned_pos[m] = _positions(plan(m, db, city=CITY, order=order))
            exact_learned[m] = expected(m, learned_pos[m])
        return learned_pos[m][seg]

    def draw() -> tuple[str, int]:
        m = masks[rng.randrange(len(masks))]
        segs, cum = draws[m]
        return m, segs[bisect.bisect_left(cum, rng.random() * cum[-1])]

    def record(seg: int) -> None:
        info = db.segment(seg)
        assert info is not None and info.city is not None
        counts[info.city] += 1

    for n in range(warmup):
        _, seg = draw()
        record(seg)
        if n % REFRESH == REFRESH - 1:
            learned_pos.clear()
    learned_pos.clear()
    cost: dict[str, list[float]] = {"plain": [], "nearer": [], "learned": []}
    exact: dict[str, list[float]] = {"plain": [], "nearer": [], "learned": []}
    for n in range(lookups):
        m, seg = draw()
        cost["plain"].append(pos_plain[m][seg] + 1)
        cost["nearer"].append(pos_near[m][seg] + 1)
        cost["learned"].append(learned_position(m, seg) + 1)
        exact["plain"].append(exact_plain[m])
        exact["nearer"].append(exact_near[m])
        exact["learned"].append(exact_learned[m])
        record(seg)
        if n % REFRESH == REFRESH - 1:
            learned_pos.clear()
    return cost, exact


def _p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10)[-1]


def sightings(db: SegmentDB, seed: int) -> None:
    from lookup.domain.masks import combine_sightings

    rng = random.Random(seed)
    print("\n--also: candidates before and after, 10 masked pairs (the second sighting"
          " shows 4-7 of the digits the first hides)")  # fmt: skip
    shapes: list[Callable[[str], tuple[str, str]]] = [
        lambda n: (n[:3] + "****" + n[7:], n[:7] + "****"),
        lambda n: (n[:3] + "****" + n[7:], n[:5] + "******"),
        lambda n: (n[:3] + "****" + n[7:], n[:3] + "**" + n[5:7] + "****"),
        lambda n: (n[:3] + "*****" + n[8:], n[:6] + "*****"),
        lambda n: (n[:4] + "****" + n[8:], n[:3] + "**" + n[5:]),
    ]
    segs = [s for s in range(1_380_000, 1_400_000) if db.segment(s) is not None]
    for i in range(10):
        number = f"{rng.choice(segs)}{rng.randrange(10_000):04d}"
        first, second = shapes[i % len(shapes)](number)
        before = plan(first, db, max_candidates=10**6).total
        after = plan(combine_sightings(first, [second]), db, max_candidates=10**6).total
        print(f"  {first} + {second}: {before:>6,} -> {after:>4,} candidates")


def run(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv or [])
    db = SegmentDB.default()
    print("== order: numbers checked to the answer (hint 杭州, 10 masks of 10,000 candidates)")
    t0 = time.perf_counter()
    print(f"{'distribution':<12} {'order':<8} {'mean':>8} {'p90':>8} {'vs plain':>9}"
          f" {'exact mean':>11} {'vs plain':>9}")  # fmt: skip
    for kind in ("uniform", "near", "distant"):
        cost, exact = simulate(kind, args.lookups, args.warmup, args.seed, db)
        base = statistics.fmean(cost["plain"])
        exact_base = statistics.fmean(exact["plain"])
        for name, xs in cost.items():
            mean, ex = statistics.fmean(xs), statistics.fmean(exact[name])
            print(f"{kind:<12} {name:<8} {mean:8.0f} {_p90(xs):8.0f} {mean / base - 1:+9.1%}"
                  f" {ex:11.0f} {ex / exact_base - 1:+9.1%}")  # fmt: skip
    print(f"({args.lookups:,} lookups per distribution, learned after {args.warmup} warm-up "
          f"lookups, threshold {THRESHOLD}; {time.perf_counter() - t0:.1f} s)")  # fmt: skip
    sightings(db, args.seed)


if __name__ == "__main__":
    run(sys.argv[1:])
