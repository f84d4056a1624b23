"""The five hints, declared once and read without pydantic (commands that send nothing,
``lookup plan``, start without it): their names, their longest values, how a value is read.

:class:`lookup.domain.models.Hints` (the pydantic model of requests and batch rows) is
built from these, so a hint reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypedDict

from lookup.domain.errors import ConfigError

__all__ = ["HINT_FIELDS", "HINT_MAX_LENGTH", "HintArgs", "hint_args", "hint_text"]

HINT_FIELDS: Final = ("city", "province", "area_code", "zip", "carrier")
"""The names of the five hints, in the order the CLI, batch files and the service use."""
HINT_MAX_LENGTH: Final[Mapping[str, int]] = {
    "city": 64, "province": 64, "area_code": 16, "zip": 16, "carrier": 32,
}  # fmt: skip


class HintArgs(TypedDict):
    """The hints as keyword arguments of :func:`~lookup.domain.tiers.plan` and ``find``."""

    city: str | None
    province: str | None
    area_code: str | None
    zip: str | None
    carrier: str | None


def hint_text(value: object) -> object:
    """A hint as read: stripped, blank is ``None``, a number (``571``, ``310000.0`` from a
    spreadsheet) is its text. Anything else is returned as is (for the caller to refuse)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 310000.0 from a spreadsheet is the zip 310000
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def hint_args(values: Mapping[str, object]) -> HintArgs:
    """The hints of ``values`` (text or ``None``; others ignored) read as :func:`hint_text`
    reads them. :raises ConfigError: a value that is not text or longer than allowed."""
    out: dict[str, str | None] = {}
    problems = []
    for name in HINT_FIELDS:
        value = hint_text(values.get(name))
        if value is not None and not isinstance(value, str):
            problems.append(f"--{name.replace('_', '-')}: Input should be a valid string")
        elif value is not None and len(value) > HINT_MAX_LENGTH[name]:
            problems.append(f"--{name.replace('_', '-')}: String should have at most "
                            f"{HINT_MAX_LENGTH[name]} characters")  # fmt: skip
        else:
            out[name] = value
    if problems:
        raise ConfigError(f"bad hint: {', '.join(problems)}")
    return HintArgs(city=out["city"], province=out["province"], area_code=out["area_code"],
                    zip=out["zip"], carrier=out["carrier"])  # fmt: skip
