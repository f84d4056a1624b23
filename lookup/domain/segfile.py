"""The compiled 号段 file, ``data/segments.bin``, and where the bundled data lives.

The file holds two dense arrays indexed by ``segment - 1300000`` after a 16-byte header:
a region code per segment (``0`` no such segment, ``1..R`` a located region, ``0xFFFF``
allowed by the numbering plan but region unknown), then a carrier byte (bits 0-6 the
carrier code; bit 7 set: a located segment the numbering plan rejects, "nonstandard",
e.g. data-only/IoT ranges). ``regions.json`` beside it names the regions and carries the
alias tables, ``region_geo.json`` places them (:class:`RegionGeo`). ``scripts/build_segments.py`` builds both from the upstream sources.

Two ways to read it: :func:`read` copies the arrays into memory (two ``frombytes`` copies
and two ``translate`` passes, no parsing), for a process that plans many lookups;
:func:`peek` maps the file and decodes only the bytes a lookup reads, for a command that
plans one (``lookup plan``, ``lookup segment``).
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, overload

from lookup.domain.errors import DataError

__all__ = [
    "FIRST_SEGMENT",
    "LAST_SEGMENT",
    "UNLOCATED",
    "Columns",
    "RegionGeo",
    "data_dir",
    "data_version",
    "default_files",
    "peek",
    "read",
]

FIRST_SEGMENT: Final = 1_300_000
LAST_SEGMENT: Final = 1_999_999
UNLOCATED: Final = 0xFFFF
_MAGIC = b"LKSG"
_HEADER = struct.Struct("<4sIII")
_FORMATS = (1, 2)  # 2: bit 7 of the carrier byte marks nonstandard segments
_NONSTANDARD = 0x80
_CARRIER_BITS = bytes(b & 0x7F for b in range(256))
_NONSTANDARD_BIT = bytes(1 if b & _NONSTANDARD else 0 for b in range(256))

Columns = tuple[Sequence[int], Sequence[int], Sequence[int] | None, dict[str, Any], Path]
"""What a read gives: region codes, carrier codes, nonstandard flags (``None``: format 1,
none), the ``regions.json`` metadata and the path of the file."""


def data_dir() -> Path | None:
    """The bundled data: ``lookup/data`` in an installed package, ``data/`` in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for here in (package / "data", package.parent / "data"):
        if (here / "segments.bin").is_file():
            return here
    return None


def default_files() -> tuple[Path, Path]:
    """``segments.bin`` and ``regions.json`` of the bundled data."""
    here = data_dir()
    if here is None:
        raise DataError(
            "segment database not found: expected data/segments.bin in the checkout "
            "or the installed package; rebuild it with scripts/build_segments.py"
        )
    return here / "segments.bin", here / "regions.json"


def data_version() -> str:
    """The bundled database's version (``SegmentDB.default().version``), read without
    loading the segments (``lookup --version``)."""
    bin_path, meta_path = default_files()
    try:
        return str(json.loads(meta_path.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the segment database at {bin_path}: {exc}") from exc


def _files(path: str | Path | None) -> tuple[Path, Path]:
    if path is None:
        return default_files()
    p = Path(path)
    bin_path = p / "segments.bin" if p.is_dir() else p
    return bin_path, bin_path.with_name("regions.json")


def _layout(raw: bytes | memoryview, bin_path: Path) -> tuple[int, int, int]:
    """(format, where the arrays start, segments) from the header, checked."""
    magic, fmt, first, size = _HEADER.unpack_from(raw, 0)
    if magic != _MAGIC or fmt not in _FORMATS or first != FIRST_SEGMENT:
        raise DataError(f"{bin_path} is not a lookup segment database (format {fmt})")
    start = _HEADER.size
    if len(raw) != start + 3 * size:
        raise DataError(f"{bin_path} is truncated: rebuild it with scripts/build_segments.py")
    return fmt, start, size


@dataclass(frozen=True, slots=True)
class RegionGeo:
    """A point (longitude, latitude) per province (its capital) and per region code.

    ``points[code]`` for codes 1..R (index 0 unused); a region the source could not place
    sits at its province's capital.
    """

    provinces: dict[str, tuple[float, float]]
    points: tuple[tuple[float, float], ...]

    @classmethod
    def load(cls, path: Path, names: Sequence[tuple[str, str]]) -> RegionGeo:
        """``region_geo.json`` at ``path``, for the regions ``names`` (province, city) lists
        by code - 1."""
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            provinces = {p: (float(x), float(y)) for p, (x, y) in meta["provinces"].items()}
            cities = meta["cities"]
            points = [(0.0, 0.0)] + [
                tuple(cities.get(city) or provinces[province])
                for province, city in names
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"cannot read the region points at {path}: {exc}; rebuild them "
                            "with scripts/build_region_geo.py") from exc  # fmt: skip
        return cls(provinces, tuple((float(x), float(y)) for x, y in points))


def read(path: str | Path | None = None) -> Columns:
    """The file (a ``data/`` folder or its ``segments.bin``; ``None``: the bundled one),
    copied into arrays."""
    bin_path, meta_path = _files(path)
    try:
        raw = bin_path.read_bytes()
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if len(raw) < _HEADER.size:
            raise ValueError("shorter than its header")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the segment database at {bin_path}: {exc}") from exc
    fmt, start, size = _layout(raw, bin_path)
    codes = array("H")
    codes.frombytes(memoryview(raw)[start : start + 2 * size])
    carrier_bytes = raw[start + 2 * size :]
    carriers = array("B")
    carriers.frombytes(carrier_bytes.translate(_CARRIER_BITS))
    nonstandard = carrier_bytes.translate(_NONSTANDARD_BIT) if fmt >= 2 else None
    if sys.byteorder != "little":  # pragma: no cover - the file is little-endian
        codes.byteswap()
    return codes, carriers, nonstandard, meta, bin_path


class _Decoded(Sequence[int]):
    """The carrier bytes of a mapped file through a 256-byte table, decoded as read."""

    __slots__ = ("_raw", "_table")

    def __init__(self, raw: memoryview, table: bytes) -> None:
        self._raw = raw
        self._table = table

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> bytes: ...
    def __getitem__(self, index: int | slice) -> int | bytes:
        if isinstance(index, slice):
            return self._raw[index].tobytes().translate(self._table)
        return self._table[self._raw[index]]


def peek(path: str | Path | None = None) -> Columns:
    """The file mapped, not copied: only the pages a lookup reads are read, and carrier
    bytes are decoded as they are read. For one lookup; a process that plans many uses
    :func:`read` (decoded once, indexed at C speed)."""
    if sys.byteorder != "little":  # pragma: no cover - the codes are little-endian
        return read(path)
    import mmap

    bin_path, meta_path = _files(path)
    try:
        with bin_path.open("rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if len(mapped) < _HEADER.size:
            raise ValueError("shorter than its header")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the segment database at {bin_path}: {exc}") from exc
    raw = memoryview(mapped)
    fmt, start, size = _layout(raw, bin_path)
    codes = raw[start : start + 2 * size].cast("H")
    carrier_bytes = raw[start + 2 * size :]
    nonstandard = _Decoded(carrier_bytes, _NONSTANDARD_BIT) if fmt >= 2 else None
    return codes, _Decoded(carrier_bytes, _CARRIER_BITS), nonstandard, meta, bin_path
