"""Parsing masked mobile numbers: ``138****1234`` and its many spellings.

A :class:`Mask` is 11 positions, each a known digit or hidden. Parsing never
guesses: input that is not a resolvable Chinese mobile mask raises
:class:`~lookup.domain.errors.InvalidMaskError` saying what is wrong.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from lookup.domain.errors import InvalidMaskError, SightingsDisagreeError
from lookup.domain.privacy import quote

__all__ = ["HIDDEN", "Mask", "combine_sightings", "parse_mask"]

HIDDEN = "*"
_WILDCARDS = frozenset("*xX?")
_SEPARATORS = frozenset(" -\t")
# A platform privacy relay number with an extension: 17012345678-1234, 170****5678转1234.
_EXTENSION = re.compile(
    r"^(?P<host>[0-9*xX?\s-]{11,17}?)\s*(?:转|,|，|#|ext\.?|分机)\s*(?P<ext>\d{1,6})$"
)


@dataclass(frozen=True, slots=True)
class Mask:
    """An 11-position mobile-number mask: digits where known, ``*`` where hidden.

    >>> m = parse_mask("138 **** 1234")
    >>> str(m), m.hidden
    ('138****1234', (3, 4, 5, 6))
    """

    pattern: str

    def __post_init__(self) -> None:
        _validate(self.pattern, self.pattern)

    @classmethod
    def from_parts(cls, prefix: str, suffix: str, hidden: int) -> Mask:
        """Build a mask from what a caller may already hold: ``("138", "1234", 4)``."""
        prefix, suffix = _digits_only(prefix, "prefix"), _digits_only(suffix, "suffix")
        if hidden < 0:
            raise InvalidMaskError(f"hidden must be >= 0, got {hidden}")
        total = len(prefix) + hidden + len(suffix)
        if total != 11:
            raise InvalidMaskError(
                f"prefix ({len(prefix)}) + hidden ({hidden}) + suffix ({len(suffix)}) = {total}"
                " digits; a Chinese mobile number has 11"
            )
        return cls(prefix + HIDDEN * hidden + suffix)

    @property
    def hidden(self) -> tuple[int, ...]:
        """Positions (0-10) of the hidden digits."""
        return tuple(i for i, c in enumerate(self.pattern) if c == HIDDEN)

    @property
    def hidden_count(self) -> int:
        return self.pattern.count(HIDDEN)

    @property
    def prefix(self) -> str:
        """The known digits before the first hidden one."""
        i = self.pattern.find(HIDDEN)
        return self.pattern if i < 0 else self.pattern[:i]

    @property
    def suffix(self) -> str:
        """The known digits after the last hidden one."""
        i = self.pattern.rfind(HIDDEN)
        return self.pattern if i < 0 else self.pattern[i + 1 :]

    def matches(self, number: str) -> bool:
        """Whether an 11-digit number fits the mask."""
        return (
            len(number) == 11
            and number.isascii()
            and number.isdigit()
            and all(m in (HIDDEN, d) for m, d in zip(self.pattern, number, strict=True))
        )

    def __str__(self) -> str:
        return self.pattern


def _digits_only(text: str, what: str) -> str:
    text = unicodedata.normalize("NFKC", text).strip()
    if text and not text.isdigit():
        raise InvalidMaskError(f"{what} must be digits, got {quote(text)}")
    return text


def _validate(pattern: str, original: str) -> None:
    if not pattern:
        raise InvalidMaskError("empty mask: expected something like 138****1234")
    if len(pattern) != 11:
        hint = ""
        if len(pattern) == 4 and pattern.isdigit():
            hint = ": only 4 digits; a mask needs the first 3 digits too (138****1234)"
        elif len(pattern) > 11 and pattern.isdigit():
            hint = ": too many digits (an extension or a landline?)"
        raise InvalidMaskError(
            f"{quote(original)} has {len(pattern)} digits and wildcards; a Chinese mobile number "
            f"has 11{hint}"
        )
    if any(c != HIDDEN and not ("0" <= c <= "9") for c in pattern):
        raise InvalidMaskError(f"{quote(original)} contains characters that are not digits or wildcards")
    if all(c == HIDDEN for c in pattern[1:7]):
        raise InvalidMaskError(
            f"{quote(original)} shows only the last 4 digits: about 544,000 numbers fit, too many "
            "to enumerate; the first 3 digits are needed (138****1234)"
        )
    if pattern[0] != "1":
        if pattern[0] == HIDDEN:
            raise InvalidMaskError(
                f"{quote(original)} hides the first digit: Chinese mobile numbers start with 1, "
                "write 1 in its place"
            )
        raise InvalidMaskError(
            f"{quote(original)} does not start with 1: not a Chinese mobile number "
            "(landlines and foreign numbers cannot be resolved)"
        )
    if pattern[1] in "012":
        raise InvalidMaskError(
            f"{quote(original)} starts with 1{pattern[1]}: no Chinese mobile number does "
            "(mobile numbers start with 13-19)"
        )


def _strip_country_code(text: str) -> str:
    if text.startswith("+86"):
        return text[3:]
    if text.startswith("0086"):
        return text[4:]
    if text.startswith("(+86)"):  # NFKC already turned （+86） into (+86)
        return text[5:]
    # A bare 86: a mobile number starts with 1, never 8, so "86" then "1" is the country code.
    if text.startswith("86") and text[2:].lstrip(" -\t")[:1] == "1":
        return text[2:]
    return text


def _symbols(text: str) -> int:
    return sum(1 for c in text if c not in _SEPARATORS)


def _has_extension(text: str) -> bool:
    """``17012345678-1234``, ``170 1234 5678-12``, ``170****5678转1234``."""
    m = _EXTENSION.match(text)
    if m:
        return _symbols(m.group("host")) == 11
    head, dash, tail = text.rpartition("-")
    return bool(dash) and tail.isdigit() and len(tail) <= 6 and _symbols(head) == 11


def parse_mask(text: str | Mask) -> Mask:
    """Parse a masked mobile number into a :class:`Mask`.

    Accepted: ``138****1234``, ``138xxxx1234``, ``138XXXX1234``, ``138????1234``, full-width
    ``＊`` and digits (no other digit forms: ``①``, ``¹``, ``𝟏`` are refused), spaces and dashes (``138 **** 1234``, ``138-****-1234``), a
    ``+86``/``0086``/``86`` prefix, hidden digits anywhere (``1**8***1234``), and full numbers.

    Raises :class:`~lookup.domain.errors.InvalidMaskError` with what is wrong, e.g. for a platform
    privacy number with an extension (``17012345678-1234``).
    """
    if isinstance(text, Mask):
        return text
    if not isinstance(text, str):
        raise InvalidMaskError(f"a mask is text like '138****1234', got {type(text).__name__}")
    original = text
    # NFKC would turn ①, ¹ or 𝟏 into 1: only ASCII and full-width digits are digits here.
    for i, c in enumerate(text):
        if c.isnumeric() and not ("0" <= c <= "9" or "\uff10" <= c <= "\uff19"):
            raise InvalidMaskError(
                f"{quote(original)} has {c!r} at position {i + 1}: write digits as 0-9 "
                "(ASCII or full-width ０-９)"
            )
    norm = unicodedata.normalize("NFKC", text).strip()
    norm = _strip_country_code(norm).strip()
    if _has_extension(norm):
        raise InvalidMaskError(
            f"{quote(original)} is a platform privacy number with an extension: the 11-digit host "
            "number belongs to the platform's relay service, not the customer, so enumerating "
            "it cannot find the customer's number; use the order's real contact or the "
            "platform's own lookup"
        )
    chars: list[str] = []
    for i, c in enumerate(norm):
        if c in _SEPARATORS:
            continue
        if "0" <= c <= "9":
            chars.append(c)
        elif c in _WILDCARDS:
            chars.append(HIDDEN)
        else:
            raise InvalidMaskError(
                f"{quote(original)} has an unexpected {c!r} at position {i + 1}: use digits, "
                "* x X ? or ＊ for hidden digits, spaces or dashes between groups"
            )
    pattern = "".join(chars)
    _validate(pattern, original)
    return Mask(pattern)


def combine_sightings(mask: str | Mask, also: Iterable[str | Mask] = ()) -> Mask:
    """Intersect several sightings of one number into the one mask every sighting allows.

    Each sighting must be a mask on its own (:func:`parse_mask`). A position is known when
    any sighting shows it; two sightings that show different digits at one position cannot
    be the same number, which is bad input naming the first such position.

    >>> str(combine_sightings("138****2046", ["1385715****"]))
    '13857152046'
    """
    first = parse_mask(mask)
    also = list(also)
    if not also:
        return first
    cells = list(first.pattern)
    shown_by = [first] * 11  # which sighting showed each known digit, for the message
    for other in also:
        seen = parse_mask(other)
        for i, (have, new) in enumerate(zip(cells, seen.pattern, strict=True)):
            if new == HIDDEN or have == new:
                continue
            if have != HIDDEN:
                raise SightingsDisagreeError(
                    f"the sightings disagree at digit {i + 1}: {shown_by[i]} shows {have}, "
                    f"{seen} shows {new}, so no number fits both; check that they are the "
                    "same customer's number",
                    position=i + 1,
                )
            cells[i], shown_by[i] = new, seen
    return Mask("".join(cells))
