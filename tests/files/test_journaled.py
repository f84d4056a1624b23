"""The one journaled run (``lookup.files.journaled``): rows reach the outputs in input order
through a bounded reorder window, a resumed run copies its done rows from the journal at
their place, and ``lookup batch`` and the service's jobs journal and write redacted texts
alike."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.plugins_for_tests import LEAKED_SECRET

from lookup.domain.models import Limits
from lookup.engine.batch import BatchRow, BatchSummary, ResultCallback, RowResult
from lookup.engine.checker import Checker
from lookup.engine.matcher import Mode
from lookup.files.header import journal_header
from lookup.files.journal import Journal
from lookup.files.journaled import run_journaled
from lookup.files.read import read_rows
from lookup.files.write import OutputFile
from lookup.orders import load_plugin
from lookup.runtime.settings import Settings
from lookup.service.jobs import JobStore

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 8


def masks_csv(path: Path, n: int) -> Path:
    lines = ["id,mask"] + [f"r{i},138****{i:04d}" for i in range(1, n + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def settings(**kw: Any) -> Settings:
    return Settings(api_url="http://127.0.0.1:9/orders?phone={phone}", rate=None, **kw)


def answer(row: BatchRow, reason: str | None = None) -> RowResult:
    return RowResult(id=row.key, row=row.row, mask=row.mask, status="not_found", reason=reason)


class HoldFirst:
    """Answers every row as soon as it is pulled, except row 1, held until the rows after it
    fill the window: the next pull must then wait for row 1 to be written."""

    description = "a runner that holds row 1"

    def __init__(self, output: OutputFile) -> None:
        self.output = output
        self.pulls: list[tuple[int, int]] = []  # (row pulled, rows written by then)

    async def run(self, rows: AsyncIterator[BatchRow], *, mode: Mode, max_candidates: int,
                  on_result: ResultCallback) -> BatchSummary:  # fmt: skip
        release = asyncio.Event()
        held: list[BatchRow] = []

        async def finish(row: BatchRow) -> None:
            done = on_result(answer(row))
            if done is not None:
                await done

        async def pull_all() -> None:
            answered = 0
            async for row in rows:
                self.pulls.append((row.row, self.output.rows))
                if row.row == 1:
                    held.append(row)
                    continue
                await finish(row)
                answered += 1
                if answered == WINDOW - 1:  # rows 1..WINDOW are in the window: it is full
                    release.set()

        async def finish_first() -> None:
            await release.wait()
            await finish(held[0])

        async with asyncio.TaskGroup() as tg:
            tg.create_task(pull_all())
            tg.create_task(finish_first())
        return BatchSummary()


async def test_rows_reach_the_output_in_order_through_a_bounded_window(tmp_path: Path) -> None:
    src = masks_csv(tmp_path / "in.csv", 50)
    out = tmp_path / "out.jsonl"
    output = OutputFile(out, "jsonl")
    runner = HoldFirst(output)
    jpath = tmp_path / "out.jsonl.journal"
    with Journal.open(jpath, journal_header(src, settings(), "first")) as journal:
        done = await run_journaled(journal, lambda: read_rows(src, "csv"), [output],
                                   runner=runner, mode="first", max_candidates=100,
                                   total=50, window=WINDOW)  # fmt: skip
    rows = [json.loads(line)["row"] for line in out.read_text("utf-8").splitlines()]
    assert rows == list(range(1, 51))
    assert done.written == 50 and done.kept == 0 and done.by_status["not_found"] == 50
    # The reader never ran more than the window ahead of the output...
    assert all(row - written <= WINDOW for row, written in runner.pulls), runner.pulls
    # ...so it waited for row 1: no row past the window was handed out before row 1 was out.
    assert [row for row, written in runner.pulls if written == 0] == list(range(1, WINDOW + 1))
    assert len(Journal.read(jpath)) == 50


class Reversed:
    """Pulls every row, then answers them last to first (the window holds them all)."""

    description = "a runner that answers backwards"

    async def run(self, rows: AsyncIterator[BatchRow], *, mode: Mode, max_candidates: int,
                  on_result: ResultCallback) -> BatchSummary:  # fmt: skip
        pulled = [row async for row in rows]
        for row in reversed(pulled):
            done = on_result(answer(row, reason="looked up now"))
            if done is not None:
                await done
        return BatchSummary()


async def test_a_resumed_run_copies_its_done_rows_from_the_journal_at_their_place(
    tmp_path: Path,
) -> None:
    src = masks_csv(tmp_path / "in.csv", 6)
    jpath = tmp_path / "journal"
    header = journal_header(src, settings(), "first")
    rows = {row.row: row for row in read_rows(src, "csv")}
    with Journal.open(jpath, header) as journal:
        for n in (2, 5):
            journal.append(answer(rows[n], reason=f"from the journal {n}"))
        journal.append(RowResult(id="r4", row=4, mask=rows[4].mask, status="api_error",
                                 reason="failed before"))  # fmt: skip
    outputs = [OutputFile(tmp_path / "out.csv", "csv"), OutputFile(tmp_path / "out.jsonl", "jsonl")]
    with Journal.open(jpath, header) as journal:
        done = await run_journaled(journal, lambda: read_rows(src, "csv"), outputs,
                                   runner=Reversed(), mode="first", max_candidates=100,
                                   retry_failed=True, total=6)  # fmt: skip
    assert done.kept == 2 and done.written == 6
    for out in (tmp_path / "out.jsonl",):
        records = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
        assert [r["row"] for r in records] == [1, 2, 3, 4, 5, 6]
        assert [r["reason"] for r in records] == [
            "looked up now", "from the journal 2", "looked up now", "looked up now",
            "from the journal 5", "looked up now",
        ]  # fmt: skip
    table = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text("utf-8"))))
    assert [r["id"] for r in table] == [f"r{i}" for i in range(1, 7)]
    # Row 4 was re-run (--retry-failed): its newer record is the one the journal now trusts.
    assert Journal.read(jpath).records[4].reason == "looked up now"


def _batch_cli(tmp_path: Path, src: Path) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    env["LOOKUP_API_TOKEN"] = LEAKED_SECRET
    out = tmp_path / "cli.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "lookup", "batch", str(src), "--out", str(out), "--quiet",
         "--api-plugin", "support.plugins_for_tests:LeakySecretApi"],
        cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # every row ends api_error
    return (tmp_path / "cli.csv.journal").read_text("utf-8"), out.read_text("utf-8")


async def _job(tmp_path: Path, upload: bytes) -> tuple[str, str]:
    api = load_plugin("support.plugins_for_tests:LeakySecretApi")
    checker = Checker(api, Limits(max_in_flight=4, max_per_second=None, start_rate=None))
    store = JobStore(tmp_path / "jobs", checker=checker, settings=settings(api_token=LEAKED_SECRET))
    await store.start()
    try:
        job = store.create("token#1", upload, "leaky.csv")
        job = await store.wait("token#1", job.id)
        assert job.state == "done" and job.counts["api_error"] == 2, job.progress()
        folder = tmp_path / "jobs" / job.id
        return (folder / "journal").read_text("utf-8"), store.results(
            "token#1", job.id, "csv").read_text("utf-8")  # fmt: skip
    finally:
        await store.close()
        await api.aclose()


@pytest.mark.parametrize("surface", ["lookup batch", "job"])
async def test_the_journaled_run_writes_redacted_reasons_for_the_cli_and_jobs_alike(
    surface: str, tmp_path: Path
) -> None:
    upload = "id,mask\na,138****2046\nb,1390000000*\n"
    src = tmp_path / "in.csv"
    src.write_text(upload, encoding="utf-8")
    # The plug-in fails every check with "denied for <number> in session <secret>".
    if surface == "job":
        journal, results = await _job(tmp_path, upload.encode())
    else:
        journal, results = await asyncio.to_thread(_batch_cli, tmp_path, src)
    for text in (journal, results):
        assert "denied for 138****" in text  # the reason is there, redacted
        assert LEAKED_SECRET not in text
        assert "***" in text
    reasons = [json.loads(line.rpartition("\t")[0])["reason"] for line in journal.splitlines()[1:]]
    table = list(csv.DictReader(io.StringIO(results.lstrip("\ufeff"))))
    assert len(reasons) == len(table) == 2
    for reason in [*reasons, *(r["reason"] for r in table)]:
        assert reason.startswith(("national tier: denied for ", "city tier: denied for ",
                                  "province tier: denied for ", "unlocated tier: denied for "))  # fmt: skip
        # No full number anywhere: every 11-digit run is masked.
        digits = "".join(c if c.isdigit() else " " for c in reason).split()
        assert not [d for d in digits if len(d) >= 11], reason
