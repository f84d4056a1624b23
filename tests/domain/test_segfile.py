"""The compiled segment file: read (copied, for the engine) and peek (mapped, for one
lookup) give the same database."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookup.domain.errors import DataError
from lookup.domain.segfile import FIRST_SEGMENT, LAST_SEGMENT, data_dir, data_version
from lookup.domain.segments import SegmentDB
from lookup.domain.tiers import plan

DATA = data_dir()
assert DATA is not None


@pytest.fixture(scope="module")
def loaded() -> SegmentDB:
    return SegmentDB.load()


@pytest.fixture(scope="module")
def peeked() -> SegmentDB:
    return SegmentDB.peek()


def test_peek_holds_what_load_holds(loaded: SegmentDB, peeked: SegmentDB) -> None:
    n = LAST_SEGMENT - FIRST_SEGMENT + 1
    assert len(peeked.codes) == len(loaded.codes) == n
    assert list(peeked.codes) == list(loaded.codes)
    assert peeked.carrier_codes[0:n] == bytes(loaded.carrier_codes)
    assert peeked.nonstandard_flags[0:n] == bytes(loaded.nonstandard_flags)
    assert (peeked.version, peeked.counts, peeked.path) == (loaded.version, loaded.counts,
                                                            loaded.path)  # fmt: skip


def test_peek_answers_every_segment_as_load(loaded: SegmentDB, peeked: SegmentDB) -> None:
    for seg in range(FIRST_SEGMENT, LAST_SEGMENT + 1, 37):
        assert peeked.segment(seg) == loaded.segment(seg), seg
    for i in (0, 1, -1, -2, 80_571):
        assert peeked.carrier_codes[i] == loaded.carrier_codes[i]
        assert peeked.nonstandard_flags[i] == loaded.nonstandard_flags[i]


@pytest.mark.parametrize(
    ("mask", "hints"),
    [
        ("138****2046", {}),
        ("138****2046", {"city": "杭州"}),
        ("1**05712046", {"province": "浙江", "carrier": "移动"}),
        ("14*****2046", {"carrier": "联通"}),
    ],
)
def test_a_plan_from_peek_is_the_plan_from_load(
    loaded: SegmentDB, peeked: SegmentDB, mask: str, hints: dict[str, str]
) -> None:
    a = plan(mask, loaded, max_candidates=10**7, include_nonstandard=True, **hints)  # type: ignore[arg-type]
    b = plan(mask, peeked, max_candidates=10**7, include_nonstandard=True, **hints)  # type: ignore[arg-type]
    assert [(t.name, t.segments) for t in a.tiers] == [(t.name, t.segments) for t in b.tiers]
    assert (a.excluded, a.region) == (b.excluded, b.region)


def test_the_data_version_is_read_without_loading(loaded: SegmentDB) -> None:
    assert data_version() == loaded.version


def _copy_meta(folder: Path) -> None:
    assert DATA is not None
    (folder / "regions.json").write_text((DATA / "regions.json").read_text("utf-8"), "utf-8")


@pytest.mark.parametrize("how", [SegmentDB.load, SegmentDB.peek], ids=["load", "peek"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"", "cannot read"),
        (b"LKSG", "cannot read"),
        (b"NOPE" + bytes(100), "not a lookup segment database"),
        ("truncated", "truncated"),
    ],
    ids=["missing", "empty", "short header", "wrong", "truncated"],
)
def test_a_broken_file_is_a_data_error(
    tmp_path: Path, how: object, content: bytes | str | None, message: str
) -> None:
    assert DATA is not None
    _copy_meta(tmp_path)
    if content == "truncated":
        content = (DATA / "segments.bin").read_bytes()[:100_000]
    if isinstance(content, bytes):
        (tmp_path / "segments.bin").write_bytes(content)
    with pytest.raises(DataError, match=message):
        how(tmp_path)  # type: ignore[operator]
