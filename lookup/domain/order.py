"""The order inside a tier: likely regions first (the tiers themselves never change).

Two orders, both deterministic:

- *nearer first* (the default, :data:`NEARER`): with a region hint, the provinces whose
  capital is nearest the hinted city (or the hinted province's capital) come first, and
  inside a province the regions nearest it; without a hint, plain numeric order.
- *learned* (:class:`RegionOrder` with ``counts``): the operator's own hits per region
  (counts only: a city label and a number, never a phone number). Once ``threshold`` hits
  are known, regions go by their estimated hits per segment: the counts, smoothed toward the
  nearer-first order by ``smoothing`` pseudo-hits spread by distance. Below the threshold the
  order is nearer first.

The sort key of a segment is the key of its region code; ties keep numeric order.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from lookup.domain.segments import Region, SegmentDB

__all__ = [
    "DEFAULT_LEARN_THRESHOLD",
    "DEFAULT_SMOOTHING",
    "NEARER",
    "RegionKey",
    "RegionOrder",
    "distance_km",
    "region_sizes",
]

DEFAULT_LEARN_THRESHOLD: Final = 50
"""Hits needed before learned counts change the order."""
DEFAULT_SMOOTHING: Final = 200.0
"""Pseudo-hits of the nearer-first prior in the learned order."""
_SCALE_KM: Final = 400.0
"""How fast the nearer-first prior falls with distance (the learned order's smoothing)."""

RegionKey = tuple[float, ...]


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (longitude, latitude) points."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)  # fmt: skip
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(h)))


_SIZES: dict[int, list[int]] = {}


def region_sizes(db: SegmentDB) -> list[int]:
    """Segments per region code (index = code, 0 unused), counted once per database."""
    found = _SIZES.get(id(db))
    if found is None:
        counts = Counter(db.codes)
        found = _SIZES[id(db)] = [counts[c] for c in range(len(db.region_names()) + 1)]
    return found


@dataclass(frozen=True)
class RegionOrder:
    """How a plan orders the regions inside a tier.

    ``counts`` maps a region's city label to the operator's hits there (learned order);
    empty or below ``threshold`` hits in all: nearer first.
    """

    counts: Mapping[str, int] = field(default_factory=dict)
    threshold: int = DEFAULT_LEARN_THRESHOLD
    smoothing: float = DEFAULT_SMOOTHING
    """Pseudo-hits spread nearer first: how many real hits it takes to outweigh distance."""

    @property
    def learned(self) -> bool:
        """Whether the counts are enough to change the order."""
        return sum(self.counts.values()) >= max(self.threshold, 1)

    def keys(self, db: SegmentDB, region: Region | None) -> list[RegionKey] | None:
        """A sort key per region code (index = code), or ``None`` for plain order."""
        learned = self.learned
        if region is None and not learned:
            return None
        near = _near_keys(db, region)
        if not learned:
            return near
        names = db.region_names()
        sizes = region_sizes(db)
        # Nearer-first as a prior: `smoothing` pseudo-hits spread over the regions in
        # proportion to their segments times a weight falling with distance.
        weights = [0.0] + [sizes[c] * math.exp(-(near[c][0] + near[c][1]) / (2 * _SCALE_KM))
                           for c in range(1, len(names) + 1)]  # fmt: skip
        total_w = sum(weights) or 1.0
        keys: list[RegionKey] = [(0.0, 0.0, 0.0)]
        for code, (_, city) in enumerate(names, 1):
            pseudo = self.smoothing * weights[code] / total_w
            hits = self.counts.get(city, 0) + pseudo
            per_segment = hits / sizes[code] if sizes[code] else 0.0
            keys.append((-per_segment, *near[code]))
        return keys


_NEAR: dict[tuple[int, Region | None], list[RegionKey]] = {}


def _near_keys(db: SegmentDB, region: Region | None) -> list[RegionKey]:
    """(km to the region's province capital, km to the region) per region code, from the
    hinted city (or the hinted province's capital); all zero without a hint."""
    found = _NEAR.get((id(db), region))
    if found is not None:
        return found
    names = db.region_names()
    if region is None:
        keys: list[RegionKey] = [(0.0, 0.0)] * (len(names) + 1)
    else:
        geo = db.geo()
        origin = (geo.points[min(db.region_codes(region.cities[:1]))] if region.cities
                  else geo.provinces[region.province])  # fmt: skip
        prov_km = {p: 0.0 if p == region.province else distance_km(origin, point)
                   for p, point in geo.provinces.items()}  # fmt: skip
        keys = [(0.0, 0.0)]
        keys += [(prov_km[p], distance_km(origin, geo.points[code]))
                 for code, (p, _) in enumerate(names, 1)]  # fmt: skip
    if len(_NEAR) > 1024:  # hints are few; bound it anyway
        _NEAR.clear()
    _NEAR[(id(db), region)] = keys
    return keys


NEARER: Final = RegionOrder()
"""Nearer regions first (no learned counts)."""
