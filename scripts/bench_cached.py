"""A cached 100-candidate lookup: the engine's own CPU when every answer is in the cache.

One :class:`~lookup.engine.checker.Checker` (outcome cache on, the CLI's default limits, and
16 in flight for comparison) over an in-process fake order API; ``13800**4400`` (100
candidates, no hit) is looked up once to fill the cache, then :data:`LOOKUPS` more times:
CPU ms per lookup (``time.process_time``), median of :data:`ROUNDS` rounds with the spread.
Target: <= 0.3 ms.

    python scripts/bench.py cached
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _benchlib import median, spread, table

from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders import FakeOrderApi

MASK = "13800**4400"
LOOKUPS = 200
ROUNDS = 5


async def _rounds(limits: Limits) -> tuple[list[float], int]:
    api = FakeOrderApi(lambda phone: False)
    checker = Checker(api, limits)
    first = await find(MASK, checker=checker)
    sent = len(api.calls)
    out = []
    for _ in range(ROUNDS):
        cpu = time.process_time()
        for _ in range(LOOKUPS):
            await find(MASK, checker=checker)
        out.append((time.process_time() - cpu) / LOOKUPS * 1e3)
    assert len(api.calls) == sent, "the cached lookups sent requests"
    return out, first.checks_sent


def run() -> None:
    rows = []
    for name, limits in (("default limits (100 in flight)", Limits()),
                         ("16 in flight", Limits(max_in_flight=16))):  # fmt: skip
        ms, checked = asyncio.run(_rounds(limits))
        rows.append([name, f"{checked}", f"{median(ms):.3f} ({spread(ms)})",
                     "met" if median(ms) <= 0.3 else f"missed by {median(ms) - 0.3:.3f} ms"])  # fmt: skip
    print(f"\n== a cached {MASK} lookup in-process ({LOOKUPS} lookups x {ROUNDS} rounds, "
          "fake API, cache on)")  # fmt: skip
    print(table(["checker", "candidates sent once", "CPU ms/lookup", "target <= 0.3 ms"], rows))


if __name__ == "__main__":
    run()
