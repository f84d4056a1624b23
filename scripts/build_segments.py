"""Build ``data/segments.bin`` and ``data/regions.json`` from the upstream sources.

Sources (install with ``pip install -e '.[build-data]'``):

* PyPI ``phone`` (MIT): ``phone/phone.dat``, 499,527 7-digit segments with
  province, city, zip, area code and carrier type 1-8.
* PyPI ``phonenumbers`` (Apache-2.0): ``is_valid_number`` says which 7-digit
  segments the numbering plan allows; the ones phone.dat lacks become the
  ``unlocated`` tier (no region), with the carrier phonenumbers knows, if any.

Known defects of phone.dat fixed here:

* zips stored as integers lose their leading 0 (保定 ``71000`` is ``071000``);
* 锡林郭勒's area code is stored as ``00479`` (it is ``0479``);
* one stray segment is labelled ``锡林郭勒盟`` instead of ``锡林郭勒``; the other 493 say
  zip ``152500`` (a 黑龙江 zip): 锡林郭勒 is ``026000``;
* 439 segments are typed 移动虚拟运营商 (6) though they are 联通's or 电信's resellers'
  (1704, 1707-1709, parts of 171, 167, 155: phonenumbers' carrier data names 中国联通;
  162, which phonenumbers leaves unnamed, is 电信's virtual-operator block).

Every located segment is also marked standard or not: ``is_valid_number`` on
``+86 SEGMENT 0000`` (the same test that admits unlocated segments). The 22,452 it rejects
(data-only/IoT ranges 141, 146, 148, 149, 174, stray rows in unassigned ranges) stay in the
database but are not candidates by default. The mark is bit 7 of the carrier byte (format 2).

Run: ``python scripts/build_segments.py`` (writes into ``data/``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import struct
import sys
from array import array
from pathlib import Path

FIRST = 1_300_000
LAST = 1_999_999
SIZE = LAST - FIRST + 1
MAGIC = b"LKSG"
FORMAT = 2
UNLOCATED = 0xFFFF
NONSTANDARD = 0x80  # bit 7 of the carrier byte: outside the numbering plan

CARRIERS = {
    1: "移动",
    2: "联通",
    3: "电信",
    4: "电信虚拟运营商",
    5: "联通虚拟运营商",
    6: "移动虚拟运营商",
    7: "广电",
    8: "广电虚拟运营商",
}
PHONENUMBERS_CARRIERS = {"中国移动": 1, "中国联通": 2, "中国电信": 3, "中国广电": 7}
# A reseller (virtual operator) segment belongs to the network phonenumbers names for it.
VIRTUAL_OF_NETWORK = {1: 6, 2: 5, 3: 4, 7: 8}
# Blocks that phonenumbers' carrier data leaves unnamed but that are one network's
# virtual-operator block (MIIT allocation): 162 is 电信's.
VIRTUAL_BLOCKS = {"162": 4}

# phone.dat labels some segments with a county-level seat or an older unit that belongs to a
# prefecture; a hint naming the prefecture covers them too. (child label -> parent label)
CHILDREN = {
    "呼伦贝尔": ["海拉尔"],
    "乌兰察布": ["集宁"],
    "巴彦淖尔": ["临河"],
    "兴安": ["乌兰浩特"],
    "巴州": ["库尔勒"],
    "博州": ["博乐"],
    "伊犁": ["奎屯"],
    "湘西": ["吉首"],
    "凉山": ["西昌"],
    "延边": ["珲春"],
    "海北": ["海晏"],
    "海西": ["格尔木"],
    "信阳": ["潢川"],
    "保定": ["雄安"],
    "合肥": ["巢湖"],
    "济南": ["莱芜"],
    "重庆": ["万州", "涪陵", "黔江"],
}

# Renamed or merged cities and the usual short or full forms that suffix stripping
# does not reach. (alias -> label in the data)
CITY_ALIASES = {
    "襄樊": "襄阳",
    "巢湖": "合肥",
    "莱芜": "济南",
    "思茅": "普洱",
    "博尔塔拉": "博州",
    "巴音郭楞": "巴州",
    "克孜勒苏": "克州",
    "兴安盟": "兴安",
    "锡林郭勒盟": "锡林郭勒",
    "阿拉善盟": "阿拉善",
    "大兴安岭地区": "大兴安岭",
    "伊犁哈萨克": "伊犁",
    "伊犁州": "伊犁",
    "湘西州": "湘西",
    "恩施州": "恩施",
    "延边州": "延边",
    "凉山州": "凉山",
    "甘孜州": "甘孜",
    "阿坝州": "阿坝",
    "黔东南州": "黔东南",
    "黔南州": "黔南",
    "黔西南州": "黔西南",
    "大理州": "大理",
    "楚雄州": "楚雄",
    "红河州": "红河",
    "文山州": "文山",
    "德宏州": "德宏",
    "怒江州": "怒江",
    "迪庆州": "迪庆",
    "西双版纳州": "西双版纳",
    "临夏州": "临夏",
    "甘南州": "甘南",
    "昌吉州": "昌吉",
    "海西州": "海西",
    "海北州": "海北",
    "海南州": "海南",
    "黄南州": "黄南",
    "果洛州": "果洛",
    "玉树州": "玉树",
    "景洪": "西双版纳",
    "香格里拉": "迪庆",
    "中甸": "迪庆",
    "都匀": "黔南",
    "凯里": "黔东南",
    "兴义": "黔西南",
    "蒙自": "红河",
    "个旧": "红河",
    "芒市": "德宏",
    "潞西": "德宏",
    "合作": "甘南",
    "德令哈": "海西",
    "康定": "甘孜",
    "马尔康": "阿坝",
    "恩施市": "恩施",
    "延吉": "延边",
    "伊宁": "伊犁",
    "昌吉市": "昌吉",
    "阿图什": "克州",
    "东胜": "鄂尔多斯",
    "达县": "达州",
    "宜宾县": "宜宾",
    "梧州市": "梧州",
}

PROVINCE_ALIASES = {
    "京": "北京", "沪": "上海", "津": "天津", "渝": "重庆", "冀": "河北", "晋": "山西",
    "蒙": "内蒙古", "辽": "辽宁", "吉": "吉林", "黑": "黑龙江", "苏": "江苏", "浙": "浙江",
    "皖": "安徽", "闽": "福建", "赣": "江西", "鲁": "山东", "豫": "河南", "鄂": "湖北",
    "湘": "湖南", "粤": "广东", "桂": "广西", "琼": "海南", "川": "四川", "蜀": "四川",
    "黔": "贵州", "贵": "贵州", "滇": "云南", "云": "云南", "藏": "西藏", "陕": "陕西",
    "秦": "陕西", "甘": "甘肃", "陇": "甘肃", "青": "青海", "宁": "宁夏", "新": "新疆",
    "内蒙": "内蒙古",
}


def read_phone_dat(path: Path) -> tuple[str, list[tuple[int, str, int]]]:
    buf = path.read_bytes()
    version, first = struct.unpack_from("<4si", buf, 0)
    count = (len(buf) - first) // 9
    records = []
    for i in range(count):
        seg, offset, kind = struct.unpack_from("<iiB", buf, first + 9 * i)
        end = buf.find(b"\0", offset)
        records.append((seg, buf[offset:end].decode(), kind))
    return version.decode(), records


def fix_region(text: str) -> tuple[str, str, str, str]:
    province, city, zip_code, area_code = text.split("|")
    if city in ("锡林郭勒", "锡林郭勒盟"):
        # 493 segments say 锡林郭勒|152500|00479, one says 锡林郭勒盟|26000|0479; the one is
        # right (锡林浩特 is 026000, area code 0479; 15xxxx zips are 黑龙江's).
        city, zip_code, area_code = "锡林郭勒", "026000", "0479"
    zip_code = zip_code.zfill(6)
    if not area_code.startswith("0"):
        area_code = "0" + area_code
    return province, city, zip_code, area_code


def build(out: Path) -> dict[str, object]:
    import phone
    import phonenumbers
    from phonenumbers import carrier as pn_carrier

    dat = Path(phone.__file__).resolve().parent / "phone.dat"
    dat_version, records = read_phone_dat(dat)

    regions: list[tuple[str, str, str, str]] = []
    index: dict[tuple[str, str], int] = {}
    fixed: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    region_of = array("H", bytes(2 * SIZE))
    carrier_of = array("B", bytes(SIZE))
    for seg, text, kind in records:
        province, city, zip_code, area_code = fix_region(text)
        key = (province, city)
        if key not in index:
            index[key] = len(regions)
            regions.append((province, city, area_code, zip_code))
            fixed[key] = (province, city, zip_code, area_code)
        elif fixed[key] != (province, city, zip_code, area_code):
            raise SystemExit(f"{key} has two zips or area codes: fix it in fix_region()")
        region_of[seg - FIRST] = index[key] + 1
        carrier_of[seg - FIRST] = kind

    # Located segments: outside the numbering plan? a reseller typed with the wrong network?
    nonstandard = reseller_fixes = 0
    for seg, _, kind in records:
        number = phonenumbers.parse(f"+86{seg}0000")
        if kind == 6:  # 移动虚拟运营商
            network = PHONENUMBERS_CARRIERS.get(pn_carrier.name_for_number(number, "zh"))
            fixed_kind = VIRTUAL_OF_NETWORK.get(network or 0) or VIRTUAL_BLOCKS.get(str(seg)[:3])
            if fixed_kind is not None and fixed_kind != kind:
                carrier_of[seg - FIRST] = fixed_kind
                reseller_fixes += 1
        if not phonenumbers.is_valid_number(number):
            carrier_of[seg - FIRST] |= NONSTANDARD
            nonstandard += 1

    unlocated = 0
    for seg in range(FIRST, LAST + 1):
        if region_of[seg - FIRST]:
            continue
        number = phonenumbers.parse(f"+86{seg}0000")
        if not phonenumbers.is_valid_number(number):
            continue
        region_of[seg - FIRST] = UNLOCATED
        name = pn_carrier.name_for_number(number, "zh")
        carrier_of[seg - FIRST] = PHONENUMBERS_CARRIERS.get(name, 0)
        unlocated += 1

    labels = {city for _, city, _, _ in regions}
    for parent, children in CHILDREN.items():
        assert parent in labels and all(c in labels for c in children), parent
    for alias, target in CITY_ALIASES.items():
        assert target in labels, (alias, target)

    header = struct.pack("<4sIII", MAGIC, FORMAT, FIRST, SIZE)
    payload = header + region_of.tobytes() + carrier_of.tobytes()
    if sys.byteorder != "little":  # pragma: no cover
        raise SystemExit("build on a little-endian machine")
    out.mkdir(parents=True, exist_ok=True)
    (out / "segments.bin").write_bytes(payload)

    meta: dict[str, object] = {
        "format": FORMAT,
        "version": f"phone.dat {dat_version} + phonenumbers "
        f"{importlib.metadata.version('phonenumbers')}",
        "built": os.environ.get("SOURCE_DATE", dt.date.today().isoformat()),
        "sources": [
            {
                "name": "phone",
                "version": importlib.metadata.version("phone"),
                "file": f"phone.dat (version {dat_version})",
                "licence": "MIT (per its README)",
                "url": "https://pypi.org/project/phone/",
                "records": len(records),
            },
            {
                "name": "phonenumbers",
                "version": importlib.metadata.version("phonenumbers"),
                "licence": "Apache-2.0",
                "url": "https://pypi.org/project/phonenumbers/",
                "records": unlocated,
            },
        ],
        "counts": {
            "located": len(records),
            "unlocated": unlocated,
            "regions": len(regions),
            "nonstandard": nonstandard,
            "reseller_fixes": reseller_fixes,
        },
        "carriers": {str(k): v for k, v in CARRIERS.items()},
        "regions": [list(r) for r in regions],
        "children": CHILDREN,
        "city_aliases": CITY_ALIASES,
        "province_aliases": PROVINCE_ALIASES,
    }
    (out / "regions.json").write_text(
        json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args()
    meta = build(args.out)
    print(json.dumps(meta["counts"]), meta["version"])


if __name__ == "__main__":
    main()
