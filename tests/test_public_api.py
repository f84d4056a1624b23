"""The public surface of ``lookup``: ``__all__``, lazy attributes and the error tree.

Written to keep passing as names are added to ``__all__``: only a minimal subset is
hard-coded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import lookup
from lookup.domain import errors

REQUIRED = {
    "parse_mask",
    "Mask",
    "SegmentDB",
    "SegmentInfo",
    "Region",
    "plan",
    "TierPlan",
    "InvalidMaskError",
    "UnknownRegionError",
    "LookupFailure",
}


def test_required_names_are_public() -> None:
    assert set(lookup.__all__) >= REQUIRED


def test_all_is_unique() -> None:
    # Its order is ruff's (RUF022: isort-style, constants first), checked by `ruff check`.
    assert len(set(lookup.__all__)) == len(lookup.__all__)
    assert all(isinstance(name, str) and name for name in lookup.__all__)


@pytest.mark.parametrize("name", sorted(lookup.__all__))
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(lookup, name)
    assert value is not None
    assert getattr(lookup, name) is value  # stable on second access (cached)


def test_star_import_gives_every_name() -> None:
    code = (
        "from lookup import *; import lookup; names = set(globals()); "
        "print(sorted(set(lookup.__all__) - names))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_dir_includes_public_names() -> None:
    assert set(lookup.__all__) <= set(dir(lookup))


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = lookup.no_such_thing  # type: ignore[attr-defined]
    assert not hasattr(lookup, "definitely_not_exported")
    assert getattr(lookup, "definitely_not_exported", 42) == 42


def test_public_names_are_the_real_objects() -> None:
    from lookup.domain.masks import Mask, parse_mask
    from lookup.domain.segments import Region, SegmentDB, SegmentInfo
    from lookup.domain.tiers import TierPlan, plan

    assert lookup.parse_mask is parse_mask
    assert lookup.Mask is Mask
    assert lookup.SegmentDB is SegmentDB
    assert lookup.SegmentInfo is SegmentInfo
    assert lookup.Region is Region
    assert lookup.plan is plan
    assert lookup.TierPlan is TierPlan


def _error_classes() -> list[str]:
    # errors.__all__ also holds TransientKind, a Literal alias and not a class
    return [name for name in errors.__all__ if isinstance(getattr(errors, name), type)]


def test_every_error_class_in_errors_all_is_public() -> None:
    for name in _error_classes():
        assert name in lookup.__all__, name
        assert getattr(lookup, name) is getattr(errors, name)


def test_import_lookup_is_lazy() -> None:
    code = (
        "import sys, lookup; "
        "heavy = [m for m in ('lookup.segments', 'lookup.candidates', 'aiohttp') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_public_api_smoke() -> None:
    m = lookup.parse_mask("138****1234")
    assert isinstance(m, lookup.Mask)
    db = lookup.SegmentDB.default()
    info = db.segment("1380571")
    assert isinstance(info, lookup.SegmentInfo)
    region = db.resolve(city="杭州")
    assert isinstance(region, lookup.Region)
    p = lookup.plan(m, db, city="杭州")
    assert isinstance(p, lookup.TierPlan)
    with pytest.raises(lookup.InvalidMaskError):
        lookup.parse_mask("nope")
    with pytest.raises(lookup.UnknownRegionError):
        db.resolve(city="火星")


# -- the error tree, as drawn in lookup/errors.py --------------------------------------------------

TREE = [
    ("InputError", "LookupFailure"),
    ("InputError", "ValueError"),
    ("InvalidMaskError", "InputError"),
    ("TooManyCandidatesError", "InvalidMaskError"),
    ("SightingsDisagreeError", "InvalidMaskError"),
    ("UnknownRegionError", "InputError"),
    ("ConfigError", "InputError"),
    ("DataError", "LookupFailure"),
    ("OrderApiError", "LookupFailure"),
    ("TransientApiError", "OrderApiError"),
    ("FatalApiError", "OrderApiError"),
    ("CircuitOpenError", "OrderApiError"),
    ("LookupFailure", "Exception"),
]


def _cls(name: str) -> type[BaseException]:
    builtin = {"ValueError": ValueError, "Exception": Exception}
    return builtin.get(name) or getattr(errors, name)


@pytest.mark.parametrize(("child", "parent"), TREE)
def test_error_tree(child: str, parent: str) -> None:
    assert issubclass(_cls(child), _cls(parent))


@pytest.mark.parametrize(
    ("child", "not_parent"),
    [
        ("DataError", "InputError"),
        ("DataError", "ValueError"),
        ("OrderApiError", "InputError"),
        ("OrderApiError", "ValueError"),
        ("UnknownRegionError", "InvalidMaskError"),
        ("InvalidMaskError", "UnknownRegionError"),
        ("ConfigError", "InvalidMaskError"),
        ("TransientApiError", "FatalApiError"),
        ("FatalApiError", "TransientApiError"),
        ("CircuitOpenError", "TransientApiError"),
        ("CircuitOpenError", "FatalApiError"),
    ],
)
def test_error_tree_branches_are_separate(child: str, not_parent: str) -> None:
    assert not issubclass(_cls(child), _cls(not_parent))


def test_every_error_in_errors_all_is_a_lookup_failure() -> None:
    for name in _error_classes():
        assert issubclass(getattr(errors, name), errors.LookupFailure), name


def test_every_class_in_the_docstring_tree_exists() -> None:
    doc = errors.__doc__ or ""
    for child, _ in TREE:
        if child not in ("ValueError", "Exception"):
            assert child in doc, child
            assert child in errors.__all__, child


def test_error_attributes() -> None:
    e = errors.TooManyCandidatesError("too many", count=12, cap=10)
    assert (e.count, e.cap, str(e)) == (12, 10, "too many")
    u = errors.UnknownRegionError("unknown", suggestions=("杭州",))
    assert u.suggestions == ("杭州",)
    assert errors.UnknownRegionError("x").suggestions == ()
    t = errors.TransientApiError("slow down", status=429, retry_after=2.0)
    assert (t.status, t.retry_after) == (429, 2.0)
    f = errors.FatalApiError("nope", status=401)
    assert f.status == 401
