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
from phonenumbers import carrier as pn_carrier

from lookup.domain.segments import FIRST_SEGMENT, LAST_SEGMENT, UNLOCATED, SegmentDB

ROOT = Path(__file__).resolve().parents[2]
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


def _expected_kind(seg: int, kind: int) -> int:
    """phone.dat's carrier type after the reseller fix data/README.md documents."""
    if kind != 6:  # only 移动虚拟运营商 rows are re-typed
        return kind
    network = pn_carrier.name_for_number(phonenumbers.parse(f"+86{seg}0000"), "zh")
    if network == "中国联通":
        return 5  # 联通虚拟运营商
    if str(seg).startswith("162"):
        return 4  # 电信虚拟运营商: 162 is 电信's virtual-operator block
    return kind


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
        kind = _expected_kind(seg, kind)
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


def test_the_reseller_fixes(
    db: SegmentDB, phone_dat: tuple[str, list[tuple[int, str, int]]]
) -> None:
    _, records = phone_dat
    fixed = {seg: _expected_kind(seg, kind) for seg, _, kind in records if kind == 6}
    fixed = {seg: kind for seg, kind in fixed.items() if kind != 6}
    assert len(fixed) == 439 == db.counts["reseller_fixes"]
    blocks = {str(seg)[:4] for seg in fixed}
    assert {"1704", "1707", "1708", "1709"} <= blocks
    assert {str(s)[:3] for s in fixed} == {"155", "162", "167", "170", "171"}
    for seg, kind in fixed.items():
        info = db.segment(str(seg))
        assert info is not None
        assert info.carrier == ("联通虚拟运营商" if kind == 5 else "电信虚拟运营商"), seg
    # 移动's own resellers (1703, 1705, 1706, 165 ...) keep their type
    kept = [seg for seg, _, kind in records if kind == 6 and seg not in fixed]
    assert {"1703", "1705", "1706", "1650"} <= {str(seg)[:4] for seg in kept}
    assert {db.segment(str(seg)).carrier for seg in kept} == {"移动虚拟运营商"}  # type: ignore[union-attr]


def test_nonstandard_marks_are_the_numbering_plan(db: SegmentDB) -> None:
    flagged = [i + FIRST_SEGMENT for i, f in enumerate(db.nonstandard_flags) if f]
    assert len(flagged) == 22_452 == db.counts["nonstandard"]
    assert all(0 < db.codes[s - FIRST_SEGMENT] < UNLOCATED for s in flagged)  # located only
    assert [s for s in flagged if _is_valid(s)] == []
    located = [i + FIRST_SEGMENT for i, c in enumerate(db.codes) if 0 < c < UNLOCATED]
    standard = [s for s in located if not db.nonstandard_flags[s - FIRST_SEGMENT]]
    sample = random.Random(20261202).sample(standard, 20_000)
    assert [s for s in sample if not _is_valid(s)] == []
    blocks = {str(s)[:3] for s in flagged}
    assert {"141", "146", "148", "149", "174"} <= blocks
    assert db.segment("1541183") is not None and not db.segment("1541183").standard  # type: ignore[union-attr]


def test_merged_units_laiwu_and_chaohu(db: SegmentDB) -> None:
    """莱芜 (merged into 济南, 2019) and 巢湖 (split among 合肥/芜湖/马鞍山, 2011)."""
    assert db.resolve(city="莱芜") == db.resolve(city="济南")
    jinan = db.resolve(city="济南")
    assert jinan is not None and set(jinan.cities) == {"济南", "莱芜"}
    hefei = db.resolve(city="巢湖")
    assert hefei is not None and hefei.province == "安徽" and set(hefei.cities) == {"合肥", "巢湖"}
    text = (ROOT / "data" / "README.md").read_text("utf-8")
    assert "莱芜" in text and "2019" in text and "巢湖" in text and "2011" in text
    assert "22,452" in text and "439" in text


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
