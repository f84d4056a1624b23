"""lookup.candidates: tier plans (city / province / national / unlocated, nonstandard opt-in)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookup.domain.errors import InvalidMaskError, TooManyCandidatesError, UnknownRegionError
from lookup.domain.masks import HIDDEN, parse_mask
from lookup.domain.segments import FIRST_SEGMENT, UNLOCATED, SegmentDB
from lookup.domain.tiers import (
    DEFAULT_MAX_CANDIDATES,
    NONSTANDARD,
    TIER_NAMES,
    Tier,
    TierPlan,
    plan,
)

DB = SegmentDB.default()
# Built once per module: every located and every unlocated segment, in order.
LOCATED = [i + FIRST_SEGMENT for i, c in enumerate(DB.codes) if 0 < c < UNLOCATED]
NONSTANDARD_SEGMENTS = [s for s in LOCATED if DB.nonstandard_flags[s - FIRST_SEGMENT]]
STANDARD = [s for s in LOCATED if not DB.nonstandard_flags[s - FIRST_SEGMENT]]
UNLOCATED_SEGMENTS = [i + FIRST_SEGMENT for i, c in enumerate(DB.codes) if c == UNLOCATED]

PROPS = settings(max_examples=200, deadline=None, derandomize=True)


def _names(p: TierPlan) -> list[str]:
    return [t.name for t in p.tiers]


def _check_tier_membership(p: TierPlan) -> None:
    """Each tier holds exactly the segments its definition says (checked per segment)."""
    region = p.region
    for t in p.tiers:
        for seg in t.segments:
            info = DB.segment(str(seg))
            assert info is not None
            if t.name == "unlocated":
                assert not info.located and info.standard
                continue
            assert info.located
            assert info.standard == (t.name != NONSTANDARD)
            if t.name == NONSTANDARD:
                continue
            if t.name == "city":
                assert region is not None and info.city in region.cities
            elif t.name == "province":
                assert region is not None and info.province == region.province
                assert info.city not in region.cities
            else:
                assert region is None or info.province != region.province


# -- shape ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hints",
    [{}, {"city": "杭州"}, {"province": "浙江"}, {"area_code": "0728"}, {"zip": "071000"}],
)
@pytest.mark.parametrize("mask", ["138****1234", "170****1234", "199****1234", "13805710***"])
def test_four_tiers_always_in_order(mask: str, hints: dict[str, str]) -> None:
    p = plan(mask, DB, **hints)
    assert _names(p) == ["city", "province", "national", "unlocated"]
    assert tuple(_names(p)) == TIER_NAMES
    assert all(isinstance(t, Tier) for t in p.tiers)
    assert p.total == sum(t.count for t in p.tiers)
    for t in p.tiers:
        numbers = list(t)
        assert t.count == len(t) == len(numbers)
        assert all(p.mask.matches(n) for n in numbers)
        assert p.tier(t.name) is t
    _check_tier_membership(p)


def test_no_hint_plan_has_only_national_and_unlocated() -> None:
    p = plan("199****1234", DB)
    assert p.region is None
    assert p.tier("city").count == 0
    assert p.tier("province").count == 0
    assert p.tier("national").count > 0
    assert p.tier("unlocated").count > 0
    assert list(p.tier("city")) == []
    assert list(p.tier("province")) == []


def test_province_only_plan_has_an_empty_city_tier() -> None:
    p = plan("138****1234", DB, province="浙江")
    assert p.region is not None and p.region.cities == ()
    assert p.tier("city").count == 0
    assert p.tier("province").count > 0
    assert p.tier("national").count > 0
    whole = plan("138****1234", DB)
    assert p.total == whole.total
    assert set(p.tier("province")) | set(p.tier("national")) == set(whole.tier("national"))


def test_city_plan_counts() -> None:
    p = plan("138****1234", DB, city="杭州")
    assert p.region is not None and p.region.cities == ("杭州",)
    assert p.total == 10_000  # every 138xxxx segment exists
    assert p.tier("city").count > 0
    assert p.tier("province").count > 0
    assert p.tier("national").count > 0
    assert p.tier("unlocated").count == 0
    assert "13805711234" in set(p.tier("city"))
    assert p.tier_of("13805711234") == "city"
    assert p.tier_of("13905711234") is None  # does not fit the mask
    assert p.region_of("13805711234") == DB.segment("1380571")


def test_tiers_are_disjoint_and_cover_the_mask() -> None:
    p = plan("1**8***1234", DB, city="杭州", max_candidates=100_000)
    seen: set[str] = set()
    for t in p.tiers:
        numbers = set(t)
        assert len(numbers) == t.count  # no duplicates inside a tier
        assert not numbers & seen  # none shared with an earlier tier
        seen |= numbers
    assert len(seen) == p.total
    assert all(p.mask.matches(n) for n in seen)
    _check_tier_membership(p)


def test_tier_lookup_by_unknown_name() -> None:
    p = plan("138****1234", DB)
    with pytest.raises(KeyError):
        p.tier("moon")  # type: ignore[arg-type]


def test_full_number_plan_has_one_candidate() -> None:
    p = plan("13805711234", DB, city="杭州")
    assert p.total == 1
    assert list(p.tier("city")) == ["13805711234"]


def test_plan_accepts_a_mask_object_and_default_db() -> None:
    m = parse_mask("138 **** 1234")
    p = plan(m)
    assert p.mask is m
    assert p.total == 10_000


def test_unknown_segments_are_bad_input_not_an_empty_plan() -> None:
    # a mask (or hint) that leaves no candidate is bad input, never not_found
    with pytest.raises(InvalidMaskError, match=r"no number fits 14000\*\*1234"):
        plan("14000**1234", DB)  # 14000xx: no such segments


def test_a_carrier_that_leaves_no_candidate_is_bad_input() -> None:
    with pytest.raises(InvalidMaskError, match="no number fits 138\\*\\*\\*\\*2046 with carrier"):
        plan("138****2046", DB, carrier="电信")  # 138 is 移动's
    assert plan("138****2046", DB, carrier="移动").total > 0


# -- segments outside the numbering plan ------------------------------------------------------------


def test_data_only_block_is_excluded_with_a_reason() -> None:
    p = plan("1*6****1234", DB, max_candidates=10**5)  # 106 ... 196: 146 is data-only
    assert p.total == 60_000 and p.tier("national").count > 0
    assert p.excluded == 9_371
    assert p.excluded_reason == (
        "9,371 segments outside the numbering plan (data-only/IoT 146), 9,371 numbers: "
        "not checked unless include_nonstandard (--include-nonstandard)"
    )


def test_a_mask_of_only_nonstandard_segments_is_bad_input() -> None:
    # shells' rule (no candidate = bad input) meets pg's exclusions: say what was
    # left out and how to put it back, never an empty plan that ends as not_found
    with pytest.raises(InvalidMaskError) as caught:
        plan("146****1234", DB)
    assert str(caught.value) == (
        "no number fits 146****1234: all 9,371 numbers it allows were left out as outside "
        "the numbering plan (data-only/IoT 146); --include-nonstandard "
        "(include_nonstandard=True) puts them back"
    )


def test_include_nonstandard_adds_a_last_tier() -> None:
    p = plan("146****1234", DB, include_nonstandard=True)
    assert _names(p) == [*TIER_NAMES, NONSTANDARD]
    assert p.tier(NONSTANDARD).count == p.total == 9_371 and p.excluded == 0
    assert p.excluded_reason is None
    _check_tier_membership(p)


def test_stray_rows_in_unassigned_blocks_are_excluded() -> None:
    # 1541183: a stray 电信 西安 row
    with pytest.raises(InvalidMaskError, match=r"all 10,000 numbers .* \(unassigned 154\)"):
        plan("1541183****", DB, city="西安")
    both = plan("1541183****", DB, city="西安", include_nonstandard=True)
    assert both.tier(NONSTANDARD).count == 10_000 and both.tier("city").count == 0


def test_a_mixed_mask_keeps_standard_segments_in_their_tiers() -> None:
    p = plan("14*****1234", DB, max_candidates=10**6)
    both = plan("14*****1234", DB, max_candidates=10**6, include_nonstandard=True)
    assert p.excluded == 18 + 204 + 30 + 26 + 19 + 9_371 + 8_380 + 3_729  # 140-149
    assert [t.count for t in both.tiers[:4]] == [t.count for t in p.tiers]
    assert both.tier(NONSTANDARD).count == p.excluded
    reason = p.excluded_reason or ""
    assert "data-only/IoT 141, 146, 148, 149" in reason and "unassigned 140, 142, 143, 144" in reason


def test_the_cap_counts_only_what_is_checked() -> None:
    p = plan("14*****1234", DB, max_candidates=20_000)
    assert p.total == 20_000 and p.excluded == 21_777
    with pytest.raises(TooManyCandidatesError, match="nonstandard 21,777"):
        plan("14*****1234", DB, max_candidates=20_000, include_nonstandard=True)
    with pytest.raises(TooManyCandidatesError, match="outside the numbering plan left out"):
        plan("14*****1234", DB)


# -- the cap -------------------------------------------------------------------------------------


def test_over_the_cap_raises_naming_count_and_cap() -> None:
    full = plan("1**8***1234", DB, max_candidates=10**6).total
    assert full > DEFAULT_MAX_CANDIDATES == 10_000
    with pytest.raises(TooManyCandidatesError) as info:
        plan("1**8***1234", DB)
    err = info.value
    assert isinstance(err, InvalidMaskError)
    assert err.count == full
    assert err.cap == DEFAULT_MAX_CANDIDATES
    msg = str(err)
    assert f"{full:,}" in msg
    assert "10,000" in msg
    assert "1**8***1234" in msg


def test_cap_boundary() -> None:
    assert plan("138****1234", DB, max_candidates=10_000).total == 10_000
    with pytest.raises(TooManyCandidatesError) as info:
        plan("138****1234", DB, max_candidates=9_999)
    assert (info.value.count, info.value.cap) == (10_000, 9_999)
    assert "9,999" in str(info.value)


def test_cap_counts_hidden_tail_digits() -> None:
    with pytest.raises(TooManyCandidatesError) as info:
        plan("138057*****", DB)
    assert info.value.count == 100_000


# -- carrier -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("carrier", "allowed"),
    [
        ("移动", {"移动", "移动虚拟运营商"}),
        ("mobile", {"移动", "移动虚拟运营商"}),
        ("中国移动", {"移动", "移动虚拟运营商"}),
        ("联通", {"联通", "联通虚拟运营商"}),
        ("电信", {"电信", "电信虚拟运营商"}),
        ("移动虚拟运营商", {"移动虚拟运营商"}),
        ("虚拟", {"移动虚拟运营商", "联通虚拟运营商", "电信虚拟运营商", "广电虚拟运营商"}),
    ],
)
def test_carrier_filter(carrier: str, allowed: set[str]) -> None:
    p = plan("170****1234", DB, carrier=carrier)
    unfiltered = plan("170****1234", DB)
    assert 0 < p.total < unfiltered.total
    kept = set()
    for t in p.tiers:
        for seg in t.segments:
            info = DB.segment(str(seg))
            assert info is not None
            kept.add(info.carrier)
    assert kept <= allowed
    # Nothing of the wanted carriers was dropped.
    expected = {
        n
        for t in unfiltered.tiers
        for n in t
        if (info := DB.segment(n[:7])) is not None and info.carrier in allowed
    }
    assert {n for t in p.tiers for n in t} == expected


def test_unknown_carrier() -> None:
    with pytest.raises(UnknownRegionError, match="unknown carrier"):
        plan("138****1234", DB, carrier="火星通信")


# -- order ---------------------------------------------------------------------------------------


def test_default_order_is_by_segment_then_tail() -> None:
    p = plan("1380571***4", DB, city="杭州")
    numbers = list(p.tier("city"))
    assert numbers == sorted(numbers)
    assert numbers[:2] == ["13805710004", "13805710014"]


def test_seed_reorders_reproducibly_with_the_same_set() -> None:
    base = plan("138****1234", DB, city="杭州")
    a = plan("138****1234", DB, city="杭州", seed=1)
    b = plan("138****1234", DB, city="杭州", seed=1)
    c = plan("138****1234", DB, city="杭州", seed=2)
    for name in TIER_NAMES[:3]:
        la, lb, lc, lbase = (list(x.tier(name)) for x in (a, b, c, base))
        assert la == lb
        assert set(la) == set(lc) == set(lbase)
        assert la != lbase
        assert la != lc


# -- hidden tail digits --------------------------------------------------------------------------


def test_hidden_digits_in_the_last_four_multiply_counts() -> None:
    p = plan("13805710***", DB, city="杭州")
    assert p.tier("city").count == 1_000
    assert p.total == 1_000
    numbers = list(p.tier("city"))
    assert len(set(numbers)) == 1_000
    assert numbers[0] == "13805710000"
    assert numbers[-1] == "13805710999"
    p2 = plan("138057*0**1", DB, city="杭州")
    assert p2.tier("city").count == 10 * 100


# -- properties over real segments ---------------------------------------------------------------


def _mask_of(number: str, hidden: frozenset[int]) -> str:
    return "".join(HIDDEN if i in hidden else d for i, d in enumerate(number))


@st.composite
def _real_case(draw: st.DrawFn, segments: list[int]) -> tuple[str, str]:
    """(true number, mask) from a real segment, a 4-digit suffix, 3-4 hidden among 3..6."""
    seg = segments[draw(st.integers(0, len(segments) - 1))]
    suffix = draw(st.integers(0, 9999))
    hidden = draw(st.sets(st.integers(3, 6), min_size=3, max_size=4))
    number = f"{seg}{suffix:04d}"
    return number, _mask_of(number, frozenset(hidden))


def _tiers_holding(p: TierPlan, number: str) -> list[str]:
    seg, tail = int(number[:7]), number[7:]
    return [t.name for t in p.tiers if seg in t.segments and tail in t.tails]


@PROPS
@given(_real_case(STANDARD))
def test_property_true_number_lands_in_the_right_tier(case: tuple[str, str]) -> None:
    number, mask = case
    info = DB.segment(number)
    assert info is not None and info.located and info.city and info.province

    by_city = plan(mask, DB, city=info.city)
    assert by_city.total <= 10_000
    assert _tiers_holding(by_city, number) == ["city"]
    assert by_city.tier_of(number) == "city"

    by_province = plan(mask, DB, province=info.province)
    assert _tiers_holding(by_province, number) == ["province"]
    assert by_province.tier_of(number) == "province"

    no_hint = plan(mask, DB)
    assert _tiers_holding(no_hint, number) == ["national"]
    assert no_hint.tier_of(number) == "national"

    assert by_city.total == by_province.total == no_hint.total
    assert by_city.excluded == by_province.excluded == no_hint.excluded


@PROPS
@given(_real_case(NONSTANDARD_SEGMENTS), st.sampled_from([None, "city", "province"]))
def test_property_nonstandard_number_is_excluded_or_last(
    case: tuple[str, str], hint: str | None
) -> None:
    number, mask = case
    info = DB.segment(number)
    assert info is not None and info.located and not info.standard
    hints = {hint: getattr(info, hint)} if hint else {}
    both = plan(mask, DB, max_candidates=10**6, include_nonstandard=True, **hints)
    assert _tiers_holding(both, number) == [NONSTANDARD] and both.excluded == 0
    left_out = both.tier(NONSTANDARD).count
    if both.total == left_out:  # only nonstandard numbers fit: bad input that says why
        with pytest.raises(InvalidMaskError, match=rf"all {left_out:,} numbers it allows were "
                           rf"left out .*{number[:3]}.*--include-nonstandard"):  # fmt: skip
            plan(mask, DB, max_candidates=10**6, **hints)
        return
    p = plan(mask, DB, max_candidates=10**6, **hints)
    assert p.tier_of(number) is None and _tiers_holding(p, number) == []
    assert p.excluded > 0 and p.excluded_reason is not None
    assert str(number)[:3] in p.excluded_reason
    assert both.total == p.total + p.excluded


@PROPS
@given(_real_case(UNLOCATED_SEGMENTS), st.sampled_from([{}, {"city": "杭州"}, {"province": "粤"}]))
def test_property_unlocated_number_lands_in_unlocated(
    case: tuple[str, str], hints: dict[str, str]
) -> None:
    number, mask = case
    info = DB.segment(number)
    assert info is not None and not info.located
    p = plan(mask, DB, **hints)
    assert _tiers_holding(p, number) == ["unlocated"]
    assert p.tier_of(number) == "unlocated"


@st.composite
def _small_case(draw: st.DrawFn) -> tuple[str, str]:
    """A real number with 2-3 hidden digits anywhere after the first (1 in 3 nonstandard)."""
    pool = NONSTANDARD_SEGMENTS if draw(st.integers(0, 2)) == 0 else LOCATED
    seg = pool[draw(st.integers(0, len(pool) - 1))]
    suffix = draw(st.integers(0, 9999))
    hidden = draw(st.sets(st.integers(1, 10), min_size=2, max_size=3))
    number = f"{seg}{suffix:04d}"
    return number, _mask_of(number, frozenset(hidden))


@PROPS
@given(_small_case(), st.sampled_from([None, "city", "province"]))
def test_property_union_of_tiers_is_brute_force(case: tuple[str, str], hint: str | None) -> None:
    number, mask = case
    info = DB.segment(number)
    assert info is not None
    hints = {hint: getattr(info, hint)} if hint else {}

    positions = [i for i, c in enumerate(mask) if c == HIDDEN]
    brute = set()
    for digits in itertools.product("0123456789", repeat=len(positions)):
        chars = list(mask)
        for pos, d in zip(positions, digits, strict=True):
            chars[pos] = d
        n = "".join(chars)
        info_n = DB.segment(n[:7])
        if info_n is not None and info_n.standard:
            brute.add(n)
    everything = plan(mask, DB, include_nonstandard=True, max_candidates=10**6, **hints)
    assert number in {n for t in everything.tiers for n in t}
    if not brute:  # nothing to check: bad input, saying what was left out if any
        left_out = everything.tier(NONSTANDARD).count
        assert left_out == everything.total
        why = rf"all {left_out:,} numbers it allows were left out" if left_out else "no number"
        with pytest.raises(InvalidMaskError, match=why):
            plan(mask, DB, **hints)
        return
    p = plan(mask, DB, **hints)

    union: set[str] = set()
    for t in p.tiers:
        numbers = list(t)
        assert all(p.mask.matches(n) for n in numbers)
        assert not union & set(numbers)
        union.update(numbers)
    assert union == brute
    assert p.total == len(brute)
    assert (number in union) == info.standard
    assert everything.total == p.total + p.excluded


# -- through find ----------------------------------------------------------------------------------


async def test_find_skips_excluded_numbers_unless_asked() -> None:
    from lookup.domain.models import Limits
    from lookup.engine.matcher import find
    from lookup.orders import FakeOrderApi

    planted = "14857152046"  # 1485715: a data-only block, outside the numbering plan
    limits = Limits(max_per_second=None)
    api = FakeOrderApi.from_orders({planted: 1})
    result = await find("1**5715204*", api=api, city="杭州", limits=limits)
    assert result.status == "not_found" and planted not in api.calls
    assert len(api.calls) == 520
    api = FakeOrderApi.from_orders({planted: 1})
    result = await find("1**5715204*", api=api, city="杭州", limits=limits,
                        include_nonstandard=True)  # fmt: skip
    assert (result.status, result.phone, result.tier) == ("matched", planted, "nonstandard")
    assert [t.name for t in result.tiers][-1] == "nonstandard"
