"""Place names and digit hints as people write them: the unit suffixes and ethnic names a
region hint may carry (``恩施土家族苗族自治州`` is ``恩施``), and area codes and zips in ASCII
or full-width digits. :mod:`lookup.domain.segments` resolves hints with them;
``scripts/build_region_geo.py`` names places by the same rules.
"""

from __future__ import annotations

import unicodedata

from lookup.domain.errors import UnknownRegionError
from lookup.domain.privacy import quote

__all__ = ["hint_digits", "normalise", "strip_unit"]

# Suffixes that name the kind of unit, longest first. A bare 州 is never stripped
# (杭州, 广州): only 自治州 is.
_SUFFIXES = (
    "特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "自治州", "自治县",
    "地区", "林区", "新区", "省", "市", "盟",
)  # fmt: skip
# Ethnic names as they appear in autonomous prefecture names (some without 族).
_ETHNIC = (
    "土家族", "苗族", "藏族", "羌族", "彝族", "回族", "维吾尔族", "壮族", "蒙古族", "蒙古",
    "哈萨克族", "哈萨克", "柯尔克孜族", "柯尔克孜", "朝鲜族", "傣族", "景颇族", "傈僳族",
    "白族", "布依族", "侗族", "哈尼族", "纳西族", "瑶族", "黎族", "畲族", "土族",
    "撒拉族", "怒族", "独龙族", "普米族", "仫佬族", "毛南族", "仡佬族", "水族", "满族",
)  # fmt: skip


def normalise(name: str) -> str:
    """NFKC, trimmed, without spaces: ``杭州 市`` -> ``杭州市``."""
    text = unicodedata.normalize("NFKC", name).strip().replace(" ", "")
    return text


def hint_digits(value: str, what: str, form: str) -> str:
    """A digit hint (area code, zip) by the masks' rule: ASCII or full-width digits only
    (``³`` or ``①`` are refused, not folded by NFKC), no separators between them."""
    text = value.strip()
    for i, c in enumerate(text):
        if "0" <= c <= "9" or "\uff10" <= c <= "\uff19":
            continue
        if c.isnumeric():
            why = "write digits as 0-9 (ASCII or full-width ０-９)"
        else:
            why = f"{form}, without separators"
        raise UnknownRegionError(f"the {what} {quote(value)} has {c!r} at position {i + 1}: {why}")
    return unicodedata.normalize("NFKC", text)


def strip_unit(name: str) -> str:
    """``恩施土家族苗族自治州`` -> ``恩施``, ``锡林郭勒盟`` -> ``锡林郭勒``, ``杭州市`` -> ``杭州``."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix) + 1:
            name = name[: -len(suffix)]
            break
    changed = True
    while changed:
        changed = False
        for ethnic in _ETHNIC:
            if name.endswith(ethnic) and len(name) > len(ethnic) + 1:
                name = name[: -len(ethnic)]
                changed = True
                break
    return name
