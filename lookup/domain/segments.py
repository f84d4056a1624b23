"""The 号段 database: which region and carrier each 7-digit segment belongs to, and the
region hints (city, province, area code, zip) resolved against it.

The compiled file and where the bundled data lives are :mod:`lookup.domain.segfile`;
the rules for place names as people write them, :mod:`lookup.domain.placenames`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from lookup.domain import segfile
from lookup.domain.errors import UnknownRegionError
from lookup.domain.placenames import hint_digits, normalise, strip_unit
from lookup.domain.privacy import quote
from lookup.domain.segfile import (
    FIRST_SEGMENT,
    LAST_SEGMENT,
    UNLOCATED,
    RegionGeo,
    data_dir,
    data_version,
)

__all__ = [
    "FIRST_SEGMENT",
    "LAST_SEGMENT",
    "UNLOCATED",
    "Region",
    "RegionGeo",
    "SegmentDB",
    "SegmentInfo",
    "data_dir",
    "data_version",
]

_AREA_CODE = re.compile(r"^0?(\d{2,3})$")
_ZIP = re.compile(r"^[0-9]{6}$")
_FULL_WIDTH_DIGITS: Final = str.maketrans("０１２３４５６７８９", "0123456789")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What the database knows about one 7-digit segment (号段).

    ``located`` is false for a segment the numbering plan allows but whose region the
    sources do not know; its region fields are then ``None``. ``standard`` is false for a
    located segment the numbering plan rejects (data-only/IoT ranges, stray rows in
    unassigned ranges): not a candidate unless asked for (``include_nonstandard``).
    """

    segment: str
    province: str | None = None
    city: str | None = None
    carrier: str | None = None
    area_code: str | None = None
    zip: str | None = None
    located: bool = True
    standard: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Region:
    """Where a hint points: one province and, for a city-level hint, its data labels.

    ``cities`` holds the database labels the hint covers: a prefecture includes the
    county-level seats the source lists apart (呼伦贝尔 covers 海拉尔).
    """

    province: str
    cities: tuple[str, ...] = ()
    label: str = ""

    def __str__(self) -> str:
        return self.label or self.province

    def as_dict(self) -> dict[str, Any]:
        return {"province": self.province, "cities": list(self.cities), "label": str(self)}


