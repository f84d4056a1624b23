"""lookup.segments: loading the 号段 database, segment queries and region hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookup.domain.errors import DataError, InputError, UnknownRegionError
from lookup.domain.segments import FIRST_SEGMENT, UNLOCATED, Region, SegmentDB, SegmentInfo

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def db() -> SegmentDB:
    return SegmentDB.load()


def _segments_of(db: SegmentDB, city: str) -> list[int]:
    code = db.region_codes([city]).pop()
    return [i + FIRST_SEGMENT for i, c in enumerate(db.codes) if c == code]


# -- loading -------------------------------------------------------------------------------------


def test_load_default(db: SegmentDB) -> None:
    assert db.segment("1380571") is not None
    assert db.path.name == "segments.bin"


@pytest.mark.parametrize(
    "path", [DATA, DATA / "segments.bin", str(DATA), str(DATA / "segments.bin")]
)
def test_load_explicit_path(path: str | Path, db: SegmentDB) -> None:
    other = SegmentDB.load(path)
    assert other.path == DATA / "segments.bin"
    assert other.segment("1380571") == db.segment("1380571")
    assert other.version == db.version
    assert other.counts == db.counts


def test_default_is_shared() -> None:
    assert SegmentDB.default() is SegmentDB.default()


def test_load_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        SegmentDB.load(tmp_path)


def test_load_wrong_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "segments.bin").write_bytes(b"NOPE" + bytes(100))
    (tmp_path / "regions.json").write_text((DATA / "regions.json").read_text("utf-8"), "utf-8")
    with pytest.raises(DataError, match="not a lookup segment database"):
        SegmentDB.load(tmp_path)


def test_load_truncated_file_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "segments.bin").write_bytes((DATA / "segments.bin").read_bytes()[:100_000])
    (tmp_path / "regions.json").write_text((DATA / "regions.json").read_text("utf-8"), "utf-8")
    with pytest.raises(DataError, match="truncated"):
        SegmentDB.load(tmp_path)


# -- segment() -----------------------------------------------------------------------------------


def test_segment_fields(db: SegmentDB) -> None:
    info = db.segment("1380571")
    assert info == SegmentInfo(
        segment="1380571",
        province="浙江",
        city="杭州",
        carrier="移动",
        area_code="0571",
        zip="310000",
        located=True,
    )
    assert info.as_dict() == {
        "segment": "1380571",
        "province": "浙江",
        "city": "杭州",
        "carrier": "移动",
        "area_code": "0571",
        "zip": "310000",
        "located": True,
        "standard": True,
    }


def test_a_segment_outside_the_numbering_plan_is_not_standard(db: SegmentDB) -> None:
    info = db.segment("1541183")
    assert info is not None and info.located and not info.standard
    assert (info.province, info.city, info.carrier) == ("陕西", "西安", "电信")
    assert sum(db.nonstandard_flags) == db.counts["nonstandard"] == 22_452


@pytest.mark.parametrize("number", ["13805711234", "138057112", 1380571, 13805711234, " 1380571 "])
def test_segment_accepts_7_to_11_digits(db: SegmentDB, number: str | int) -> None:
    info = db.segment(number)
    assert info is not None
    assert info.segment == "1380571"
    assert info.city == "杭州"


@pytest.mark.parametrize("segment", ["1000000", "1100000", "1200000", "1299999", "9999999"])
def test_unknown_segment_is_none(db: SegmentDB, segment: str) -> None:
    assert db.segment(segment) is None


def test_a_segment_not_in_the_plan_is_none(db: SegmentDB) -> None:
    offset = next(i for i, c in enumerate(db.codes) if c == 0)
    assert db.segment(str(FIRST_SEGMENT + offset)) is None


def test_unlocated_segment(db: SegmentDB) -> None:
    offset = next(i for i, c in enumerate(db.codes) if c == UNLOCATED)
    seg = str(FIRST_SEGMENT + offset)
    info = db.segment(seg)
    assert info is not None
    assert info.located is False
    assert info.segment == seg
    assert (info.province, info.city, info.area_code, info.zip) == (None, None, None, None)


@pytest.mark.parametrize(
    "bad", ["abc", "138057a", "123", "", "138057112345", "+8613805711234", "1.38e6"]
)
def test_non_digit_or_wrong_length_input_raises(db: SegmentDB, bad: str) -> None:
    with pytest.raises(UnknownRegionError, match="first 7 digits"):
        db.segment(bad)


# -- known defects of phone.dat, fixed at build time -------------------------------------------


def test_baoding_zip_keeps_its_leading_zero(db: SegmentDB) -> None:
    segs = _segments_of(db, "保定")
    assert segs
    info = db.segment(str(segs[0]))
    assert info is not None
    assert (info.province, info.city, info.zip, info.area_code) == (
        "河北",
        "保定",
        "071000",
        "0312",
    )


def test_every_zip_has_six_digits_and_every_area_code_a_leading_zero(db: SegmentDB) -> None:
    for city in db.cities:
        info = db.segment(str(_first_segment(db, city)))
        assert info is not None
        assert info.zip is not None and len(info.zip) == 6 and info.zip.isdigit(), city
        assert info.area_code is not None, city
        assert info.area_code.startswith("0") and not info.area_code.startswith("00"), city
        assert 3 <= len(info.area_code) <= 4, city


def _first_segment(db: SegmentDB, city: str) -> int:
    code = db.region_codes([city]).pop()
    return db.codes.index(code) + FIRST_SEGMENT


def test_xilingol_area_code_and_zip(db: SegmentDB) -> None:
    segs = _segments_of(db, "锡林郭勒")
    assert len(segs) == 494
    for seg in segs[:: max(1, len(segs) // 20)]:
        info = db.segment(str(seg))
        assert info is not None
        assert (info.province, info.city, info.area_code, info.zip) == (
            "内蒙古",
            "锡林郭勒",
            "0479",
            "026000",
        )


def test_no_region_is_labelled_xilingol_league(db: SegmentDB) -> None:
    assert "锡林郭勒" in db.cities
    assert "锡林郭勒盟" not in db.cities


def test_city_labels_are_unique(db: SegmentDB) -> None:
    assert len(db.cities) == len(set(db.cities)) == db.counts["regions"]


# -- resolve: cities -----------------------------------------------------------------------------


def _city(db: SegmentDB, name: str) -> Region:
    region = db.resolve(city=name)
    assert region is not None
    return region


@pytest.mark.parametrize("name", ["杭州", "杭州市", " 杭州 ", "杭州 市"])
def test_city_with_or_without_shi(db: SegmentDB, name: str) -> None:
    region = _city(db, name)
    assert region == Region(province="浙江", cities=("杭州",), label="浙江 杭州")
    assert str(region) == "浙江 杭州"
    assert region.as_dict() == {"province": "浙江", "cities": ["杭州"], "label": "浙江 杭州"}


@pytest.mark.parametrize(
    ("name", "province"),
    [
        ("杭州", "浙江"),
        ("广州", "广东"),
        ("郑州", "河南"),
        ("苏州", "江苏"),
        ("徐州", "江苏"),
        ("福州", "福建"),
        ("台州", "浙江"),
        ("德州", "山东"),
        ("柳州", "广西"),
        ("赣州", "江西"),
    ],
)
def test_a_bare_zhou_is_never_stripped(db: SegmentDB, name: str, province: str) -> None:
    region = _city(db, name)
    assert region.cities == (name,)
    assert region.province == province
    assert _city(db, name + "市").cities == (name,)


@pytest.mark.parametrize(
    ("name", "province", "label"),
    [
        ("恩施土家族苗族自治州", "湖北", "恩施"),
        ("恩施州", "湖北", "恩施"),
        ("恩施", "湖北", "恩施"),
        ("延边朝鲜族自治州", "吉林", "延边"),
        ("巴音郭楞蒙古自治州", "新疆", "巴州"),
        ("巴音郭楞", "新疆", "巴州"),
        ("博尔塔拉蒙古自治州", "新疆", "博州"),
        ("克孜勒苏柯尔克孜自治州", "新疆", "克州"),
        ("湘西土家族苗族自治州", "湖南", "湘西"),
        ("伊犁哈萨克自治州", "新疆", "伊犁"),
        ("阿坝藏族羌族自治州", "四川", "阿坝"),
        ("凉山彝族自治州", "四川", "凉山"),
        ("黔东南苗族侗族自治州", "贵州", "黔东南"),
        ("黔西南布依族苗族自治州", "贵州", "黔西南"),
        ("德宏傣族景颇族自治州", "云南", "德宏"),
        ("红河哈尼族彝族自治州", "云南", "红河"),
        ("海西蒙古族藏族自治州", "青海", "海西"),
        ("临夏回族自治州", "甘肃", "临夏"),
        ("昌吉回族自治州", "新疆", "昌吉"),
        ("海南藏族自治州", "青海", "海南"),
    ],
)
def test_autonomous_prefectures(db: SegmentDB, name: str, province: str, label: str) -> None:
    region = _city(db, name)
    assert region.province == province
    assert label in region.cities


@pytest.mark.parametrize(
    ("name", "cities"),
    [
        ("锡林郭勒盟", ("锡林郭勒",)),
        ("锡林郭勒", ("锡林郭勒",)),
        ("兴安盟", ("兴安", "乌兰浩特")),
        ("阿拉善盟", ("阿拉善",)),
    ],
)
def test_leagues(db: SegmentDB, name: str, cities: tuple[str, ...]) -> None:
    region = _city(db, name)
    assert region.province == "内蒙古"
    assert set(region.cities) == set(cities)


def test_alias_xiangfan_is_xiangyang(db: SegmentDB) -> None:
    region = _city(db, "襄樊")
    assert region.province == "湖北"
    assert region.cities == ("襄阳",)
    assert _city(db, "襄樊市") == region


def test_alias_chaohu_is_hefei_and_hefei_covers_chaohu(db: SegmentDB) -> None:
    chaohu = _city(db, "巢湖")
    hefei = _city(db, "合肥")
    assert chaohu.province == hefei.province == "安徽"
    assert set(chaohu.cities) == set(hefei.cities) == {"合肥", "巢湖"}


def test_alias_laiwu_is_jinan(db: SegmentDB) -> None:
    laiwu = _city(db, "莱芜")
    assert laiwu.province == "山东"
    assert set(laiwu.cities) == {"济南", "莱芜"}
    assert set(_city(db, "济南").cities) == {"济南", "莱芜"}


def test_children_hulunbuir_covers_hailar(db: SegmentDB) -> None:
    region = _city(db, "呼伦贝尔")
    assert set(region.cities) == {"呼伦贝尔", "海拉尔"}
    # The child alone is just itself.
    assert _city(db, "海拉尔").cities == ("海拉尔",)


@pytest.mark.parametrize("name", ["重庆", "重庆市"])
def test_children_chongqing_covers_wanzhou_fuling_qianjiang(db: SegmentDB, name: str) -> None:
    region = _city(db, name)
    assert region.province == "重庆"
    assert set(region.cities) == {"重庆", "万州", "涪陵", "黔江"}


def test_every_city_label_resolves_to_itself(db: SegmentDB) -> None:
    for city in db.cities:
        info = db.segment(str(_first_segment(db, city)))
        assert info is not None
        region = _city(db, city)
        assert city in region.cities, city
        assert region.province == info.province, city


# -- resolve: provinces --------------------------------------------------------------------------


def _province(db: SegmentDB, name: str) -> Region:
    region = db.resolve(province=name)
    assert region is not None
    assert region.cities == ()
    return region


@pytest.mark.parametrize(
    ("name", "province"),
    [
        ("浙江", "浙江"),
        ("浙江省", "浙江"),
        ("浙", "浙江"),
        ("广东省", "广东"),
        ("粤", "广东"),
        ("广西", "广西"),
        ("广西壮族自治区", "广西"),
        ("桂", "广西"),
        ("新疆维吾尔自治区", "新疆"),
        ("新疆", "新疆"),
        ("宁夏回族自治区", "宁夏"),
        ("内蒙古自治区", "内蒙古"),
        ("内蒙", "内蒙古"),
        ("西藏自治区", "西藏"),
        ("北京市", "北京"),
        ("重庆市", "重庆"),
        ("黑龙江省", "黑龙江"),
        ("海南", "海南"),
        ("海南省", "海南"),
        ("琼", "海南"),
    ],
)
def test_provinces(db: SegmentDB, name: str, province: str) -> None:
    region = _province(db, name)
    assert region.province == province
    assert str(region) == province


def test_every_province_resolves_with_and_without_sheng(db: SegmentDB) -> None:
    assert len(db.provinces) == 31
    for p in db.provinces:
        assert _province(db, p).province == p
        assert _province(db, p + "省").province == p


def test_unknown_province_suggests(db: SegmentDB) -> None:
    with pytest.raises(UnknownRegionError, match="unknown province") as info:
        db.resolve(province="江")
    assert "江苏" in info.value.suggestions
    assert "江苏" in str(info.value)


# -- resolve: area codes and zips ----------------------------------------------------------------


def test_area_code_shared_by_four_cities(db: SegmentDB) -> None:
    region = db.resolve(area_code="0728")
    assert region is not None
    assert region.province == "湖北"
    assert set(region.cities) == {"仙桃", "潜江", "天门", "江汉"}
    assert db.resolve(area_code="728") == region


@pytest.mark.parametrize("code", ["0571", "571", " 0571 "])
def test_area_code_with_or_without_leading_zero(db: SegmentDB, code: str) -> None:
    region = db.resolve(area_code=code)
    assert region == Region(province="浙江", cities=("杭州",), label="浙江 杭州")


@pytest.mark.parametrize(
    ("code", "city"), [("010", "北京"), ("10", "北京"), ("021", "上海"), ("0479", "锡林郭勒")]
)
def test_short_area_codes(db: SegmentDB, code: str, city: str) -> None:
    region = db.resolve(area_code=code)
    assert region is not None
    assert region.cities == (city,)


@pytest.mark.parametrize("code", ["0000", "abc", "07", "05710"])
def test_unknown_area_code(db: SegmentDB, code: str) -> None:
    with pytest.raises(UnknownRegionError, match="area code"):
        db.resolve(area_code=code)


def test_zip_with_its_leading_zero_is_baoding(db: SegmentDB) -> None:
    region = db.resolve(zip="071000")
    assert region is not None
    assert region.province == "河北"
    assert set(region.cities) == {"保定", "雄安"}


@pytest.mark.parametrize("zip_code", ["71000", "31000", "3100000", "31000a"])
def test_zip_that_is_not_6_digits_is_refused(db: SegmentDB, zip_code: str) -> None:
    # `--zip 31000` resolved to 山西 太原 (030000 with the zero "dropped")
    with pytest.raises(UnknownRegionError, match="a zip code is 6 digits"):
        db.resolve(zip=zip_code)


@pytest.mark.parametrize(
    ("zip_code", "city"),
    [
        ("310000", "杭州"),
        ("311200", "杭州"),
        ("313100", "湖州"),
        ("313000", "湖州"),
        ("026000", "锡林郭勒"),
    ],
)
def test_district_zips_go_to_their_city(db: SegmentDB, zip_code: str, city: str) -> None:
    region = db.resolve(zip=zip_code)
    assert region is not None
    assert region.cities == (city,)


@pytest.mark.parametrize("zip_code", ["1234", "1234567", "abcdef", "31-000"])
def test_malformed_zip(db: SegmentDB, zip_code: str) -> None:
    with pytest.raises(UnknownRegionError, match="6 digits"):
        db.resolve(zip=zip_code)


def test_unknown_zip(db: SegmentDB) -> None:
    with pytest.raises(UnknownRegionError, match="unknown zip"):
        db.resolve(zip="999999")


# -- resolve: several hints ----------------------------------------------------------------------


def test_city_and_area_code_intersect(db: SegmentDB) -> None:
    region = db.resolve(city="仙桃", area_code="0728")
    assert region is not None
    assert region.cities == ("仙桃",)
    assert db.resolve(city="杭州", area_code="0571", province="浙江", zip="311200") == _city(
        db, "杭州"
    )


def test_province_and_area_code(db: SegmentDB) -> None:
    region = db.resolve(province="湖北", area_code="0728")
    assert region is not None
    assert set(region.cities) == {"仙桃", "潜江", "天门", "江汉"}


@pytest.mark.parametrize(
    "hints",
    [
        {"city": "杭州", "province": "江苏"},
        {"city": "杭州", "area_code": "0728"},
        {"city": "杭州", "zip": "313100"},
        {"province": "浙江", "area_code": "0728"},
        {"area_code": "0571", "zip": "071000"},
    ],
)
def test_contradictory_hints(db: SegmentDB, hints: dict[str, str]) -> None:
    with pytest.raises(UnknownRegionError, match="disagree"):
        db.resolve(**hints)


def test_contradiction_message_names_both_sides(db: SegmentDB) -> None:
    with pytest.raises(UnknownRegionError) as info:
        db.resolve(city="杭州", province="江苏")
    assert "浙江" in str(info.value)
    assert "江苏" in str(info.value)
    with pytest.raises(UnknownRegionError) as info:
        db.resolve(city="杭州", area_code="0728")
    assert "0728" in str(info.value)
    assert "杭州" in str(info.value)


def test_no_hint_is_none(db: SegmentDB) -> None:
    assert db.resolve() is None
    assert db.resolve(city="", province="", area_code="", zip="") is None


# -- resolve: errors -----------------------------------------------------------------------------


def test_unknown_city_lists_suggestions(db: SegmentDB) -> None:
    with pytest.raises(UnknownRegionError) as info:
        db.resolve(city="杭")
    assert "杭州" in info.value.suggestions
    assert "unknown city" in str(info.value)
    assert "杭州" in str(info.value)


def test_unknown_city_without_anything_near(db: SegmentDB) -> None:
    with pytest.raises(UnknownRegionError, match="unknown city") as info:
        db.resolve(city="Hangzhou")
    assert isinstance(info.value.suggestions, tuple)


def test_blank_city(db: SegmentDB) -> None:
    with pytest.raises(UnknownRegionError, match="empty"):
        db.resolve(city="   ")


@pytest.mark.parametrize("name", ["浙江", "浙江省", "广西壮族自治区", "湖北", "贵州"])
def test_a_province_given_as_city(db: SegmentDB, name: str) -> None:
    with pytest.raises(UnknownRegionError) as info:
        db.resolve(city=name)
    msg = str(info.value)
    assert "is a province, not a city" in msg
    assert "province hint" in msg


def test_hainan_as_city_is_qinghai_prefecture_and_as_province_is_hainan(db: SegmentDB) -> None:
    as_city = _city(db, "海南")
    assert as_city.province == "青海"
    assert as_city.cities == ("海南",)
    as_province = _province(db, "海南")
    assert as_province.province == "海南"
    assert db.resolve(city="海南", province="青海") == as_city


def test_hainan_sheng_as_city_is_a_province(db: SegmentDB) -> None:
    with pytest.raises(UnknownRegionError, match="is a province, not a city"):
        db.resolve(city="海南省")


def test_unknown_region_error_is_an_input_error() -> None:
    assert issubclass(UnknownRegionError, InputError)
    assert issubclass(UnknownRegionError, ValueError)


# -- version and sources -------------------------------------------------------------------------


def test_version_and_sources(db: SegmentDB) -> None:
    assert "phone.dat" in db.version
    assert "phonenumbers" in db.version
    names = {s["name"] for s in db.sources}
    assert names == {"phone", "phonenumbers"}
    by_name = {s["name"]: s for s in db.sources}
    assert "MIT" in by_name["phone"]["licence"]
    assert "Apache-2.0" in by_name["phonenumbers"]["licence"]
    assert by_name["phone"]["records"] == db.counts["located"]
    assert by_name["phonenumbers"]["records"] == db.counts["unlocated"]


def test_carrier_names(db: SegmentDB) -> None:
    assert db.carrier_names == {
        1: "移动",
        2: "联通",
        3: "电信",
        4: "电信虚拟运营商",
        5: "联通虚拟运营商",
        6: "移动虚拟运营商",
        7: "广电",
        8: "广电虚拟运营商",
    }
    assert db.carrier_name(0) is None
