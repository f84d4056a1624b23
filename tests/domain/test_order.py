"""The order inside a tier: nearer first by default, learned counts past a threshold; the
tiers themselves (their sets and counts) never change."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookup.domain.order import NEARER, RegionOrder, distance_km
from lookup.domain.segments import SegmentDB
from lookup.domain.tiers import plan

DB = SegmentDB.default()
MASKS = ["138****2046", "139****8812", "13*7*001234", "150****1234", "1868***12**",
         "177****0000", "19*****1111"]  # fmt: skip
HINTS = [{}, {"city": "杭州"}, {"city": "乌鲁木齐"}, {"province": "广东"}, {"city": "恩施"},
         {"area_code": "010"}, {"city": "拉萨"}]  # fmt: skip


def provinces_in_order(segments: tuple[int, ...] | list[int]) -> list[str]:
    seen: list[str] = []
    for seg in segments:
        info = DB.segment(seg)
        assert info is not None and info.province is not None
        if info.province not in seen:
            seen.append(info.province)
    return seen


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mask=st.sampled_from(MASKS),
    hints=st.sampled_from(HINTS),
    counts=st.dictionaries(st.sampled_from(DB.cities), st.integers(0, 200), max_size=20),
    threshold=st.integers(1, 100),
)
def test_the_order_never_changes_what_a_tier_holds(
    mask: str, hints: dict[str, str], counts: dict[str, int], threshold: int
) -> None:
    plain = plan(mask, DB, order=None, max_candidates=200_000, **hints)
    for order in (NEARER, RegionOrder(counts, threshold)):
        ordered = plan(mask, DB, order=order, max_candidates=200_000, **hints)
        assert [(t.name, t.count) for t in ordered.tiers] == [(t.name, t.count) for t in plain.tiers]
        for a, b in zip(plain.tiers, ordered.tiers, strict=True):
            assert sorted(a.segments) == sorted(b.segments)
            assert len(set(b.segments)) == len(b.segments)
        assert ordered.excluded == plain.excluded


def test_nearer_first_from_hangzhou_puts_the_neighbours_before_xinjiang() -> None:
    order = provinces_in_order(plan("138****2046", DB, city="杭州").tier("national").segments)
    for near in ("江苏", "上海", "安徽", "江西", "福建"):
        assert order.index(near) < order.index("新疆"), order
    assert set(order[:5]) == {"江苏", "上海", "安徽", "江西", "福建"}
    assert order[-1] in ("新疆", "西藏")


def test_nearer_first_in_the_province_tier_starts_at_the_hinted_citys_neighbours() -> None:
    tier = plan("138****2046", DB, city="杭州").tier("province")
    cities = []
    for seg in tier.segments:
        info = DB.segment(seg)
        assert info is not None
        if info.city not in cities:
            cities.append(info.city)
    geo = DB.geo()
    here = geo.points[min(DB.region_codes(["杭州"]))]
    km = [distance_km(here, geo.points[min(DB.region_codes([c]))]) for c in cities]
    assert km == sorted(km) and cities[0] in ("湖州", "绍兴", "嘉兴")


def test_without_a_hint_the_order_is_plain() -> None:
    assert plan("138****2046", DB).tier("national").segments == tuple(
        sorted(plan("138****2046", DB).tier("national").segments)
    )


def test_learned_counts_change_the_order_only_past_the_threshold() -> None:
    nearer = plan("138****2046", DB, city="杭州").tier("national").segments
    few = RegionOrder({"乌鲁木齐": 49}, threshold=50)
    assert not few.learned
    assert plan("138****2046", DB, city="杭州", order=few).tier("national").segments == nearer
    enough = RegionOrder({"乌鲁木齐": 50}, threshold=50)
    assert enough.learned
    learned = plan("138****2046", DB, city="杭州", order=enough).tier("national").segments
    assert learned != nearer
    first = DB.segment(learned[0])
    assert first is not None and first.city == "乌鲁木齐"
    # the rest still goes nearer first: the smoothing keeps the neighbours ahead of the far
    order = provinces_in_order(learned)
    assert order[0] == "新疆" and order.index("上海") < order.index("西藏")


def test_learned_counts_without_a_hint_order_the_national_tier() -> None:
    order = RegionOrder({"广州": 80, "深圳": 40}, threshold=50)
    segs = plan("138****2046", DB, order=order).tier("national").segments
    first = {DB.segment(s).city for s in segs[:2]}  # type: ignore[union-attr]
    assert first <= {"广州", "深圳"}