class SegmentDB:
    """The compiled segment database. Load once (``SegmentDB.default()``) and share it.

    >>> db = SegmentDB.default()
    >>> db.segment("1380571").city
    '杭州'
    """

    __slots__ = (
        "_alias",
        "_area_codes",
        "_by_city",
        "_carrier",
        "_carrier_names",
        "_children",
        "_codes",
        "_geo",
        "_nonstandard",
        "_province_alias",
        "_provinces",
        "_regions",
        "_zip_stems",
        "counts",
        "path",
        "sources",
        "version",
    )

    def __init__(
        self,
        codes: Sequence[int],
        carriers: Sequence[int],
        meta: Mapping[str, Any],
        path: Path,
        nonstandard: Sequence[int] | None = None,
    ):
        self._codes = codes
        self._carrier = carriers
        self._nonstandard = nonstandard if nonstandard is not None else bytes(len(codes))
        self.path = path
        self.version: str = str(meta["version"])
        self.sources: list[dict[str, Any]] = list(meta["sources"])
        self.counts: dict[str, int] = dict(meta["counts"])
        self._carrier_names: dict[int, str] = {int(k): v for k, v in meta["carriers"].items()}
        # region index i (code i + 1) -> (province, city, area_code, zip)
        self._regions: list[tuple[str, str, str, str]] = [tuple(r) for r in meta["regions"]]
        self._provinces: list[str] = sorted({r[0] for r in self._regions})
        self._by_city: dict[str, int] = {r[1]: i for i, r in enumerate(self._regions)}
        self._children: dict[str, list[str]] = dict(meta["children"])
        self._alias: dict[str, str] = dict(meta["city_aliases"])
        self._province_alias: dict[str, str] = dict(meta["province_aliases"])
        self._geo: RegionGeo | None = None
        self._area_codes: dict[str, list[int]] = {}
        self._zip_stems: dict[str, list[int]] = {}
        for i, (_, _, area_code, zip_code) in enumerate(self._regions):
            self._area_codes.setdefault(area_code, []).append(i)
            stem = zip_code.rstrip("0")
            stem = stem if len(stem) >= 2 else zip_code[:2]
            self._zip_stems.setdefault(stem, []).append(i)

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path | None = None) -> SegmentDB:
        """Load the compiled database from ``path`` (a ``data/`` folder or its ``segments.bin``).

        Without a path: the ``data/`` of a checkout, else the copy installed with the package.
        """
        codes, carriers, nonstandard, meta, bin_path = segfile.read(path)
        return cls(codes, carriers, meta, bin_path, nonstandard)

    @classmethod
    def peek(cls, path: str | Path | None = None) -> SegmentDB:
        """The database for one lookup (``lookup plan``, ``lookup segment``): the file is
        mapped and only what the lookup reads is read. It answers as :meth:`load`'s does;
        a process that plans many lookups shares :meth:`default` (decoded once, faster)."""
        codes, carriers, nonstandard, meta, bin_path = segfile.peek(path)
        return cls(codes, carriers, meta, bin_path, nonstandard)

    @staticmethod
    @functools.cache
    def default() -> SegmentDB:
        """The process-wide database, loaded on first use."""
        return SegmentDB.load()

    # -- raw access for the candidate planner ------------------------------------------------

    @property
    def codes(self) -> Sequence[int]:
        """Region code per segment offset: 0 none, 1..R located, ``UNLOCATED``."""
        return self._codes

    @property
    def carrier_codes(self) -> Sequence[int]:
        """Carrier code (1-8, 0 unknown) per segment offset."""
        return self._carrier

    @property
    def nonstandard_flags(self) -> Sequence[int]:
        """Per segment offset: 1 when the numbering plan rejects the segment, else 0."""
        return self._nonstandard

    def region_codes(self, cities: Iterable[str]) -> set[int]:
        """Region codes (1..R) of database city labels."""
        return {self._by_city[c] + 1 for c in cities}

    def province_codes(self, province: str) -> list[int]:
        """Region codes (1..R) of every region of ``province``."""
        return [i + 1 for i, r in enumerate(self._regions) if r[0] == province]

    def region_names(self) -> list[tuple[str, str]]:
        """``(province, city label)`` of every region, indexed by region code - 1."""
        return [(r[0], r[1]) for r in self._regions]

    def geo(self) -> RegionGeo:
        """Where the regions are (``region_geo.json`` beside the database), loaded on first use."""
        if self._geo is None:
            self._geo = RegionGeo.load(self.path.with_name("region_geo.json"), self.region_names())
        return self._geo

    def carrier_name(self, code: int) -> str | None:
        return self._carrier_names.get(code)

    @property
    def carrier_names(self) -> dict[int, str]:
        return dict(self._carrier_names)

    # -- queries ---------------------------------------------------------------------------------

    def segment(self, number: str | int) -> SegmentInfo | None:
        """What the database knows of a segment: its first 7 digits (7 to 11 digits accepted).

        ``None`` when the numbering plan has no such segment. A segment the plan allows but
        whose region is unknown comes back with ``located=False`` and no region fields.
        """
        digits = str(number).strip().translate(_FULL_WIDTH_DIGITS)
        if not (digits.isascii() and digits.isdigit()) or not 7 <= len(digits) <= 11:
            raise UnknownRegionError(
                f"a segment is the first 7 digits of a mobile number, got {quote(digits)}"
            )
        seg = int(digits[:7])
        if not FIRST_SEGMENT <= seg <= LAST_SEGMENT:
            return None
        code = self._codes[seg - FIRST_SEGMENT]
        if code == 0:
            return None
        carrier = self._carrier_names.get(self._carrier[seg - FIRST_SEGMENT])
        if code == UNLOCATED:
            return SegmentInfo(segment=str(seg), carrier=carrier, located=False)
        province, city, area_code, zip_code = self._regions[code - 1]
        return SegmentInfo(
            segment=str(seg),
            province=province,
            city=city,
            carrier=carrier,
            area_code=area_code,
            zip=zip_code,
            standard=not self._nonstandard[seg - FIRST_SEGMENT],
        )

    @property
    def provinces(self) -> list[str]:
        return list(self._provinces)

    @property
    def cities(self) -> list[str]:
        """Every city label of the database."""
        return [r[1] for r in self._regions]

    def _suggest(self, text: str, pool: Iterable[str]) -> tuple[str, ...]:
        import difflib  # for an unknown name only

        pool = list(pool)
        near = [n for n in pool if text and (text in n or n in text)]
        near += difflib.get_close_matches(text, pool, n=5, cutoff=0.4)
        return tuple(dict.fromkeys(near))[:6]

    def _resolve_city(self, name: str) -> tuple[str, list[str]]:
        """City hint -> (province, labels). Raises UnknownRegionError."""
        text = normalise(name)
        if not text:
            raise UnknownRegionError("empty city name")
        if text.endswith(("省", "自治区", "特别行政区")) and self._province_name(text):
            raise UnknownRegionError(
                f"{quote(name)} is a province, not a city: pass it as the province hint "
                "(--province) instead"
            )
        for candidate in (text, strip_unit(text)):
            label = self._alias.get(candidate, candidate)
            if label in self._by_city:
                province = self._regions[self._by_city[label]][0]
                return province, [label, *self._children.get(label, [])]
        stripped = strip_unit(text)
        if self._province_name(text) is not None and stripped not in self._by_city:
            raise UnknownRegionError(
                f"{quote(name)} is a province, not a city: pass it as the province hint "
                "(--province) instead"
            )
        suggestions = self._suggest(stripped, [*self._by_city, *self._alias])
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        raise UnknownRegionError(
            f"unknown city {quote(name)}: the database knows prefecture-level cities{hint}",
            suggestions=suggestions,
        )

    def _province_name(self, text: str) -> str | None:
        for candidate in (text, strip_unit(text)):
            if candidate in self._provinces:
                return candidate
            if candidate in self._province_alias:
                return self._province_alias[candidate]
        return None

    def _resolve_province(self, name: str) -> str:
        text = normalise(name)
        found = self._province_name(text)
        if found is not None:
            return found
        suggestions = self._suggest(strip_unit(text), self._provinces)
        hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
        raise UnknownRegionError(f"unknown province {quote(name)}{hint}", suggestions=suggestions)

    def _resolve_area_code(self, code: str) -> list[int]:
        text = hint_digits(code, "area code", "an area code is its digits alone, like 0571 or 010")
        m = _AREA_CODE.match(text)
        found = self._area_codes.get("0" + m.group(1), []) if m else []
        if not found:
            near = tuple(c for c in self._area_codes if m and c.startswith("0" + m.group(1)[:2]))
            hint = f"; codes near it: {', '.join(sorted(near)[:6])}" if near else ""
            raise UnknownRegionError(
                f"unknown area code {quote(code)}: expected a Chinese area code like 0571 or 010{hint}",
                suggestions=tuple(sorted(near)[:6]),
            )
        return found

    def _resolve_zip(self, zip_code: str) -> list[int]:
        text = hint_digits(zip_code, "zip", "a zip code is 6 digits (310000, 071000)")
        if not _ZIP.match(text):
            raise UnknownRegionError(
                f"a zip code is 6 digits (310000, 071000), got {quote(zip_code)}"
            )
        # The database keeps one zip per city (310000 杭州). A district zip (311200 萧山)
        # belongs to the city whose zip stem (trailing zeros dropped, at least 2 digits) is
        # its longest prefix: 313100 is 湖州 (313000), not 杭州 (310000).
        for length in range(6, 1, -1):
            found = self._zip_stems.get(text[:length])
            if found:
                return found
        raise UnknownRegionError(f"unknown zip {quote(zip_code)}: no city's zip shares its first digits")

    def resolve(
        self,
        *,
        city: str | None = None,
        province: str | None = None,
        area_code: str | None = None,
        zip: str | None = None,
    ) -> Region | None:
        """Turn region hints into a :class:`Region`; ``None`` when no hint is given.

        Several hints must agree (they are intersected). Unknown or contradictory hints raise
        :class:`~lookup.domain.errors.UnknownRegionError` naming the closest known names.
        """
        if not any((city, province, area_code, zip)):
            return None
        labels: set[str] | None = None
        provinces: set[str] = set()
        parts: list[str] = []
        if city:
            prov, found = self._resolve_city(city)
            labels = set(found)
            provinces.add(prov)
            parts.append(found[0])
        for kind, value, resolver in (
            ("area code", area_code, self._resolve_area_code),
            ("zip", zip, self._resolve_zip),
        ):
            if not value:
                continue
            ids = resolver(value)
            found_labels = set()
            for i in ids:
                label = self._regions[i][1]
                found_labels.add(label)
                found_labels.update(self._children.get(label, []))
            # A city hint narrows an area code shared by several cities, and vice versa.
            if labels is not None:
                both = labels & found_labels
                if not both:
                    raise UnknownRegionError(
                        f"the hints disagree: {kind} {quote(value)} is "
                        f"{'/'.join(sorted(self._regions[i][1] for i in ids))}, not {parts[0]}"
                    )
                labels = both
            else:
                labels = found_labels
            provinces.update(self._regions[i][0] for i in ids)
            parts.append(f"{kind} {value}")
        if province:
            prov = self._resolve_province(province)
            if provinces and prov not in provinces:
                raise UnknownRegionError(
                    f"the hints disagree: {', '.join(parts)} is in {'/'.join(sorted(provinces))}, "
                    f"not {prov}"
                )
            provinces = {prov}
        if labels is not None:
            # Labels decide; a province hint was checked against them above.
            provinces = {self._regions[self._by_city[c]][0] for c in labels}
        if len(provinces) != 1:
            raise UnknownRegionError(
                f"the hints span several provinces ({', '.join(sorted(provinces))}): "
                "add a province or city hint",
                suggestions=tuple(sorted(provinces)),
            )
        (prov,) = provinces
        ordered = tuple(c for c in self.cities if labels and c in labels)
        label = "/".join(ordered) if ordered else prov
        return Region(province=prov, cities=ordered, label=f"{prov} {label}" if ordered else prov)
