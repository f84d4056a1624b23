"""Tier plans: which numbers fit a mask, split into disjoint tiers by region.

``city`` (the hint's city labels), ``province`` (the rest of its province),
``national`` (every other located segment) and ``unlocated`` (segments the
numbering plan allows but the database cannot place). Located segments the
numbering plan rejects (data-only/IoT ranges, stray rows in unassigned ranges) are
left out and counted as ``excluded``; ``include_nonstandard=True`` puts them back as a
last tier, ``nonstandard``. The union of the tiers and the excluded numbers is every
number that fits the mask. Counts are exact before anything is generated; numbers are
produced lazily, segment by segment.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from typing_extensions import TypeAliasType

from lookup.domain.errors import InvalidMaskError, TooManyCandidatesError, UnknownRegionError
from lookup.domain.masks import HIDDEN, Mask, combine_sightings
from lookup.domain.order import NEARER, RegionOrder
from lookup.domain.privacy import quote
from lookup.domain.segments import (
    FIRST_SEGMENT,
    LAST_SEGMENT,
    UNLOCATED,
    Region,
    SegmentDB,
    SegmentInfo,
)

TierName = TypeAliasType(
    "TierName", Literal["city", "province", "national", "unlocated", "nonstandard"]
)

__all__ = ["DEFAULT_MAX_CANDIDATES", "NONSTANDARD", "TIER_NAMES", "Tier", "TierPlan", "plan"]

DEFAULT_MAX_CANDIDATES: Final = 10_000
TIER_NAMES: Final[tuple[TierName, ...]] = ("city", "province", "national", "unlocated")
"""The four tiers every plan has, in order."""
NONSTANDARD: Final[TierName] = "nonstandard"
"""The optional last tier: segments outside the numbering plan (``include_nonstandard``)."""
# Number blocks the numbering plan reserves for data-only / IoT use (no voice or SMS).
_DATA_ONLY_BLOCKS: Final = frozenset({"141", "146", "148", "149", "174"})

# Carrier hints -> carrier codes of the database (1-8). A network name covers its
# virtual operators too: a 170 number on 移动's network is still 移动 to a customer.
_CARRIER_GROUPS: Final[dict[str, frozenset[int]]] = {
    "移动": frozenset({1, 6}),
    "联通": frozenset({2, 5}),
    "电信": frozenset({3, 4}),
    "广电": frozenset({7, 8}),
    "虚拟": frozenset({4, 5, 6, 8}),
}
_CARRIER_ALIASES: Final[dict[str, str]] = {
    "mobile": "移动",
    "cmcc": "移动",
    "chinamobile": "移动",
    "中国移动": "移动",
    "unicom": "联通",
    "cucc": "联通",
    "chinaunicom": "联通",
    "中国联通": "联通",
    "telecom": "电信",
    "ctcc": "电信",
    "chinatelecom": "电信",
    "中国电信": "电信",
    "broadnet": "广电",
    "cbn": "广电",
    "chinabroadnet": "广电",
    "中国广电": "广电",
    "mvno": "虚拟",
    "virtual": "虚拟",
}


def carrier_codes(carrier: str, db: SegmentDB) -> frozenset[int]:
    """Carrier hint (``移动``, ``unicom``, ``电信虚拟运营商`` ...) -> carrier codes."""
    key = carrier.strip().lower().replace(" ", "").replace("_", "")
    key = _CARRIER_ALIASES.get(key, key)
    if key in _CARRIER_GROUPS:
        return _CARRIER_GROUPS[key]
    exact = frozenset(code for code, name in db.carrier_names.items() if name == key)
    if exact:
        return exact
    raise UnknownRegionError(
        f"unknown carrier {quote(carrier)}: use 移动/联通/电信/广电 (or mobile/unicom/telecom/"
        "broadnet), 虚拟 for virtual operators, or an exact name like 移动虚拟运营商"
    )


@dataclass(frozen=True)
class Tier:
    """One tier of a plan: an ordered list of segments times the fill of the last 4 digits."""

    name: TierName
    segments: Sequence[int] = ()
    tails: Sequence[str] = ("",)

    @property
    def count(self) -> int:
        """How many numbers this tier holds, known before iteration."""
        return len(self.segments) * len(self.tails)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[str]:
        tails = self.tails
        for seg in self.segments:
            head = str(seg)
            for tail in tails:
                yield head + tail


@dataclass(frozen=True)
class TierPlan:
    """The candidates for one lookup, tier by tier.

    Always the four tiers of :data:`TIER_NAMES` in order, then ``nonstandard`` when it was
    asked for. ``excluded`` counts the numbers left out because the numbering plan rejects
    their segment (``excluded_reason`` says which ranges); they are in no tier.
    """

    mask: Mask
    tiers: tuple[Tier, ...]
    region: Region | None = None
    carrier: str | None = None
    db: SegmentDB = field(repr=False, default_factory=SegmentDB.default)
    excluded: int = 0
    excluded_reason: str | None = None

    @property
    def total(self) -> int:
        return sum(t.count for t in self.tiers)

    def tier(self, name: TierName) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    def tier_of(self, number: str) -> TierName | None:
        """Which tier holds ``number``, if any."""
        if not self.mask.matches(number):
            return None
        seg = int(number[:7])
        for t in self.tiers:
            if seg in t.segments:
                return t.name
        return None

    def region_of(self, number: str) -> SegmentInfo | None:
        return self.db.segment(number[:7])


def _segment_values(mask: Mask) -> list[int]:
    """Every 7-digit value the first 7 positions of the mask allow (not yet checked)."""
    head = mask.pattern[:7]
    values = [int(head.replace(HIDDEN, "0"))]
    for pos, c in enumerate(head):
        if c == HIDDEN:
            weight = 10 ** (6 - pos)
            values = [v + d * weight for v in values for d in range(10)]
    return values


def _segment_range(mask: Mask) -> range | None:
    """The segments, when the hidden digits of the first 7 all sit at its end (138****)."""
    known = mask.pattern[:7].rstrip(HIDDEN)
    if HIDDEN in known:
        return None
    width = 10 ** (7 - len(known))
    lo = int(known) * width
    return range(max(lo, FIRST_SEGMENT), min(lo + width, LAST_SEGMENT + 1))


def _classify(
    values: Iterable[int], codes: Iterable[int], flags: Iterable[int], tier_of: bytearray,
    carriers: Sequence[int], allowed: frozenset[int] | None,
) -> tuple[list[int], ...]:  # fmt: skip
    """Bucket segment values by tier, nonstandard ones last (a hot loop: no calls per segment)."""
    lists: tuple[list[int], ...] = ([], [], [], [], [])
    if allowed is None:
        for value, code, nonstandard in zip(values, codes, flags, strict=True):
            t = tier_of[code]
            if t != 255:
                lists[4 if nonstandard else t].append(value)
    else:
        for value, code, nonstandard in zip(values, codes, flags, strict=True):
            t = tier_of[code]
            if t != 255 and carriers[value - FIRST_SEGMENT] in allowed:
                lists[4 if nonstandard else t].append(value)
    return lists


def _blocks(segments: Sequence[int]) -> str:
    """``data-only/IoT 146; unassigned 199``: the kinds of the nonstandard segments."""
    blocks = sorted({str(s)[:3] for s in segments})
    data_only = [b for b in blocks if b in _DATA_ONLY_BLOCKS]
    other = [b for b in blocks if b not in _DATA_ONLY_BLOCKS]
    kinds = []
    if data_only:
        kinds.append(f"data-only/IoT {', '.join(data_only)}")
    if other:
        kinds.append(f"unassigned {', '.join(other)}")
    return "; ".join(kinds)


def _excluded_reason(segments: Sequence[int], numbers: int) -> str:
    many = "s" if len(segments) != 1 else ""
    return (
        f"{len(segments):,} segment{many} outside the numbering plan ({_blocks(segments)}), "
        f"{numbers:,} numbers: not checked unless include_nonstandard (--include-nonstandard)"
    )


def _tails(mask: Mask) -> list[str]:
    tails = [""]
    for c in mask.pattern[7:]:
        tails = (
            [t + d for t in tails for d in "0123456789"] if c == HIDDEN else [t + c for t in tails]
        )
    return tails


def _nothing_fits(m: Mask, region: Region | None, carrier: str | None, values: Sequence[int],
                  found: Sequence[int], marks: Sequence[int], tier_of: bytearray, db: SegmentDB,
                  left_out: Sequence[int], excluded: int, include_nonstandard: bool) -> str:  # fmt: skip
    """Why no number fits: the mask's segments, the carrier hint, or only nonstandard segments
    (bad input, not not_found)."""
    where = f" in {region}" if region is not None else ""
    hint = f" with carrier {quote(carrier)}" if carrier else ""
    if excluded:
        return (f"no number fits {m}{where}{hint}: all {excluded:,} numbers it allows were left "
                f"out as outside the numbering plan ({_blocks(left_out)}); "
                "--include-nonstandard (include_nonstandard=True) puts them back")  # fmt: skip
    if carrier:
        without = _classify(values, found, marks, tier_of, db.carrier_codes, None)
        if any(without if include_nonstandard else without[:4]):
            return (f"no number fits {m} with carrier {quote(carrier)}: the segments the mask "
                    "allows belong to other carriers. Check the mask, or leave the carrier hint out "
                    "(a number keeps its carrier when ported, the database does not know it)")  # fmt: skip
    return (f"no number fits {m}{where}: the numbering plan allocates no segment the mask "
            "allows; check the digits shown")  # fmt: skip


def _order(buckets: dict[TierName, list[int]], keys: Sequence[tuple[float, ...]] | None,
           codes: Sequence[int]) -> None:  # fmt: skip
    """Sort the province and national tiers by their regions' keys (stable: ties stay
    numeric). The city tier is the hint itself, unlocated segments have no region."""
    if keys is None:
        return
    for name in ("province", "national"):
        bucket = buckets[name]
        if len(bucket) > 1:
            bucket.sort(key=lambda seg: keys[codes[seg - FIRST_SEGMENT]])


def plan(
    mask: str | Mask,
    db: SegmentDB | None = None,
    *,
    city: str | None = None,
    province: str | None = None,
    area_code: str | None = None,
    zip: str | None = None,
    carrier: str | None = None,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
    seed: int | None = None,
    include_nonstandard: bool = False,
    also: Iterable[str | Mask] = (),
    order: RegionOrder | None = NEARER,
) -> TierPlan:
    """Split the numbers that fit ``mask`` into the four tiers.

    Numbers of segments the numbering plan rejects are left out and counted as
    ``excluded``; ``include_nonstandard=True`` checks them in a last tier, ``nonstandard``
    (and counts them against ``max_candidates``).

    Raises :class:`~lookup.domain.errors.InvalidMaskError` (bad mask, no number fits the mask and
    the carrier, every number that fits was left out as nonstandard, or more than
    ``max_candidates`` numbers: nothing is generated then) and
    :class:`~lookup.domain.errors.UnknownRegionError` (bad hint) before any work.
    ``also`` are other sightings of the same number (``1385715****`` beside
    ``138****2046``): they are intersected with ``mask`` first, and sightings that
    contradict each other raise :class:`~lookup.domain.errors.InvalidMaskError`.
    Within a tier the segments go by ``order`` (:mod:`lookup.domain.order`): by default the
    regions nearest the hint first (provinces in the national tier, cities in the province
    tier), learned counts when given, ``None`` for plain numeric order; inside a segment,
    by the hidden tail digits. ``seed`` shuffles segments reproducibly instead. The order
    never moves a number between tiers.

    >>> p = plan("138****1234", city="杭州")
    >>> [(t.name, t.count) for t in p.tiers]  # doctest: +SKIP
    [('city', 352), ('province', 1026), ('national', 8622), ('unlocated', 0)]
    """
    m = combine_sightings(mask, also)
    db = db if db is not None else SegmentDB.default()
    region = db.resolve(city=city, province=province, area_code=area_code, zip=zip)
    allowed = carrier_codes(carrier, db) if carrier else None
    tails = _tails(m)

    # One byte per region code says its tier (0 city, 1 province, 2 national, 3 unlocated,
    # 255 no segment); classifying a segment is then one index, not a call per segment.
    tier_of = bytearray(b"\x02") * 65536
    tier_of[0] = 255
    tier_of[UNLOCATED] = 3
    if region is not None:
        for code in db.province_codes(region.province):
            tier_of[code] = 1
        for code in db.region_codes(region.cities):
            tier_of[code] = 0
    codes, flags = db.codes, db.nonstandard_flags
    run = _segment_range(m)
    if run is not None:  # a contiguous run of segments: slice the codes, no lookups
        values: Sequence[int] = run
        lo, hi = run.start - FIRST_SEGMENT, run.stop - FIRST_SEGMENT
        found: Sequence[int] = codes[lo:hi]
        marks: Sequence[int] = flags[lo:hi]
    else:
        values = [v for v in _segment_values(m) if FIRST_SEGMENT <= v <= LAST_SEGMENT]
        found = [codes[v - FIRST_SEGMENT] for v in values]
        marks = [flags[v - FIRST_SEGMENT] for v in values]
    lists = _classify(values, found, marks, tier_of, db.carrier_codes, allowed)
    names = (*TIER_NAMES, NONSTANDARD) if include_nonstandard else TIER_NAMES
    buckets: dict[TierName, list[int]] = {name: lists[i] for i, name in enumerate(names)}
    left_out = [] if include_nonstandard else lists[4]
    excluded = len(left_out) * len(tails)

    total = sum(len(b) for b in buckets.values()) * len(tails)
    if total == 0:
        raise InvalidMaskError(_nothing_fits(m, region, carrier, values, found, marks, tier_of, db,
                                             left_out, excluded, include_nonstandard))  # fmt: skip
    if total > max_candidates:
        per = ", ".join(f"{n} {len(b) * len(tails):,}" for n, b in buckets.items() if b)
        also = f"; {excluded:,} outside the numbering plan left out" if excluded else ""
        raise TooManyCandidatesError(
            f"{m} fits {total:,} numbers ({per}{also}); the cap is {max_candidates:,}: reveal "
            "more digits, or raise max_candidates (--max-candidates) if the API owner agrees",
            count=total,
            cap=max_candidates,
        )
    if seed is not None:
        rng = random.Random(seed)
        for b in buckets.values():
            rng.shuffle(b)
    elif order is not None:
        _order(buckets, order.keys(db, region), codes)
    tiers = tuple(Tier(name, tuple(buckets[name]), tuple(tails)) for name in names)
    return TierPlan(
        mask=m,
        tiers=tiers,
        region=region,
        carrier=carrier,
        db=db,
        excluded=excluded,
        excluded_reason=_excluded_reason(left_out, excluded) if left_out else None,
    )
