"""lookup.masks: every accepted spelling of a mask, and every rejection with its reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookup.domain.errors import InputError, InvalidMaskError, LookupFailure
from lookup.domain.masks import HIDDEN, Mask, parse_mask

# -- accepted forms ------------------------------------------------------------------------------

STANDARD = "138****1234"


@pytest.mark.parametrize(
    "text",
    [
        "138****1234",
        "138xxxx1234",
        "138XXXX1234",
        "138????1234",
        "138xX?*1234",
        "138＊＊＊＊1234",  # full-width asterisks
        "１３８****１２３４",  # full-width digits
        "１３８＊＊＊＊１２３４",
        "138 **** 1234",
        "138-****-1234",
        "138\t****\t1234",
        "  138****1234  ",
        "+86138****1234",
        "+86 138****1234",
        "+86 138 **** 1234",
        "+86-138-****-1234",
        "＋８６ １３８ ＊＊＊＊ １２３４",
        "0086138****1234",
        "0086 138 **** 1234",
        "86138****1234",
        "86 138 **** 1234",
        "(+86)138****1234",
        "（+86）138****1234",
    ],
)
def test_accepted_spellings_of_the_standard_mask(text: str) -> None:
    m = parse_mask(text)
    assert m == Mask(STANDARD)
    assert str(m) == STANDARD
    assert m.pattern == STANDARD
    assert m.hidden == (3, 4, 5, 6)
    assert m.hidden_count == 4
    assert m.prefix == "138"
    assert m.suffix == "1234"


def test_hidden_digits_anywhere() -> None:
    m = parse_mask("1**8***1234")
    assert str(m) == "1**8***1234"
    assert m.hidden == (1, 2, 4, 5, 6)
    assert m.hidden_count == 5
    assert m.prefix == "1"
    assert m.suffix == "1234"


def test_hidden_digits_in_the_last_four() -> None:
    m = parse_mask("13805710***")
    assert m.hidden == (8, 9, 10)
    assert m.prefix == "13805710"
    assert m.suffix == ""


def test_hidden_second_digit_is_allowed() -> None:
    m = parse_mask("1*8****1234")
    assert m.hidden == (1, 3, 4, 5, 6)


@pytest.mark.parametrize(
    "text", ["13812345678", "138 1234 5678", "138-1234-5678", "+8613812345678", "8613812345678"]
)
def test_a_full_number_with_nothing_hidden(text: str) -> None:
    m = parse_mask(text)
    assert str(m) == "13812345678"
    assert m.hidden == ()
    assert m.hidden_count == 0
    assert m.prefix == "13812345678"
    assert m.suffix == "13812345678"
    assert m.matches("13812345678")
    assert not m.matches("13812345679")


def test_from_parts() -> None:
    m = Mask.from_parts(prefix="138", suffix="1234", hidden=4)
    assert m == parse_mask("138****1234")
    assert m.hidden == (3, 4, 5, 6)
    assert (m.prefix, m.suffix) == ("138", "1234")


def test_from_parts_other_splits() -> None:
    assert str(Mask.from_parts(prefix="1380571", suffix="", hidden=4)) == "1380571****"
    assert str(Mask.from_parts(prefix="13", suffix="71234", hidden=4)) == "13****71234"
    assert str(Mask.from_parts(prefix="１３８", suffix="１２３４", hidden=4)) == STANDARD
    assert str(Mask.from_parts(prefix="13812345678", suffix="", hidden=0)) == "13812345678"


def test_parse_mask_of_a_mask_is_identity() -> None:
    m = parse_mask("138****1234")
    assert parse_mask(m) is m


def test_mask_constructor_validates() -> None:
    assert Mask("138****1234").hidden == (3, 4, 5, 6)
    with pytest.raises(InvalidMaskError):
        Mask("238****1234")
    with pytest.raises(InvalidMaskError):
        Mask("138xxxx1234")  # the constructor takes the canonical form only


def test_mask_is_hashable_and_frozen() -> None:
    m = parse_mask("138****1234")
    assert {m, parse_mask("138xxxx1234")} == {m}
    with pytest.raises(AttributeError):
        m.pattern = "13800001234"  # type: ignore[misc]


def test_hidden_symbol() -> None:
    assert HIDDEN == "*"


# -- matches -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "number", "expected"),
    [
        ("138****1234", "13800001234", True),
        ("138****1234", "13899991234", True),
        ("138****1234", "13805711234", True),
        ("138****1234", "13905711234", False),
        ("138****1234", "13805711235", False),
        ("138****1234", "1380571123", False),  # too short
        ("138****1234", "138057112345", False),  # too long
        ("138****1234", "138a5711234", False),
        ("138****1234", "", False),
        ("1**8***1234", "13580001234", True),
        ("1**8***1234", "13570001234", False),
        ("13805710***", "13805710000", True),
        ("13805710***", "13805710999", True),
        ("13805710***", "13805711000", False),
    ],
)
def test_matches(mask: str, number: str, expected: bool) -> None:
    assert parse_mask(mask).matches(number) is expected


@pytest.mark.parametrize("number", ["138１２３４1234", "138٠٥٧١1234", "138²²²²1234"])
def test_matches_rejects_non_ascii_digits(number: str) -> None:
    assert parse_mask("138****1234").matches(number) is False


# -- rejections ----------------------------------------------------------------------------------


def _reject(text: str) -> str:
    with pytest.raises(InvalidMaskError) as info:
        parse_mask(text)
    return str(info.value)


@pytest.mark.parametrize("text", ["138****123", "138***1234", "13****1234", "138 **** 123"])
def test_too_short(text: str) -> None:
    msg = _reject(text)
    assert "11" in msg
    assert "digits" in msg


@pytest.mark.parametrize("text", ["138****12345", "138*****1234", "1380000123456"])
def test_too_long(text: str) -> None:
    msg = _reject(text)
    assert "11" in msg
    assert "digits" in msg


def test_too_long_digits_hint_at_extension_or_landline() -> None:
    msg = _reject("138000012345678")
    assert "15 digits" in msg
    assert "too many digits" in msg


def test_only_four_digits() -> None:
    msg = _reject("1234")
    assert "only 4 digits" in msg
    assert "first 3 digits" in msg


@pytest.mark.parametrize("text", ["238****1234", "038****1234", "938****1234", "057****1234"])
def test_not_starting_with_1(text: str) -> None:
    msg = _reject(text)
    assert "does not start with 1" in msg
    assert "not a Chinese mobile number" in msg


@pytest.mark.parametrize("second", ["0", "1", "2"])
def test_impossible_second_digit(second: str) -> None:
    msg = _reject(f"1{second}8****1234")
    assert f"starts with 1{second}" in msg
    assert "13-19" in msg


@pytest.mark.parametrize("text", ["*38****1234", "x38xxxx1234", "**8****1234", "?3812341234"])
def test_hidden_first_digit(text: str) -> None:
    msg = _reject(text)
    assert "hides the first digit" in msg
    assert "start with 1" in msg


@pytest.mark.parametrize(
    "text", ["*******1234", "1******1234", "1xxxxxx1234", "1 ****** 1234", "********234"]
)
def test_last_four_only(text: str) -> None:
    msg = _reject(text)
    assert "only the last 4 digits" in msg
    assert "first 3 digits are needed" in msg


@pytest.mark.parametrize(
    "text",
    [
        "17012345678-1234",
        "170****5678转1234",
        "170 1234 5678-12",
        "170-1234-5678-1234",
        "17012345678 转 1234",
        "17012345678,1234",
        "17012345678，1234",
        "17012345678#12",
        "17012345678ext123",
        "17012345678 ext. 12",
        "170****5678分机12",
        "+86 17012345678-1234",
        "0086 170****5678转1234",
        "17012345678－1234",  # full-width hyphen
    ],
)
def test_privacy_relay_number_with_extension(text: str) -> None:
    msg = _reject(text)
    assert "privacy number" in msg
    assert "extension" in msg
    assert "cannot find" in msg


@pytest.mark.parametrize("text", ["86 170****5678转1234", "86 17012345678-1234"])
def test_privacy_relay_number_with_bare_86_prefix(text: str) -> None:
    msg = _reject(text)
    assert "privacy number" in msg


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("138**a*1234", "'a'"),
        ("138.****.1234", "'.'"),
        ("138****123O", "'O'"),
        ("138_****_1234", "'_'"),
        ("138/****/1234", "'/'"),
        ("13a*****1234", "'a'"),
        ("138—****—1234", "'—'"),
    ],
)
def test_bad_characters(text: str, bad: str) -> None:
    msg = _reject(text)
    assert "unexpected" in msg
    assert bad in msg
    assert "position" in msg


def test_bad_character_position() -> None:
    assert "position 6" in _reject("138**a*1234")


@pytest.mark.parametrize("text", ["", "   ", "\t"])
def test_empty(text: str) -> None:
    msg = _reject(text)
    assert "empty" in msg


@pytest.mark.parametrize("value", [None, 13812345678, b"138****1234"])
def test_not_text(value: object) -> None:
    with pytest.raises(InvalidMaskError, match="text"):
        parse_mask(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "suffix", "hidden", "total"),
    [("138", "1234", 3, 10), ("138", "1234", 5, 12), ("1380", "1234", 4, 12), ("", "1234", 4, 8)],
)
def test_from_parts_wrong_total(prefix: str, suffix: str, hidden: int, total: int) -> None:
    with pytest.raises(InvalidMaskError) as info:
        Mask.from_parts(prefix=prefix, suffix=suffix, hidden=hidden)
    msg = str(info.value)
    assert f"= {total} digits" in msg
    assert "11" in msg


def test_from_parts_negative_hidden() -> None:
    with pytest.raises(InvalidMaskError, match="hidden must be >= 0"):
        Mask.from_parts(prefix="138", suffix="1234", hidden=-1)


@pytest.mark.parametrize(("prefix", "suffix"), [("1a8", "1234"), ("138", "12*4")])
def test_from_parts_non_digits(prefix: str, suffix: str) -> None:
    with pytest.raises(InvalidMaskError, match="must be digits"):
        Mask.from_parts(prefix=prefix, suffix=suffix, hidden=4)


def test_from_parts_validates_like_parse() -> None:
    with pytest.raises(InvalidMaskError, match="does not start with 1"):
        Mask.from_parts(prefix="238", suffix="1234", hidden=4)
    with pytest.raises(InvalidMaskError, match="only the last 4 digits"):
        Mask.from_parts(prefix="1", suffix="1234", hidden=6)


# -- the error type ------------------------------------------------------------------------------


def test_invalid_mask_error_is_an_input_error_a_value_error_and_a_lookup_failure() -> None:
    with pytest.raises(InvalidMaskError) as info:
        parse_mask("238****1234")
    assert isinstance(info.value, InputError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, LookupFailure)
    assert issubclass(InvalidMaskError, InputError)
    assert issubclass(InvalidMaskError, ValueError)
    assert issubclass(InvalidMaskError, LookupFailure)


def test_value_error_catches_bad_masks() -> None:
    with pytest.raises(ValueError):
        parse_mask("nope")


# -- properties ----------------------------------------------------------------------------------

_PROPS = settings(max_examples=200, deadline=None, derandomize=True)


@st.composite
def _numbers_and_hidden(draw: st.DrawFn) -> tuple[str, frozenset[int]]:
    second = draw(st.sampled_from("3456789"))
    rest = draw(st.text(alphabet="0123456789", min_size=9, max_size=9))
    # At most 5 hidden among 1-10: never the whole of 1-6 (a last-4-only mask).
    hidden = draw(st.frozensets(st.integers(1, 10), max_size=5))
    return "1" + second + rest, hidden


@_PROPS
@given(_numbers_and_hidden(), st.sampled_from(["*", "x", "X", "?", "＊"]), st.booleans())
def test_property_spellings_parse_alike_and_match(
    case: tuple[str, frozenset[int]], wildcard: str, grouped: bool
) -> None:
    number, hidden = case
    canonical = "".join(HIDDEN if i in hidden else d for i, d in enumerate(number))
    spelled = "".join(wildcard if i in hidden else d for i, d in enumerate(number))
    if grouped:
        spelled = f"+86 {spelled[:3]} {spelled[3:7]}-{spelled[7:]}"
    m = parse_mask(spelled)
    assert m.pattern == canonical
    assert m.hidden == tuple(sorted(hidden))
    assert m.matches(number)
    assert canonical.startswith(m.prefix)
    assert canonical.endswith(m.suffix)
    assert HIDDEN not in m.prefix + (m.suffix if hidden else "")


# -- ASCII and full-width digits only ------------------------------------------------------


@pytest.mark.parametrize("text", ["①38****2046", "13⁸****2046", "13𝟖****2046", "一38****2046", "١٣٨****2046"])
def test_other_digit_forms_are_refused(text: str) -> None:
    with pytest.raises(InvalidMaskError):
        parse_mask(text)


def test_full_width_digits_are_digits() -> None:
    assert str(parse_mask("１３８＊＊＊＊２０４６")) == "138****2046"
