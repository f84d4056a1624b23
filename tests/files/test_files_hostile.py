"""Hostile files: a journal forged with its header's key is checked against the input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lookup.engine.batch import RowResult
from lookup.files.run import Journal, journal_header
from lookup.runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
CLOSED_API = "http://127.0.0.1:9/orders?phone={phone}"  # nothing listens: no lookup may run


def batch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, "-m", "lookup", "batch", *map(str, args)], cwd=ROOT, env=env,
        capture_output=True, text=True, encoding="utf-8", timeout=120, check=False,
    )  # fmt: skip


def small_csv(tmp_path: Path) -> Path:
    src = tmp_path / "in.csv"
    src.write_text("id,mask,city\na,138****2046,杭州\nb,133****7310,\n", encoding="utf-8")
    return src


def _forge(path: Path, src: Path, api: str, *records: RowResult) -> None:
    """Journal lines written with the header's own key: their checksums are right."""
    with Journal.open(path, journal_header(src, load_settings(api_url=api), "first")) as j:
        for r in records:
            j.append(r)


def _row(row: int, **kw: Any) -> RowResult:
    base: dict[str, Any] = {"id": "ab"[row - 1] if row in (1, 2) else str(row), "row": row,
                            "mask": "138****2046" if row == 1 else "133****7310",
                            "status": "not_found"}  # fmt: skip
    return RowResult(**(base | kw))


FORGED = {
    "row 0": _row(0),
    "row past the input": _row(3, id="c", mask="138****2046"),
    "row 99": _row(99, id="x"),
    "matched, phone off its mask": _row(1, status="matched", phone="13900001111"),
    "matched, no phone": _row(1, status="matched"),
    "another row's mask": _row(1, mask="133****7310"),
    "another row's id": _row(2, id="a"),
    "hits off the mask": _row(2, status="matched", phone="13300007310",
                              hits=["13300007310", "13800002046"]),
}  # fmt: skip


@pytest.mark.parametrize("record", list(FORGED.values()), ids=list(FORGED))
def test_a_forged_journal_record_is_refused_on_resume(tmp_path: Path, record: RowResult) -> None:
    src = small_csv(tmp_path)
    out = tmp_path / "out.jsonl"
    _forge(Path(f"{out}.journal"), src, CLOSED_API, record)
    r = batch(src, "--out", out, "--api", CLOSED_API, "--resume")
    assert r.returncode == 2, r.stderr
    assert "cannot resume" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not out.exists()


def test_a_true_journal_record_is_kept(tmp_path: Path) -> None:
    src = small_csv(tmp_path)
    path = tmp_path / "out.journal"
    _forge(path, src, CLOSED_API, _row(1, status="matched", phone="13857152046"), _row(2))
    with Journal.open(path, journal_header(src, load_settings(api_url=CLOSED_API), "first")) as j:
        from lookup.files.read import detect_format
        from lookup.files.run import read_rows

        j.check_rows(read_rows(src, detect_format(src)), 2)
        assert sorted(j.records) == [1, 2]
