"""Several sightings of one number: intersected before planning, contradictions refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookup.domain.errors import InvalidMaskError, SightingsDisagreeError
from lookup.domain.masks import HIDDEN, combine_sightings
from lookup.domain.tiers import plan


def test_waybill_and_message_leave_one_candidate() -> None:
    assert str(combine_sightings("138****2046", ["1385715****"])) == "13857152046"
    p = plan("138****2046", also=["1385715****"])
    assert p.total == 1
    assert [n for t in p.tiers for n in t] == ["13857152046"]


def test_three_sightings_and_spellings() -> None:
    m = combine_sightings("+86 138 **** 2046", ["13857xx****", "１３８＊＊１＊＊＊＊＊"])
    assert str(m) == "138571*2046"
    assert [n for t in plan(m).tiers for n in t] == [f"138571{d}2046" for d in "0123456789"]


def test_no_sightings_is_the_mask_itself() -> None:
    assert str(combine_sightings("138****2046")) == "138****2046"


def test_contradiction_names_the_first_conflicting_digit_and_both_digits() -> None:
    with pytest.raises(SightingsDisagreeError) as caught:
        plan("138****2046", also=["1385715****", "138571*3***"])
    err = caught.value
    assert isinstance(err, InvalidMaskError) and err.position == 8
    assert str(err).startswith("the sightings disagree at digit 8: 138****2046 shows 2, ")
    assert "138571*3*** shows 3" in str(err)


def test_the_digit_named_may_come_from_an_earlier_sighting() -> None:
    with pytest.raises(SightingsDisagreeError, match="digit 4: 1385715\\*\\*\\*\\* shows 5, "
                       "1386\\*\\*\\*\\*\\*\\*\\* shows 6"):  # fmt: skip
        combine_sightings("138****2046", ["1385715****", "1386*******"])


def test_a_bad_sighting_is_a_bad_mask() -> None:
    with pytest.raises(InvalidMaskError, match="11"):
        plan("138****2046", also=["1385715***"])


@settings(max_examples=60, deadline=None)
@given(
    number=st.from_regex(r"13[0-9]{9}", fullmatch=True),
    hides=st.lists(st.sets(st.integers(3, 10), max_size=4), min_size=1, max_size=3),
)
def test_the_intersection_fits_the_number_and_every_sighting(
    number: str, hides: list[set[int]]
) -> None:
    sightings = ["".join(HIDDEN if i in h else d for i, d in enumerate(number)) for h in hides]
    m = combine_sightings(sightings[0], sightings[1:])
    assert m.matches(number)
    assert set(m.hidden) == set.intersection(*hides)
