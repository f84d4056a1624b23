"""The commands that read the segment data and send nothing: ``lookup plan MASK`` (which
numbers fit, tier by tier) and ``lookup segment 1380571`` (what a segment is).

They start without the engine, the settings or logging (``plan`` loads the settings only
when learned region counts may be on); :mod:`lookup.cli.find` shares the hint and sightings
helpers with them.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, TextIO

from lookup.cli.common import ExitStatus, settings_from_args

if TYPE_CHECKING:
    from lookup.domain.hints import HintArgs
    from lookup.domain.tiers import TierName, TierPlan
    from lookup.files.regions import RegionCounts

__all__ = [
    "cmd_plan",
    "cmd_segment",
    "first_regions",
    "hints",
    "plan_summary",
    "region_counts",
    "sightings",
]


def region_counts(args: argparse.Namespace) -> RegionCounts | None:
    """The learned counts when --learn-regions / LOOKUP_LEARN_REGIONS is on (or a --config
    may say so). Without any of them the settings are not loaded: ``plan`` starts fast."""
    import os

    env = {k.upper(): v for k, v in os.environ.items()}
    if not (getattr(args, "learn_regions", False) or getattr(args, "config", None)
            or env.get("LOOKUP_LEARN_REGIONS") or env.get("LOOKUP_CONFIG")):  # fmt: skip
        return None
    settings = settings_from_args(args)
    if not settings.learn_regions:
        return None
    from lookup.files.regions import RegionCounts

    return RegionCounts(settings.regions_file)


def sightings(p: TierPlan, args: argparse.Namespace) -> str:
    """The mask as the header shows it: the sightings as given, not their (maybe full)
    intersection, which is not yet known to be anyone's number."""
    if not args.also:
        return str(p.mask)
    from lookup.domain.masks import parse_mask

    return " + ".join(str(parse_mask(m)) for m in (args.mask, *args.also))


def hints(args: argparse.Namespace) -> HintArgs:
    """The hint options, read as :class:`~lookup.domain.models.Hints` reads them, without
    pydantic (``plan`` sends nothing and starts without it); a bad value is exit 2."""
    from lookup.domain.hints import HINT_FIELDS, hint_args

    return hint_args({name: getattr(args, name, None) for name in HINT_FIELDS})


def cmd_segment(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.domain.segments import SegmentDB

    db = SegmentDB.peek(args.data)  # one lookup: read only what it needs
    info = db.segment(args.segment)
    if info is None:
        if args.json:
            out.write(json.dumps({"segment": args.segment[:7], "known": False}) + "\n")
        else:
            out.write(f"{args.segment[:7]}: not a segment the numbering plan allows\n")
        return ExitStatus.NOT_FOUND
    if args.json:
        out.write(json.dumps(info.as_dict(), ensure_ascii=False) + "\n")
        return ExitStatus.OK
    if not info.located:
        out.write(f"{info.segment}: allowed by the numbering plan, region unknown (unlocated)")
        out.write(f"; carrier {info.carrier}\n" if info.carrier else "\n")
        return ExitStatus.OK
    out.write(
        f"{info.segment}  {info.province} {info.city}  carrier {info.carrier}  "
        f"area code {info.area_code}  zip {info.zip}\n"
    )
    if not info.standard:
        out.write(
            f"{info.segment}: outside the numbering plan (data-only/IoT or unassigned block): "
            "not a candidate unless --include-nonstandard\n"
        )
    return ExitStatus.OK


def plan_summary(p: TierPlan) -> dict[str, Any]:
    """The JSON shape of a plan (``plan --json``)."""
    return {
        "mask": str(p.mask),
        "region": p.region.as_dict() if p.region else None,
        "carrier": p.carrier,
        "total": p.total,
        "tiers": [{"name": t.name, "count": t.count} for t in p.tiers],
        "first_regions": {
            name: first_regions(p, name) for name in ("province", "national")
        },
        "excluded": p.excluded,
        "excluded_reason": p.excluded_reason,
        "data_version": p.db.version,
    }


def first_regions(p: TierPlan, name: TierName, n: int = 5) -> list[str]:
    """The first ``n`` regions a tier checks (cities in the province tier, provinces in the
    national tier, the city itself in the city tier), in its order."""
    seen: list[str] = []
    if name == "unlocated" or name == "nonstandard":
        return seen
    for seg in p.tier(name).segments:
        info = p.db.segment(seg)
        label = (info.province if name == "national" else info.city) if info else None
        if label and label not in seen:
            seen.append(label)
            if len(seen) == n:
                break
    return seen


def cmd_plan(args: argparse.Namespace, out: TextIO) -> int:
    from lookup.domain.order import NEARER
    from lookup.domain.segments import SegmentDB
    from lookup.domain.tiers import plan

    db = SegmentDB.peek(args.data)  # one lookup: read only what it needs
    hint = hints(args)
    counts = region_counts(args)
    p = plan(args.mask, db, max_candidates=args.max_candidates, seed=args.seed,
             include_nonstandard=args.include_nonstandard, also=args.also,
             order=counts.order() if counts else NEARER, **hint)  # fmt: skip
    if args.list_tier:
        if args.list_tier == "nonstandard" and not args.include_nonstandard:
            from lookup.domain.errors import ConfigError

            raise ConfigError("--list nonstandard needs --include-nonstandard")
        tier = p.tier(args.list_tier)
        if args.json:
            out.write(json.dumps({"tier": tier.name, "numbers": list(tier)}) + "\n")
        else:
            out.writelines(n + "\n" for n in tier)
        return ExitStatus.OK
    if args.json:
        out.write(json.dumps(plan_summary(p), ensure_ascii=False) + "\n")
        return ExitStatus.OK
    where = f" in {p.region}" if p.region else ""
    out.write(f"{sightings(p, args)}{where}: {p.total:,} candidates\n")
    width = max(10, *(len(t.name) for t in p.tiers))
    out.writelines(f"  {t.name:<{width}} {t.count:>7,}\n" for t in p.tiers)
    for name in ("province", "national"):
        first = first_regions(p, name)
        if len(first) > 1:
            out.write(f"  {name} checks first: {', '.join(first)}\n")
    if p.excluded:
        out.write(f"  {'excluded':<{width}} {p.excluded:>7,}  {p.excluded_reason}\n")
    return ExitStatus.OK
