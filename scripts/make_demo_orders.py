"""Make the synthetic demo order store: ``data/demo_orders.csv`` and ``data/demo_cases.json``.

Every number is made up: drawn from real segments with random suffixes (seeded), so
the demo exercises the real segment database without touching anyone's data. For each
demo case a single hit is planted in the tier the case is meant to show, and no
background number fits any demo mask, so the demo's answers are known in advance.

Run: ``python scripts/make_demo_orders.py`` (after ``scripts/build_segments.py``).
"""

from __future__ import annotations

import csv
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lookup.domain.masks import parse_mask
from lookup.domain.segments import UNLOCATED, SegmentDB
from lookup.domain.tiers import plan

SEED = 20261121
BACKGROUND = 5_000

# (name, mask, hints, tier to plant in, position of the hit within that tier)
CASES: list[tuple[str, str, dict[str, str], str | None, int]] = [
    ("city hit", "138****2046", {"city": "杭州"}, "city", 37),
    ("province hit", "139****8812", {"city": "杭州"}, "province", 120),
    ("national hit", "186****3357", {"city": "杭州"}, "national", 150),
    ("unlocated hit", "196****6021", {"city": "杭州"}, "unlocated", 40),
    ("area code, city hit", "133****7310", {"area_code": "0728"}, "city", 5),
    ("not found", "13905710***", {"city": "杭州"}, None, 0),
]


def main() -> None:
    db = SegmentDB.load(ROOT / "data")
    rng = random.Random(SEED)
    orders: dict[str, int] = {}
    cases = []
    for name, mask, hints, tier_name, position in CASES:
        p = plan(mask, db, **hints)  # type: ignore[arg-type]
        expected = None
        if tier_name is not None:
            tier = p.tier(tier_name)  # type: ignore[arg-type]
            numbers = list(tier)
            expected = numbers[min(position, len(numbers) - 1)]
            orders[expected] = rng.randint(1, 9)
        counts = {t.name: t.count for t in p.tiers}
        cases.append(
            {
                "name": name,
                "mask": mask,
                "hints": hints,
                "expected_status": "matched" if expected else "not_found",
                "expected_tier": tier_name,
                "expected_phone": expected,
                "tiers": counts,
            }
        )

    masks = [parse_mask(m) for _, m, _, _, _ in CASES]
    located = [i for i, code in enumerate(db.codes) if code and code != UNLOCATED]
    while len(orders) < BACKGROUND + len(CASES):
        seg = 1_300_000 + rng.choice(located)
        number = f"{seg}{rng.randrange(10_000):04d}"
        if number in orders or any(m.matches(number) for m in masks):
            continue
        orders[number] = rng.randint(1, 5)

    out = ROOT / "data" / "demo_orders.csv"
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["phone", "total"])
        for number in sorted(orders):
            writer.writerow([number, orders[number]])
    (ROOT / "data" / "demo_cases.json").write_text(
        json.dumps(cases, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    print(f"{len(orders)} synthetic orders, {len(cases)} demo cases")


if __name__ == "__main__":
    main()
