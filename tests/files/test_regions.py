"""The learned region counts: a 0600 file of counts per region, never a number."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from pathlib import Path

import pytest

from lookup.cli.main import main
from lookup.domain.models import LookupResult
from lookup.domain.segments import SegmentDB
from lookup.domain.tiers import plan
from lookup.files.regions import RegionCounts

DB = SegmentDB.default()
NUMBER = re.compile(r"\d{4,}")


def matched(phone: str) -> LookupResult:
    return LookupResult(status="matched", mask=phone[:3] + "****" + phone[7:], phone=phone,
                        region=DB.segment(phone), tier="national")  # fmt: skip


def test_record_counts_matched_lookups_only_and_stores_no_number(tmp_path: Path) -> None:
    store = RegionCounts(tmp_path / "state" / "regions.json")
    assert store.counts() == {}
    assert store.record(matched("13899802046"))  # 乌鲁木齐
    assert store.record(matched("13899802047"))
    assert not store.record(LookupResult(status="not_found", mask="138****2046"))
    assert store.counts() == {"乌鲁木齐": 2}
    text = store.path.read_text(encoding="utf-8")
    assert not NUMBER.search(text), text  # no phone number, no mask, no segment
    assert "138" not in text and "*" not in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_counts_survive_a_restart_and_deleting_the_file_resets_them(tmp_path: Path) -> None:
    path = tmp_path / "regions.json"
    RegionCounts(path).add({"杭州": 3})
    assert RegionCounts(path).counts() == {"杭州": 3}  # a new process, the same file
    path.unlink()
    assert RegionCounts(path).counts() == {}


def test_a_damaged_or_foreign_file_reads_as_no_counts(tmp_path: Path) -> None:
    path = tmp_path / "regions.json"
    path.write_text("{not json", encoding="utf-8")
    assert RegionCounts(path).counts() == {}
    path.write_text(json.dumps({"counts": {"13899802046": 5, "杭州": 2, "x": -1, "y": True}}),
                    encoding="utf-8")  # fmt: skip
    assert RegionCounts(path).counts() == {"杭州": 2}


def test_a_symlink_is_never_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"counts": {"杭州": 9}}), encoding="utf-8")
    link = tmp_path / "regions.json"
    link.symlink_to(target)
    assert RegionCounts(link).counts() == {}
    RegionCounts(link).add({"杭州": 1})  # the link is replaced by a file of our own
    assert not link.is_symlink() and RegionCounts(link).counts() == {"杭州": 1}
    assert json.loads(target.read_text(encoding="utf-8"))["counts"] == {"杭州": 9}


def test_the_order_changes_only_once_the_threshold_is_reached(tmp_path: Path) -> None:
    store = RegionCounts(tmp_path / "regions.json", threshold=5)
    nearer = plan("138****2046", DB, city="杭州").tier("national").segments
    for n in range(5):
        assert plan("138****2046", DB, city="杭州", order=store.order()).tier(
            "national").segments == nearer, n  # fmt: skip
        store.record(matched("13899802046"))
    learned = plan("138****2046", DB, city="杭州", order=store.order()).tier("national")
    assert learned.segments != nearer
    assert DB.segment(learned.segments[0]).city == "乌鲁木齐"  # type: ignore[union-attr]


def call(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_plan_shows_the_order_and_stats_shows_the_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)
    path = tmp_path / "regions.json"
    monkeypatch.setenv("LOOKUP_REGIONS_FILE", str(path))
    code, out, _ = call("plan", "138****2046", "--city", "杭州")
    assert code == 0
    assert "national checks first: 上海, 江苏, 安徽, 江西, 福建" in out
    RegionCounts(path).add({"乌鲁木齐": 60})
    code, out, _ = call("plan", "138****2046", "--city", "杭州")
    assert "national checks first: 上海" in out  # learning is off: the file is not used
    code, out, _ = call("plan", "138****2046", "--city", "杭州", "--learn-regions", "--json")
    assert json.loads(out)["first_regions"]["national"][0] == "新疆"
    code, out, _ = call("stats", "regions", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["counts"] == {"乌鲁木齐": 60} and data["hits"] == 60 and not data["learning"]
    code, out, _ = call("stats", "regions")
    assert "乌鲁木齐" in out and "60" in out


def test_find_with_learn_regions_counts_the_hit_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    env.update(PYTHONIOENCODING="utf-8", LOOKUP_REGIONS_FILE=str(tmp_path / "regions.json"))
    root = Path(__file__).resolve().parents[2]
    for extra in ([], ["--learn-regions"]):
        r = subprocess.run([sys.executable, "-m", "lookup", "find", "138****2046", "--city",
                            "杭州", "--api", "demo", "--json", *extra], cwd=root, env=env,
                           capture_output=True, text=True, encoding="utf-8", timeout=90,
                           check=False)  # fmt: skip
        assert r.returncode == 0, r.stderr
    assert RegionCounts(tmp_path / "regions.json").counts() == {"杭州": 1}
