"""The built data (data/segments.bin + regions.json) against its upstream sources.

phone.dat is read with ``read_phone_dat`` of ``scripts/build_segments.py`` (imported by
path); the documented fixes are applied here independently of the build script's
``fix_region`` so that a wrong fix there shows up as a mismatch.
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path
from types import ModuleType

import phone
import phonenumbers
import pytest
from phone import Phone

from lookup.segments import FIRST_SEGMENT, LAST_SEGMENT, UNLOCATED, SegmentDB

ROOT = Path(__file__).resolve().parent.parent
PHONE_DAT = Path(phone.__file__).resolve().parent / "phone.dat"


def _load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_build_segments_under_test", ROOT / "scripts" / "build_segments.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def db() -> SegmentDB:
    return SegmentDB.load(ROOT / "data")


@pytest.fixture(scope="module")
def phone_dat() -> tuple[str, list[tuple[int, str, int]]]:
    build = _load_build_script()
    version, records = build.read_phone_dat(PHONE_DAT)
    return version, records


@pytest.fixture(scope="module")
def unlocated(db: SegmentDB) -> list[int]:
    return [i + FIRST_SEGMENT for i, c in enumerate(db.codes) if c == UNLOCATED]


def _expected(text: str) -> tuple[str, str, str, str]:
    """phone.dat's ``province|city|zip|area code`` after the fixes data/README.md documents."""
    province, city, zip_code, area_code = text.split("|")
    if city in ("锡林郭勒", "锡林郭勒盟"):
        city, zip_code, area_code = "锡林郭勒", "026000", "0479"
    return province, city, zip_code.zfill(6), area_code


def test_every_phone_dat_segment_agrees(
    db: SegmentDB, phone_dat: tuple[str, list[tuple[int, str, int]]]
) -> None:
    _, records = phone_dat
    assert len(records) == 499_527
    carrier = {kind: Phone.get_phone_no_type(kind) for kind in range(1, 9)}
    assert None not in carrier.values()
    mismatches = []
    for seg, text, kind in records:
        info = db.segment(str(seg))
        province, city, zip_code, area_code = _expected(text)
        if (
            info is None
            or not info.located
            or info.province != province
            or info.city != city
            or info.zip != zip_code
            or info.area_code != area_code
            or info.carrier != carrier[kind]
        ):
            mismatches.append((seg, text, kind, info))
            if len(mismatches) >= 20:
                break
    assert mismatches == []


def test_the_fixes_are_real(phone_dat: tuple[str, list[tuple[int, str, int]]]) -> None:
    """The defects the fixes are for do exist in phone.dat (else the fixes are stale)."""
    _, records = phone_dat
    texts = {text for _, text, _ in records}
    assert any(t.startswith("河北|保定|71000|") for t in texts)
    assert "内蒙古|锡林郭勒|152500|00479" in texts
    assert "内蒙古|锡林郭勒盟|26000|0479" in texts


def test_located_count(db: SegmentDB) -> None:
    located = sum(1 for c in db.codes if 0 < c < UNLOCATED)
    assert located == 499_527 == db.counts["located"]


def test_only_phone_dat_segments_are_located(
    db: SegmentDB, phone_dat: tuple[str, list[tuple[int, str, int]]]
) -> None:
    _, records = phone_dat
    in_dat = {seg for seg, _, _ in records}
    located = {i + FIRST_SEGMENT for i, c in enumerate(db.codes) if 0 < c < UNLOCATED}
    assert located == in_dat


def test_table_covers_the_mobile_range(db: SegmentDB) -> None:
    assert len(db.codes) == len(db.carrier_codes) == LAST_SEGMENT - FIRST_SEGMENT + 1
    assert max(c for c in db.codes if c != UNLOCATED) == db.counts["regions"]
    assert set(db.carrier_codes) <= set(range(9))


def test_unlocated_count(db: SegmentDB, unlocated: list[int]) -> None:
    assert len(unlocated) == db.counts["unlocated"]
    assert len(unlocated) > 0


def _is_valid(seg: int) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(f"+86{seg}0000"))


def test_unlocated_sample_is_valid_under_the_numbering_plan(unlocated: list[int]) -> None:
    sample = random.Random(20231201).sample(unlocated, min(2_000, len(unlocated)))
    assert [s for s in sample if not _is_valid(s)] == []


def test_every_unlocated_segment_is_valid_under_the_numbering_plan(unlocated: list[int]) -> None:
    # All 44,525 take about 2 s.
    assert [s for s in unlocated if not _is_valid(s)] == []


def test_unlocated_segments_have_no_region(db: SegmentDB, unlocated: list[int]) -> None:
    for seg in unlocated[:: max(1, len(unlocated) // 500)]:
        info = db.segment(str(seg))
        assert info is not None
        assert not info.located
        assert info.province is None and info.city is None


def test_a_sample_of_unknown_segments_is_invalid_under_the_numbering_plan(db: SegmentDB) -> None:
    unknown = [i + FIRST_SEGMENT for i, c in enumerate(db.codes) if c == 0]
    sample = random.Random(7).sample(unknown, 2_000)
    assert [s for s in sample if _is_valid(s)] == []


def test_data_readme_names_sources_and_licences() -> None:
    readme = ROOT / "data" / "README.md"
    assert readme.is_file()
    text = readme.read_text("utf-8")
    assert "phone" in text
    assert "phone.dat" in text
    assert "phonenumbers" in text
    assert "MIT" in text
    assert "Apache-2.0" in text
    assert re.search(r"build_segments\.py", text)
