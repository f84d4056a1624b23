"""Batch runs: ``run_batch`` with the fake API, and ``lookup batch`` end to end.

The end-to-end tests run ``python -m lookup batch`` as a subprocess against the bundled
mock order API, served in-process from a background thread (so a test can switch its
faults between runs without changing its URL, which the journal is bound to).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.batches import (
    BY_NAME,
    CASES,
    ELEVEN_DIGITS,
    QUICK,
    ROOT,
    ThreadedMock,
    _env,
    batch_argv,
    case_rows,
    journal_lines,
    kill_once_journaled,
    mask_of,
    order_cases,
    read_jsonl,
    run_batch_cli,
    without_timing,
    write_csv,
)

from lookup.cli.terminal import BatchProgress
from lookup.domain.errors import ConfigError, FatalApiError
from lookup.domain.models import Limits
from lookup.engine.batch import BatchRow, RowResult, run_batch
from lookup.engine.checker import Checker
from lookup.files.run import Journal, detect_format, journal_header, read_rows
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import load_settings


def assert_expected(record: dict[str, Any], case_name: str) -> None:
    case = BY_NAME[case_name]
    assert record["status"] == case["expected_status"], record
    assert record["phone"] == case["expected_phone"]
    assert record["tier"] == case["expected_tier"]


# -- end to end: formats, invalid rows, progress -------------------------------------------------


def test_csv_with_bom_to_jsonl_with_invalid_rows(mock: ThreadedMock, tmp_path: Path) -> None:
    rows = [{"id": c["name"], "mask": c["mask"], **c["hints"]} for c in CASES]
    rows += [
        {"id": "bad mask", "mask": "12345"},
        {"id": "unknown city", "mask": "138****2046", "city": "火星"},
        {"id": "too many", "mask": "138*****046"},
        {"id": "no mask", "mask": ""},
    ]
    src = write_csv(tmp_path / "in.csv", rows, bom=True)
    assert src.read_bytes().startswith(b"\xef\xbb\xbf")
    out = tmp_path / "out.jsonl"
    r = run_batch_cli(mock, src, "--out", out, deadline=30)  # every row answers
    assert r.returncode == 0, r.stderr
    records = read_jsonl(out)
    assert [x["row"] for x in records] == list(range(1, len(rows) + 1))
    assert [x["id"] for x in records] == [row["id"] for row in rows]
    for record, case in zip(records, CASES, strict=False):
        assert_expected(record, case["name"])
        assert record["mask"] == case["mask"]
    matched = records[0]
    assert matched["region"] == {"province": "浙江", "city": "杭州", "carrier": "移动",
                                 "area_code": "0571", "zip": "310000"}  # fmt: skip
    assert matched["checks_sent"] > 0 and matched["elapsed_ms"] > 0
    assert list(matched) == ["id", "row", "mask", "status", "phone", "tier", "region",
                             "numbers_checked", "requests", "elapsed_ms", "reason",
                             "checks_sent"]  # fmt: skip  (checks_sent: the deprecated alias)
    bad = {x["id"]: x for x in records[len(CASES) :]}
    assert all(x["status"] == "invalid" and x["checks_sent"] == 0 for x in bad.values())
    assert "11" in bad["bad mask"]["reason"]
    assert "火星" in bad["unknown city"]["reason"]
    assert "cap" in bad["too many"]["reason"]
    assert bad["no mask"]["reason"] == "no mask"
    # Summary on stdout; progress on stderr (plain lines: not a terminal); no number logged.
    assert f"{len(rows)} rows -> {out}" in r.stdout
    assert "matched 5, not_found 1, invalid 4, inconclusive 0, api_error 0" in r.stdout
    assert "rows (100%)" in r.stderr
    assert not ELEVEN_DIGITS.search(r.stderr), r.stderr
    assert (tmp_path / "out.jsonl.journal").exists()


def test_jsonl_input_detected_by_content_to_csv_with_bom(
    mock: ThreadedMock, tmp_path: Path
) -> None:
    src = tmp_path / "masks.txt"  # no telling extension: detected by content
    lines = [
        json.dumps({"mask": BY_NAME["city hit"]["mask"], "city": "杭州", "id": 7}),
        "",
        json.dumps({"Mask": BY_NAME["area code, city hit"]["mask"], "area_code": 728}),
        "not json",
        json.dumps({"mask": BY_NAME["not found"]["mask"], "city": "杭州", "id": "x,y"}),
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    r = run_batch_cli(mock, src, "--out", out, "--csv-bom")
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert table[0] == ["id", "row", "mask", "status", "phone", "tier", "province", "city",
                        "carrier", "checks", "elapsed_ms", "reason"]  # fmt: skip
    body = table[1:]
    assert [row[:6] for row in body] == [
        ["7", "1", "138****2046", "matched", "13857152046", "city"],
        ["2", "2", "133****7310", "matched", "13339727310", "city"],
        ["3", "3", "", "invalid", "", ""],
        ["x,y", "4", "13905710***", "not_found", "", ""],
    ]
    assert body[0][6:9] == ["浙江", "杭州", "移动"]
    assert int(body[0][9]) > 0
    assert "not a JSON object" in body[2][11]


# -- end to end: kill -9 and resume -----------------------------------------------------------


def test_kill_9_then_resume_gives_the_uninterrupted_result(
    mock: ThreadedMock, tmp_path: Path
) -> None:
    mock.configure(latency_ms=20)
    n = 40
    cases = order_cases()[:n]
    assert len(cases) == n
    rows = [{"id": f"r{i}", "mask": mask_of(p), "city": c} for i, (p, c) in enumerate(cases)]
    src = write_csv(tmp_path / "in.csv", rows)

    # The uninterrupted run, for reference.
    before = mock.stats()["orders_requests"]
    ref = run_batch_cli(mock, src, "--out", tmp_path / "ref.jsonl")
    assert ref.returncode == 0, ref.stderr
    full_requests = mock.stats()["orders_requests"] - before
    reference = read_jsonl(tmp_path / "ref.jsonl")

    # The same run, killed once the journal holds a dozen rows.
    out = tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.journal"
    proc = subprocess.Popen(batch_argv(mock, src, "--out", out), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    kill_once_journaled(proc, journal, 12, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    done_lines = journal_lines(journal)[1:]
    assert 12 <= len(done_lines) < n, "killed mid-run"

    before = mock.stats()["orders_requests"]
    r = run_batch_cli(mock, src, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    resume_requests = mock.stats()["orders_requests"] - before

    final = read_jsonl(out)
    assert [x["row"] for x in final] == list(range(1, n + 1))  # none lost, none repeated
    assert [x["phone"] for x in final] == [p for p, _ in cases]
    assert without_timing(final) == without_timing(reference)
    # Rows finished before the kill are carried over as they were, not looked up again.
    final_lines = out.read_text("utf-8").splitlines()
    for line in done_lines:
        assert line in final_lines
    assert resume_requests < full_requests
    assert f"({len(done_lines)} done before, from the journal)" in r.stdout


def test_torn_last_journal_line_is_ignored(mock: ThreadedMock, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", case_rows(QUICK, 6))
    out = tmp_path / "out.jsonl"
    assert run_batch_cli(mock, src, "--out", out).returncode == 0
    first = read_jsonl(out)
    journal = tmp_path / "out.jsonl.journal"
    text = journal.read_text("utf-8")
    last_start = text.rstrip("\n").rfind("\n") + 1
    torn_row = json.loads(text[last_start:].rpartition("\t")[0])["row"]
    journal.write_text(text[: last_start + 25], encoding="utf-8")  # cut mid-line
    out.unlink()

    before = mock.stats()["orders_requests"]
    r = run_batch_cli(mock, src, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert "torn" in r.stderr
    assert mock.stats()["orders_requests"] - before > 0  # the torn row was looked up again
    assert "this run: 1 rows looked up (5 done before" in r.stdout
    assert without_timing(read_jsonl(out)) == without_timing(first)
    # The journal is whole again: the fragment was cut before appending.
    lines = journal_lines(journal)
    assert journal.read_text("utf-8").endswith("\n")
    records = [json.loads(line) for line in lines[1:]]
    assert sorted(x["row"] for x in records) == list(range(1, 7))
    assert records[-1]["row"] == torn_row


# -- end to end: failed rows, journal guards, usage errors ---------------------------------------


def test_retry_failed_after_a_failing_api(mock: ThreadedMock, tmp_path: Path) -> None:
    names = [*QUICK, "not found"]
    src = write_csv(tmp_path / "in.csv", case_rows(names))
    out = tmp_path / "out.jsonl"
    mock.configure(error_rate=1)
    r = run_batch_cli(mock, src, "--out", out)
    assert r.returncode == 3, r.stderr
    assert {x["status"] for x in read_jsonl(out)} <= {"inconclusive", "api_error"}
    assert "--retry-failed" in r.stdout

    mock.configure()  # healthy again
    before = mock.stats()["orders_requests"]
    r = run_batch_cli(mock, src, "--out", out, "--resume")  # keeps the failed rows as they are
    assert r.returncode == 3, r.stderr
    assert mock.stats()["orders_requests"] == before

    r = run_batch_cli(mock, src, "--out", out, "--resume", "--retry-failed")
    assert r.returncode == 0, r.stderr
    records = read_jsonl(out)
    assert [x["row"] for x in records] == [1, 2, 3, 4]
    for record, name in zip(records, names, strict=True):
        assert_expected(record, name)


def test_existing_journal_needs_resume(mock: ThreadedMock, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", case_rows(["area code, city hit"]))
    out = tmp_path / "out.jsonl"
    assert run_batch_cli(mock, src, "--out", out).returncode == 0
    written = out.read_bytes()
    r = run_batch_cli(mock, src, "--out", out)
    assert r.returncode == 2
    assert "out.jsonl.journal exists" in r.stderr and "--resume" in r.stderr
    assert out.read_bytes() == written
    before = mock.stats()["orders_requests"]
    r = run_batch_cli(mock, src, "--out", out, "--retry-failed")  # resumes too: nothing to do
    assert r.returncode == 0, r.stderr
    assert mock.stats()["orders_requests"] == before
    assert out.read_bytes() == written


def test_journal_mismatch_refuses_to_resume(mock: ThreadedMock, tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", case_rows(["area code, city hit"]))
    out = tmp_path / "out.jsonl"
    assert run_batch_cli(mock, src, "--out", out).returncode == 0
    journal = (tmp_path / "out.jsonl.journal").read_bytes()
    write_csv(src, case_rows(["area code, city hit", "city hit"]))  # the input changed
    before = mock.stats()["orders_requests"]
    r = run_batch_cli(mock, src, "--out", out, "--resume", "--mode", "all")
    assert r.returncode == 2
    assert "cannot resume" in r.stderr
    assert "input file's content changed" in r.stderr
    assert "the mode (--mode) changed (journal: 'first', now: 'all')" in r.stderr
    assert mock.stats()["orders_requests"] == before
    assert (tmp_path / "out.jsonl.journal").read_bytes() == journal


def test_usage_errors_exit_2(mock: ThreadedMock, tmp_path: Path) -> None:
    r = run_batch_cli(mock, tmp_path / "missing.csv", "--out", tmp_path / "out.jsonl")
    assert r.returncode == 2
    assert "does not exist" in r.stderr
    src = tmp_path / "in.csv"
    src.write_text("phone,city\n138****2046,杭州\n", encoding="utf-8")
    r = run_batch_cli(mock, src, "--out", tmp_path / "out.jsonl")
    assert r.returncode == 2
    assert "'mask' column" in r.stderr
    assert not (tmp_path / "out.jsonl.journal").exists()


# -- run_batch with the fake API ---------------------------------------------------------------


def _rows(n: int) -> list[BatchRow]:
    # 1380571 is a 杭州 segment: 100 candidates per row, all in the city tier.
    return [BatchRow(row=i + 1, mask=f"1380571{i:02d}**", city="杭州") for i in range(n)]


async def test_lookups_run_concurrently_within_the_shared_limits() -> None:
    rows = _rows(24)
    active: dict[str, int] = {}  # row (its 9 known digits) -> checks in flight
    most = 0

    async def handler(phone: str) -> bool:
        nonlocal most
        key = phone[:9]
        active[key] = active.get(key, 0) + 1
        most = max(most, len(active))
        try:
            await asyncio.sleep(0.002)
        finally:
            active[key] -= 1
            if not active[key]:
                del active[key]
        return phone.endswith("07")

    api = FakeOrderApi(handler)
    limits = Limits(max_in_flight=6, max_per_second=None, cache_ttl=0)
    results: list[RowResult] = []
    summary = await run_batch(rows, checker=Checker(api, limits), lookups_in_flight=4,
                              on_result=results.append)  # fmt: skip
    assert 1 < most <= 4
    assert 1 < api.max_in_flight <= limits.max_in_flight
    assert summary.rows == 24 and summary.by_status["matched"] == 24 and summary.all_definite
    assert sorted(r.row for r in results) == list(range(1, 25))
    assert all(r.phone == f"1380571{r.row - 1:02d}07" for r in results)
    assert summary.checks_sent == sum(r.checks_sent for r in results) == len(api.calls)


async def test_lookups_share_the_slots_fairly_and_the_last_one_widens() -> None:
    # Row 1 has 1,000 candidates and no hit; rows 2-8 hit at their 10th candidate.
    rows = [BatchRow(row=1, mask="13805719***", city="杭州"), *_rows(8)[1:]]
    rows = [r.model_copy(update={"row": i + 1}) for i, r in enumerate(rows)]
    in_flight: dict[str, int] = {}
    most_alone = 0  # the big row's checks in flight once the others are done
    quick_done = 0

    async def handler(phone: str) -> bool:
        nonlocal most_alone
        key = phone[:8]
        in_flight[key] = in_flight.get(key, 0) + 1
        if quick_done == 7 and key == "13805719":
            most_alone = max(most_alone, in_flight[key])
        try:
            await asyncio.sleep(0.001)
        finally:
            in_flight[key] -= 1
        return key != "13805719" and phone.endswith("09")

    def on_result(result: RowResult) -> None:
        nonlocal quick_done
        quick_done += result.row != 1

    api = FakeOrderApi(handler)
    limits = Limits(max_in_flight=8, max_per_second=None, cache_ttl=0)
    summary = await run_batch(rows, checker=Checker(api, limits), lookups_in_flight=4,
                              on_result=on_result)  # fmt: skip
    assert summary.by_status == {"matched": 7, "not_found": 1, "invalid": 0,
                                 "inconclusive": 0, "api_error": 0}  # fmt: skip
    assert api.max_in_flight <= 8
    assert most_alone == 8  # alone, the big lookup had every slot (its share was 2 of 8)
    # A hit wastes about its share of checks (2-4 here), not a whole pool's worth (8).
    quick_checks = sum(1 for c in api.calls if not c.startswith("13805719"))
    assert quick_checks <= 7 * (10 + 4)


async def test_checks_on_the_wire_land_and_queued_ones_are_never_sent() -> None:
    # A hit cancels the lookup's other checks: those already sent finish (their
    # connection stays usable), those still queued are dropped; all before the batch ends.
    started: list[str] = []
    cut: list[str] = []

    async def handler(phone: str) -> bool:
        started.append(phone)
        try:
            await asyncio.sleep(0.003 if phone.endswith("00") else 0.01)
        except asyncio.CancelledError:
            cut.append(phone)
            raise
        return phone.endswith("00")

    api = FakeOrderApi(handler)
    limits = Limits(max_in_flight=4, max_per_second=None, start_rate=None, cache_ttl=0)
    results: list[RowResult] = []
    await run_batch(_rows(2), checker=Checker(api, limits), lookups_in_flight=2,
                    on_result=results.append)  # fmt: skip
    assert [r.status for r in results] == ["matched", "matched"]
    assert cut == []
    assert api.in_flight == 0
    assert len(started) == 4  # two per lookup (its share): the hit and one that landed
    assert sum(r.checks_sent for r in results) == 4


async def test_cancelling_the_batch_leaves_no_task_behind() -> None:
    busy = asyncio.Event()

    async def handler(phone: str) -> bool:
        if api.in_flight == 8:
            busy.set()
        await asyncio.sleep(0.01)
        return False

    api = FakeOrderApi(handler)
    limits = Limits(max_in_flight=8, max_per_second=None, cache_ttl=0)
    results: list[RowResult] = []
    batch = asyncio.create_task(run_batch(_rows(20), checker=Checker(api, limits),
                                          on_result=results.append))  # fmt: skip
    await asyncio.wait_for(busy.wait(), timeout=10)
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert api.in_flight == 0 and results == []


async def test_rows_are_pulled_lazily() -> None:
    pulled = 0

    def rows() -> Iterator[BatchRow]:
        nonlocal pulled
        for row in _rows(50):
            pulled += 1
            yield row

    at_first_result: list[int] = []
    api = FakeOrderApi(lambda phone: phone.endswith("03"))

    def on_result(result: RowResult) -> None:
        if not at_first_result:
            at_first_result.append(pulled)

    summary = await run_batch(rows(), checker=Checker(api, Limits(max_per_second=None)),
                              lookups_in_flight=3, on_result=on_result)  # fmt: skip
    assert at_first_result == [3]
    assert summary.rows == 50


async def test_async_rows_bad_rows_and_api_errors() -> None:
    async def rows() -> AsyncIterator[BatchRow]:
        yield BatchRow(row=1, mask="138****2046", city="杭州")
        yield BatchRow(row=2, mask="138****2046", city="火星")
        yield BatchRow(row=3, mask="1**********")
        yield BatchRow(row=4, problem="line 4 is not a JSON object")
        yield BatchRow(row=5, id="five", mask="12345")

    def handler(phone: str) -> bool:
        raise FatalApiError("401 from the order API", status=401)

    seen: list[RowResult] = []

    async def on_result(result: RowResult) -> None:
        await asyncio.sleep(0)
        seen.append(result)

    api = FakeOrderApi(handler)
    summary = await run_batch(rows(), checker=Checker(api, Limits(max_per_second=None)),
                              on_result=on_result)  # fmt: skip
    by_row = {r.row: r for r in seen}
    assert by_row[1].status == "api_error" and "401" in (by_row[1].reason or "")
    assert [by_row[i].status for i in (2, 3, 4, 5)] == ["invalid"] * 4
    assert by_row[4].reason == "line 4 is not a JSON object"
    assert by_row[5].id == "five" and by_row[2].id == 2
    assert summary.by_status == {"matched": 0, "not_found": 0, "invalid": 4,
                                 "inconclusive": 0, "api_error": 1}  # fmt: skip
    assert not summary.all_definite
    assert api.calls and all(c.startswith("138") for c in api.calls)  # bad rows sent nothing


async def test_an_error_in_on_result_stops_the_batch() -> None:
    def on_result(result: RowResult) -> None:
        raise OSError("disk full")

    api = FakeOrderApi(lambda phone: phone.endswith("01"))
    with pytest.raises(OSError, match="disk full"):
        await run_batch(_rows(20), checker=Checker(api, Limits(max_per_second=None)),
                        on_result=on_result)  # fmt: skip


async def test_mode_all_reports_every_hit() -> None:
    api = FakeOrderApi(lambda phone: phone[-2:] in ("11", "22"))
    results: list[RowResult] = []
    checker = Checker(api, Limits(max_per_second=None))
    await run_batch(_rows(1), checker=checker, mode="all", on_result=results.append)
    (result,) = results
    assert result.hits == ["13805710011", "13805710022"]
    assert "ambiguous: 2 numbers" in (result.reason or "")
    assert json.loads(result.as_json())["hits"] == result.hits


# -- readers, journal, progress ---------------------------------------------------------------


def test_read_rows_csv_header_spellings_blank_lines_and_bom(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("\ufeffID, Mask ,Area Code,extra\n\n a1 ,138****2046, 0571 ,?\n,133****7310,,\n",
                   encoding="utf-8")  # fmt: skip
    rows = list(read_rows(src))
    assert [(r.row, r.key, r.mask, r.area_code) for r in rows] == [
        (1, "a1", "138****2046", "0571"),
        (2, 2, "133****7310", None),
    ]


def test_read_rows_refuses_bad_files(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("138****2046\n139****8812\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="header with a 'mask' column"):
        list(read_rows(src))
    src.write_bytes("mask,city\n138****2046,杭州\n".encode("gbk"))
    assert [r.city for r in read_rows(src)] == ["杭州"]  # GB18030, with a warning
    with pytest.raises(ConfigError, match="does not exist"):
        list(read_rows(tmp_path / "nope.csv"))


def test_detect_format(tmp_path: Path) -> None:
    a = tmp_path / "a.data"
    a.write_text('\ufeff\n{"mask": "138****2046"}\n', encoding="utf-8")
    b = tmp_path / "b.data"
    b.write_text("mask\n138****2046\n", encoding="utf-8")
    c = tmp_path / "c.jsonl"
    c.write_text("mask\n", encoding="utf-8")
    assert [detect_format(p) for p in (a, b, c)] == ["jsonl", "csv", "jsonl"]


def _header(src: Path, mode: Any = "first", **settings: Any) -> dict[str, Any]:
    base = {"api_url": "http://127.0.0.1:9/orders?key=s3cret-key&phone={phone}", **settings}
    return journal_header(src, load_settings(**base), mode)


def _record(row: int) -> RowResult:
    return RowResult(id=row, row=row, mask="138****2046", status="not_found", checks_sent=3)


def test_journal_round_trip_torn_tail_and_no_secret(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("mask\n138****2046\n138****2046\n", encoding="utf-8")
    path = tmp_path / "out.jsonl.journal"
    with Journal.open(path, _header(src)) as journal:
        assert not journal.started
        journal.append(_record(1))
        journal.append(_record(2))
    text = path.read_text("utf-8")
    assert "s3cret" not in text
    path.write_text(text + '{"id": 3, "row": 3, "ma', encoding="utf-8")
    with Journal.open(path, _header(src)) as journal:
        assert journal.started and journal.torn_bytes == len('{"id": 3, "row": 3, "ma')
        assert sorted(journal.records) == [1, 2]
        journal.append(_record(2).model_copy(update={"status": "matched"}))
    assert path.read_text("utf-8").startswith(text)
    with Journal.open(path, _header(src)) as journal:
        assert journal.torn_bytes == 0
        assert journal.records[2].status == "matched"  # the last record of a row wins


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"api_url": "http://127.0.0.1:10/orders?phone={phone}"}, "the order API changed"),
        (
            {"api_url": "http://127.0.0.1:9/orders?key=s3cret-key&tenant=2&phone={phone}"},
            "the order API changed",
        ),
        ({"hit_field": "count"}, "the hit field (--hit-field) changed"),
        ({"api_method": "POST"}, "the HTTP method (--method) changed"),
        ({"max_candidates": 500}, "max candidates (--max-candidates) changed"),
        ({"mode": "all"}, "the mode (--mode) changed"),
    ],
)
def test_journal_mismatch_names_the_change(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("mask\n138****2046\n", encoding="utf-8")
    path = tmp_path / "out.jsonl.journal"
    with Journal.open(path, _header(src)):
        pass
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        Journal.open(path, _header(src, **change))
    assert "s3cret" not in str(info.value) and "other" not in str(info.value)


def test_journal_allows_a_rotated_api_key(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("mask\n138****2046\n", encoding="utf-8")
    path = tmp_path / "out.jsonl.journal"
    with Journal.open(path, _header(src)):
        pass
    rotated = _header(src, api_url="http://127.0.0.1:9/orders?key=n3w-key&phone={phone}")
    with Journal.open(path, rotated) as journal:
        assert journal.started
    assert "key=***" in path.read_text("utf-8")


def test_journal_is_locked_against_a_second_writer(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("mask\n138****2046\n", encoding="utf-8")
    path = tmp_path / "out.jsonl.journal"
    with Journal.open(path, _header(src)), pytest.raises(ConfigError, match="in use"):
        Journal.open(path, _header(src))


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_plain_lines_every_tenth_or_five_seconds() -> None:
    now = [0.0]
    stream = _Stream(tty=False)
    progress = BatchProgress(stream, total=100, clock=lambda: now[0])
    for i in range(25):
        now[0] += 0.01
        progress.update(_record(i + 1))
    assert stream.getvalue().count("\n") == 2  # 10 % and 20 %
    now[0] += 6
    progress.update(_record(26))  # 5 s since the last line
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("lookup batch: 10/100 rows (10%)")
    assert "not_found 26" in lines[2] and "ETA" in lines[2]


def test_progress_live_line_on_a_terminal() -> None:
    now = [0.0]
    stream = _Stream(tty=True)
    progress = BatchProgress(stream, total=3, done=1, counts={"matched": 1}, clock=lambda: now[0])
    now[0] += 1
    progress.update(_record(2))
    now[0] += 1
    progress.update(_record(3))
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\r2/3 rows (66%), 1.0 rows/s, ETA 0:01; matched 1, not_found 1")
    assert "\r3/3 rows (100%)" in text and "\n" not in text
    assert text.endswith("\r")


async def test_a_run_of_rows_that_need_no_check_still_lets_other_tasks_run() -> None:
    """Invalid rows finish without waiting on anything: a service's other requests must
    still get the loop between them (a 100,000-row job of bad masks froze it for 13 s)."""
    rows = [BatchRow(row=i, mask="12345") for i in range(1, 2001)]
    checker = Checker(FakeOrderApi.from_orders({}), Limits(max_per_second=None))
    turns, during = 0, 0
    finished = False

    async def other() -> None:
        nonlocal turns
        while not finished:
            turns += 1
            await asyncio.sleep(0)

    def on_result(_: RowResult) -> None:
        nonlocal during
        during = turns

    task = asyncio.create_task(other())
    summary = await run_batch(rows, checker=checker, lookups_in_flight=4, on_result=on_result)
    finished = True
    await task
    assert summary.rows == 2000 and summary.by_status["invalid"] == 2000
    assert during >= 400  # the other task ran between rows, not only once the batch ended
