"""Build ``data/region_geo.json``: a point (longitude, latitude) for every region of the
segment database, from which the planner orders a tier nearer regions first.

Source: the ``adcodes.csv`` table of the PyPI package ``cpca`` (MIT): every Chinese
administrative unit with its code, name and centre (a province's centre is its capital).
A database label is matched to the unit of the same name (unit suffixes and ethnic names
stripped, the alias table of ``regions.json`` applied) inside its province; a label that
matches nothing takes its province's capital, and the build says which.

    pip download cpca==0.5.5 --no-deps -d /tmp/cpca && unzip -o /tmp/cpca/*.whl -d /tmp/cpca
    python scripts/build_region_geo.py /tmp/cpca/cpca/resources/adcodes.csv
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from lookup.domain.placenames import strip_unit  # build-time helper, same rules
from lookup.domain.segfile import data_dir

CPCA_VERSION = "0.5.5"


def _spellings(name: str) -> set[str]:
    """``万州区`` -> {万州区, 万州}: county-level units keep their 区/县/市 in cpca."""
    stripped = strip_unit(name)
    out = {name, stripped}
    if len(stripped) > 2 and stripped[-1] in "区县市":
        out.add(stripped[:-1])
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    here = data_dir()
    assert here is not None, "no data/ folder"
    meta = json.loads((here / "regions.json").read_text(encoding="utf-8"))
    units: list[tuple[str, str, float, float]] = []  # (adcode, name, lon, lat)
    with Path(argv[0]).open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not (row["longitude"] and row["latitude"]):
                continue
            units.append((row["adcode"], row["name"], float(row["longitude"]),
                          float(row["latitude"])))  # fmt: skip
    provinces: dict[str, tuple[str, list[float]]] = {}  # short name -> (2-digit prefix, point)
    for code, name, lon, lat in units:
        if code[2:] == "0" * (len(code) - 2):
            provinces[strip_unit(name)] = (code[:2], [round(lon, 3), round(lat, 3)])
    wanted = sorted({r[0] for r in meta["regions"]})
    missing = [p for p in wanted if p not in provinces]
    assert not missing, f"provinces without a point: {missing}"
    names_of: dict[str, list[str]] = {}
    for alias, label in meta["city_aliases"].items():
        names_of.setdefault(label, []).append(alias)
    cities: dict[str, list[float]] = {}
    fallback: list[str] = []
    for province, label, _, _ in meta["regions"]:
        prefix = provinces[province][0]
        names = {label, *names_of.get(label, [])}
        found = [(code, lon, lat) for code, name, lon, lat in units
                 if code.startswith(prefix) and code[2:] != "0" * (len(code) - 2)
                 and names & _spellings(name)]  # fmt: skip
        if found:
            # a prefecture (xxxx00...) before a county of the same name
            found.sort(key=lambda f: (f[0][4:6] != "00", f[0]))
            cities[label] = [round(found[0][1], 3), round(found[0][2], 3)]
        else:
            cities[label] = provinces[province][1]
            fallback.append(f"{province} {label}")
    out = {
        "source": {"name": "cpca", "version": CPCA_VERSION, "file": "resources/adcodes.csv",
                   "licence": "MIT", "url": "https://pypi.org/project/cpca/"},
        "provinces": {p: provinces[p][1] for p in wanted},
        "cities": dict(sorted(cities.items())),
        "at_province_capital": sorted(fallback),
    }
    text = json.dumps(out, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    (here / "region_geo.json").write_text(text + "\n", encoding="utf-8")
    print(f"{len(cities)} regions, {len(fallback)} at their province's capital: "
          f"{', '.join(fallback)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
