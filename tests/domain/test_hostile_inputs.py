"""Hostile inputs at the domain's doors: hints keep the masks' digit rule, and any input
quoted in an error is cut to about 64 characters with its numbers masked."""

from __future__ import annotations

import re

import pytest

from lookup.domain.errors import InputError, UnknownRegionError
from lookup.domain.masks import parse_mask
from lookup.domain.privacy import QUOTE_LIMIT, quote
from lookup.domain.tiers import plan

FULL_NUMBER = re.compile(r"(?<!\d)1\d{10}(?!\d)")
# a quoted input, its "... (N characters)" and the message around it
MAX_MESSAGE = QUOTE_LIMIT + 400

# -- hints: ASCII or full-width digits, nothing between them ---------------------------------

REFUSED_HINTS = [
    {"zip": "³10000"}, {"zip": "31000⁰"}, {"zip": "３1000①"}, {"zip": "𝟑10000"},
    {"zip": "٣١٠٠٠٠"}, {"zip": "31-0000"}, {"zip": "31 0000"}, {"zip": "310.000"},
    {"zip": "310_000"}, {"zip": "31\u200b0000"}, {"zip": "310000\x1b"}, {"zip": "Ⅲ10000"},
    {"area_code": "05⁷1"}, {"area_code": "0-5-7-1"}, {"area_code": "0571-"},
    {"area_code": "05 71"}, {"area_code": "057¹"}, {"area_code": "(0571)"},
    {"area_code": "0571\u202e"}, {"area_code": "०५७१"}, {"area_code": "05\u200d71"},
]  # fmt: skip
ACCEPTED_HINTS = [
    {"zip": "310000"}, {"zip": "３１００００"}, {"zip": " 310000 "}, {"area_code": "0571"},
    {"area_code": "571"}, {"area_code": "０５７１"}, {"area_code": " 0571"},
]  # fmt: skip


@pytest.mark.parametrize("hint", REFUSED_HINTS, ids=[repr(h) for h in REFUSED_HINTS])
def test_hints_refuse_other_digit_forms_and_separators(hint: dict[str, str]) -> None:
    with pytest.raises(UnknownRegionError) as caught:
        plan("138****2046", **hint)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "position" in message and message.isprintable()
    assert ("zip" in hint and "zip" in message) or "area code" in message


@pytest.mark.parametrize("hint", ACCEPTED_HINTS, ids=[repr(h) for h in ACCEPTED_HINTS])
def test_hints_take_ascii_and_full_width_digits(hint: dict[str, str]) -> None:
    assert str(plan("138****2046", **hint).region) == "浙江 杭州"  # type: ignore[arg-type]


# -- quoted inputs ---------------------------------------------------------------------------

HUGE = "1" * 900_000
LONG_INPUTS = {
    "mask: 900,000 digits": lambda: parse_mask(HUGE),
    "mask: 900,000 letters": lambda: parse_mask("x" + "a" * 900_000),
    "mask: a number in a long text": lambda: parse_mask("13857152046" + "z" * 10_000),
    "mask: full-width run": lambda: parse_mask("１" * 5_000),
    "mask: control characters": lambda: parse_mask("\x1b[2J" * 10_000),
    "mask: other digits": lambda: parse_mask("13857152046" + "¹" * 10_000),
    "city": lambda: plan("138****2046", city="杭" * 10_000),
    "province": lambda: plan("138****2046", province="浙" * 10_000),
    "area code": lambda: plan("138****2046", area_code="0" * 10_000),
    "area code with a number": lambda: plan("138****2046", area_code="13857152046" * 100),
    "zip": lambda: plan("138****2046", zip="3" * 10_000),
    "carrier": lambda: plan("138****2046", carrier="移" * 10_000),
    "12 digits": lambda: parse_mask("138571520469"),
    "with an extension": lambda: parse_mask("13857152046-1234" + " " * 1000 + "5"),
}


@pytest.mark.parametrize("make", list(LONG_INPUTS.values()), ids=list(LONG_INPUTS))
def test_an_input_is_quoted_cut_and_masked(make: object) -> None:
    with pytest.raises(InputError) as caught:
        make()  # type: ignore[operator]
    message = str(caught.value)
    assert len(message) <= MAX_MESSAGE, len(message)
    assert not FULL_NUMBER.search(message), message
    assert "57152046" not in message
    assert message.isprintable()


def test_quote() -> None:
    assert quote("138****2046") == "'138****2046'"
    assert quote("13857152046") == "'138****2046'"
    assert quote("x\n\x1b") == repr("x\n\x1b")
    long = quote("a" * 1000)
    assert long == "'" + "a" * QUOTE_LIMIT + "'... (1,000 characters)"
    # a number across the cut is masked before the cut
    assert "5715" not in quote("a" * 60 + "13857152046")
