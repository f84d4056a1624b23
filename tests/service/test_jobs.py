"""The job store: uploads become jobs on disk, run over one checker, resume after a restart."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from support.fakes import FakeTime

from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.jobs import (
    BadUploadError,
    Job,
    JobNotFoundError,
    JobStateError,
    JobStore,
    decode_upload,
)

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
ORDERS = {c["expected_phone"]: 1 for c in CASES if c["expected_phone"]}
LIMITS = Limits(max_in_flight=16, max_per_second=None, start_rate=None)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def settings() -> Settings:
    return Settings(api_url="http://127.0.0.1:9/orders?phone={phone}", rate=None)


def demo_csv() -> str:
    lines = ["id,mask,city,area_code"]
    for i, c in enumerate(CASES, 1):
        h = c["hints"]
        lines.append(f"c{i},{c['mask']},{h.get('city', '')},{h.get('area_code', '')}")
    lines.append("bad,12345,杭州,")
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def store_for(
    root: Path, api: FakeOrderApi, clock: Callable[[], float] | None = None, **kw: Any
) -> AsyncIterator[JobStore]:
    store = JobStore(root, checker=Checker(api, LIMITS), settings=settings(),
                     clock=clock or FakeTime(1_000_000.0), **kw)  # fmt: skip
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def until(cond: Callable[[], bool]) -> None:
    """Yield to the loop until ``cond()`` holds (bounded: a hang fails, not loops forever)."""
    for _ in range(200_000):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8-sig"))))


async def test_a_csv_job_runs_every_row_into_private_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeOrderApi.from_orders(ORDERS)
    root = tmp_path / "jobs"
    async with store_for(root, api) as store:
        job = store.create("token#1", demo_csv().encode(), "desk.csv")
        assert (job.total, job.format, job.filename) == (len(CASES) + 1, "csv", "desk.csv")
        job = await store.wait("token#1", job.id)
        assert job.state == "done" and job.done == job.total
        assert job.counts["matched"] == 5 and job.counts["not_found"] == 1
        assert job.counts["invalid"] == 1
        with caplog.at_level(logging.INFO, "lookup.audit"):
            out = store.results("token#1", job.id, "csv")
        assert f"job results id={job.id} format=csv rows=7 caller=token#1" in caplog.text
        rows = read_csv(out)
        assert [r["id"] for r in rows] == [f"c{i}" for i in range(1, len(CASES) + 1)] + ["bad"]
        assert [r["phone"] for r in rows[:6]] == [c["expected_phone"] or "" for c in CASES]
        lines = store.results("token#1", job.id, "jsonl").read_text("utf-8").splitlines()
        assert [json.loads(line)["row"] for line in lines] == list(range(1, 8))
        folder = root / job.id
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["input.csv", "journal", "meta.json", "results.csv", "results.jsonl"]
        assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
        progress = job.progress()
        assert progress["state"] == "done" and progress["eta_s"] is None
        assert progress["done"] == progress["total"] == 7


async def test_gb18030_csv_and_jsonl_uploads(tmp_path: Path) -> None:
    api = FakeOrderApi.from_orders(ORDERS)
    hit = CASES[0]
    async with store_for(tmp_path, api) as store:
        gb = f"mask,city\n{hit['mask']},杭州\n".encode("gb18030")
        with pytest.raises(UnicodeDecodeError):
            gb.decode("utf-8")
        a = store.create("token#1", gb, "excel.csv")
        jsonl = json.dumps({"mask": hit["mask"], "city": "杭州"}, ensure_ascii=False) + "\n"
        b = store.create("token#1", jsonl.encode(), "rows.txt")  # format from the content
        assert b.format == "jsonl"
        for job in (a, b):
            done = await store.wait("token#1", job.id)
            assert done.counts["matched"] == 1, done.progress()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe\xff\xfe\x80\x80", "neither UTF-8 nor GB18030"),
        (b"phone,city\n13857150000,x\n", "desk.csv: the first line must be a header"),
        (b"mask,city\n", "desk.csv has no rows"),
        (b"mask\n" + b"138****2046\n" * 6, "more than 5 rows"),
    ],
)
async def test_bad_uploads_are_refused_and_leave_nothing(
    tmp_path: Path, data: bytes, message: str
) -> None:
    async with store_for(tmp_path, FakeOrderApi.from_orders({}), max_rows=5) as store:
        with pytest.raises(BadUploadError, match=message):
            store.create("token#1", data, "desk.csv")
        assert os.listdir(tmp_path) == []
        assert store.jobs_of("token#1") == []


def test_decode_upload_prefers_utf8() -> None:
    assert decode_upload("\ufeffmask,city\n".encode(), "x") == "mask,city\n"
    assert decode_upload("杭州".encode("gb18030"), "x") == "杭州"


async def test_a_caller_never_sees_another_callers_job(tmp_path: Path) -> None:
    async with store_for(tmp_path, FakeOrderApi.from_orders(ORDERS)) as store:
        job = store.create("token#1", demo_csv().encode(), "a.csv")
        await store.wait("token#1", job.id)
        for call in (
            lambda: store.get("token#2", job.id),
            lambda: store.results("token#2", job.id, "csv"),
            lambda: store.get("token#1", "../../etc/passwd"),
        ):
            with pytest.raises(JobNotFoundError):
                call()
        with pytest.raises(JobNotFoundError):
            await store.cancel("token#2", job.id)
        assert [j.id for j in store.jobs_of("token#1")] == [job.id]
        assert store.jobs_of("token#2") == []


BLOCKED = "13905710"  # the prefix of the slow row's candidates (13905710***)


def gated_api(hits: set[str]) -> tuple[FakeOrderApi, asyncio.Event]:
    """Answers at once, except numbers starting with :data:`BLOCKED`: those only when the
    gate opens."""
    gate = asyncio.Event()

    async def handler(phone: str) -> bool:
        if phone.startswith(BLOCKED):
            await gate.wait()
        return phone in hits

    return FakeOrderApi(handler), gate


async def test_cancel_keeps_the_rows_done_and_stops_the_rest(tmp_path: Path) -> None:
    hit = CASES[0]
    api, _gate = gated_api({hit["expected_phone"]})
    # Row 1 hits in its city tier; row 2 waits on the gate for ever.
    data = f"mask,city\n{hit['mask']},杭州\n13905710***,杭州\n".encode()
    async with store_for(tmp_path, api) as store:
        job = store.create("token#1", data, "a.csv")
        await until(lambda: job.done == 1 and api.in_flight > 0)
        with pytest.raises(JobStateError, match="running"):
            store.results("token#1", job.id, "csv")
        cancelled = await store.cancel("token#1", job.id)
        assert cancelled.state == "cancelled" and cancelled.done == 1
        rows = read_csv(store.results("token#1", job.id, "csv"))
        assert [(r["row"], r["status"]) for r in rows] == [("1", "matched")]
        assert api.in_flight == 0
        meta = json.loads((tmp_path / job.id / "meta.json").read_text("utf-8"))
        assert meta["state"] == "cancelled"
        assert (await store.cancel("token#1", job.id)).state == "cancelled"  # idempotent


async def test_a_restart_resumes_an_unfinished_job_from_its_journal(tmp_path: Path) -> None:
    hit = CASES[0]
    data = f"mask,city\n{hit['mask']},杭州\n13905710***,杭州\n".encode()
    first, _gate = gated_api({hit["expected_phone"]})
    async with store_for(tmp_path, first) as store:
        job = store.create("token#1", data, "a.csv")
        await until(lambda: job.done == 1)
    # The first process stopped mid-job: on disk it is still running.
    assert json.loads((tmp_path / job.id / "meta.json").read_text("utf-8"))["state"] == "running"
    second = FakeOrderApi.from_orders(ORDERS)
    async with store_for(tmp_path, second) as store:
        resumed = await store.wait("token#1", job.id)
        assert resumed.state == "done" and resumed.done == 2
        assert hit["expected_phone"] not in second.calls  # row 1 came from the journal
        assert len(second.calls) == 1000  # row 2: every candidate, once
        rows = read_csv(store.results("token#1", job.id, "csv"))
        assert [r["status"] for r in rows] == ["matched", "not_found"]


async def test_ended_jobs_survive_a_restart_and_expire_after_retention(tmp_path: Path) -> None:
    clock = FakeTime(1_000_000.0)
    api = FakeOrderApi.from_orders(ORDERS)
    async with store_for(tmp_path, api, clock, retention_s=3600) as store:
        job = store.create("token#1", demo_csv().encode(), "a.csv")
        await store.wait("token#1", job.id)
    clock.now += 3599
    async with store_for(tmp_path, api, clock, retention_s=3600) as store:
        again: Job = store.get("token#1", job.id)
        assert (again.state, again.done, again.counts["matched"]) == ("done", 7, 5)
        assert store.sweep() == 0
        clock.now += 1
        assert store.sweep() == 1
        assert not (tmp_path / job.id).exists()
        with pytest.raises(JobNotFoundError):
            store.get("token#1", job.id)


async def test_a_journal_from_another_order_api_fails_the_job_with_the_reason(
    tmp_path: Path,
) -> None:
    hit = CASES[0]
    data = f"mask,city\n{hit['mask']},杭州\n13905710***,杭州\n".encode()
    first, _gate = gated_api({hit["expected_phone"]})
    async with store_for(tmp_path, first) as store:
        job = store.create("token#1", data, "a.csv")
        await until(lambda: job.done == 1)
    other = Settings(api_url="http://127.0.0.1:9/other?phone={phone}", rate=None)
    store = JobStore(tmp_path, checker=Checker(FakeOrderApi.from_orders(ORDERS), LIMITS),
                     settings=other)  # fmt: skip
    await store.start()
    try:
        failed = await store.wait("token#1", job.id)
    finally:
        await store.close()
    assert failed.state == "failed"
    assert failed.error is not None and "the order API changed" in failed.error
    assert [r["status"] for r in read_csv(tmp_path / job.id / "results.csv")] == ["matched"]


async def test_an_upload_is_read_off_the_event_loop_and_a_cancelled_one_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100,000-row upload takes about a second to decode, save and count: the service's
    handler does that in a thread, so other requests are answered meanwhile."""
    import threading

    api = FakeOrderApi.from_orders(ORDERS)
    loop_thread = threading.get_ident()
    counted_in: list[int] = []
    release = threading.Event()
    count_rows = JobStore._count_rows

    def counting(self: JobStore, *args: Any) -> int:
        counted_in.append(threading.get_ident())
        release.wait(10)  # bounded: the test sets it
        return count_rows(self, *args)

    monkeypatch.setattr(JobStore, "_count_rows", counting)
    root = tmp_path / "jobs"
    async with store_for(root, api) as store:
        upload = asyncio.ensure_future(store.create_async("token#1", demo_csv().encode(), "a.csv"))
        await until(lambda: bool(counted_in))
        assert counted_in[0] != loop_thread  # the loop is free while the rows are counted
        assert store.jobs_of("token#1") == []  # not known before it is complete
        release.set()
        job = await upload
        assert job.total == len(CASES) + 1 and store.jobs_of("token#1") == [job]
        assert (await store.wait("token#1", job.id)).state == "done"

        # The caller goes away mid-count: the job never appears, its folder is removed.
        release.clear()
        counted_in.clear()
        upload = asyncio.ensure_future(store.create_async("token#1", demo_csv().encode(), "b.csv"))
        await until(lambda: bool(counted_in))
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        folders = {p.name for p in root.iterdir() if p.is_dir()}
        assert len(folders) == 2  # job a's and the half-made one
        release.set()
        await until(lambda: {p.name for p in root.iterdir() if p.is_dir()} == {job.id})
        assert [j.id for j in store.jobs_of("token#1")] == [job.id]


async def test_the_journal_is_opened_off_the_event_loop_and_closed_if_cancelled_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming, the journal's done rows are read and checked (1.6 s for 100,000) in a
    thread; a job cancelled meanwhile still gets its journal closed, its lock released."""
    import fcntl
    import threading

    import lookup.service.jobs

    api = FakeOrderApi.from_orders(ORDERS)
    loop_thread = threading.get_ident()
    opened_in: list[int] = []
    release = threading.Event()
    open_now = lookup.service.jobs._open_journal_now

    opened: list[Any] = []

    def opening(*args: Any) -> Any:
        opened_in.append(threading.get_ident())
        release.wait(10)  # bounded: the test sets it
        opened.append(open_now(*args))  # locked now
        return opened[-1]

    monkeypatch.setattr(lookup.service.jobs, "_open_journal_now", opening)
    async with store_for(tmp_path, api) as store:
        job = store.create("token#1", demo_csv().encode(), "a.csv")
        await until(lambda: bool(opened_in))
        assert opened_in[0] != loop_thread
        cancelled = await store.cancel("token#1", job.id)  # while the thread still opens it
        assert cancelled.state == "cancelled" and cancelled.done == 0
        release.set()
        journal = tmp_path / job.id / "journal"

        def unlocked() -> bool:
            with journal.open("rb") as f:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
                return True

        await until(lambda: bool(opened))  # the thread opened and locked it
        await until(unlocked)  # and the cancelled job closed it
        assert api.calls == []  # nothing was looked up for the cancelled job

        release.set()
        job = store.create("token#1", demo_csv().encode(), "b.csv")
        assert (await store.wait("token#1", job.id)).state == "done"
        assert len(opened_in) == 2 and opened_in[1] != loop_thread


async def test_the_results_files_are_written_off_the_event_loop_before_the_job_says_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    api = FakeOrderApi.from_orders(ORDERS)
    loop_thread = threading.get_ident()
    seen: list[tuple[int, str]] = []
    render = JobStore._render

    def rendering(self: JobStore, job: Job) -> None:
        seen.append((threading.get_ident(), job.state))
        render(self, job)

    monkeypatch.setattr(JobStore, "_render", rendering)
    async with store_for(tmp_path / "jobs", api) as store:
        job = store.create("token#1", demo_csv().encode(), "a.csv")
        job = await store.wait("token#1", job.id)
        assert job.state == "done"
        assert len(seen) == 1 and seen[0][0] != loop_thread and seen[0][1] == "running"
        assert len(read_csv(store.results("token#1", job.id, "csv"))) == job.total
        assert len(seen) == 1  # results() found the files: not written a second time


# -- fair turns and per-caller caps ---------------------------------------------------------


async def test_turns_go_to_the_caller_with_the_fewest_jobs_running() -> None:
    from lookup.service.turns import Turns

    turns = Turns(2)
    started: list[str] = []
    gates: dict[str, asyncio.Event] = {}

    async def job(owner: str, name: str) -> None:
        async with turns.turn(owner):
            started.append(name)
            gates[name] = asyncio.Event()
            await gates[name].wait()

    tasks = [asyncio.create_task(job("a", f"a{i}")) for i in range(20)]
    await until(lambda: started == ["a0", "a1"])
    tasks.append(asyncio.create_task(job("b", "b0")))
    await until(lambda: turns.waiting().count("b") == 1)
    gates["a0"].set()
    await until(lambda: len(started) == 3)
    assert started[2] == "b0"  # not behind a's eighteen other jobs
    gates["a1"].set()
    await until(lambda: len(started) == 4)
    assert started[3] == "a2"  # a's own jobs in their order
    # A cancelled waiter leaves its place; a cancelled holder frees its slot.
    tasks[5].cancel()
    gates["b0"].set()
    await until(lambda: len(started) == 5)
    assert started[4] == "a3" and turns.busy == 2
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert turns.busy == 0 and turns.waiting() == []


async def test_one_callers_queued_jobs_do_not_hold_up_anothers_one_row_job(tmp_path: Path) -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def handler(phone: str) -> bool:
        order.append(phone)
        await gate.wait()
        return False

    async with store_for(tmp_path, FakeOrderApi(handler), jobs_running=1) as store:
        first = store.create("token#a", b"mask\n13857150000\n", "a0.csv")
        await until(lambda: first.state == "running" and order == ["13857150000"])
        many = [store.create("token#a", f"mask\n1385715000{i}\n".encode(), f"a{i}.csv")
                for i in range(1, 6)]  # fmt: skip
        other = store.create("token#b", b"mask\n13857159999\n", "b.csv")
        gate.set()
        for job in [first, other, *many]:
            await store.wait(job.owner, job.id)
    assert order[:2] == ["13857150000", "13857159999"]
    assert order[2:] == [f"1385715000{i}" for i in range(1, 6)]


async def test_per_caller_caps_on_queued_jobs_rows_and_bytes(tmp_path: Path) -> None:
    from lookup.service.jobs import JobCaps, JobQuotaError

    api, gate = gated_api(set())
    row = f"{BLOCKED}***\n".encode()  # waits on the gate: the job stays running
    caps = JobCaps(jobs=2, rows=5, bytes=200)
    async with store_for(tmp_path, api, caps=caps) as store:
        one = store.create("token#a", b"mask\n" + row * 2, "one.csv")
        two = await store.create_async("token#a", b"mask\n" + row * 2, "two.csv")
        with pytest.raises(JobQuotaError, match=r"you have 2 jobs queued or running, at most 2"):
            store.create("token#a", b"mask\n" + row, "three.csv")
        store.create("token#b", b"mask\n" + row * 5, "b.csv")  # another caller: its own caps
        with pytest.raises(JobQuotaError, match=r"would make 6 rows .* at most 5"):
            store.create("token#b", b"mask\n" + row, "b2.csv")
        with pytest.raises(JobQuotaError, match=r"MiB of uploads"):
            await store.create_async("token#c", b"mask\n" + row * 20, "big.csv")
        assert len(os.listdir(tmp_path)) == 3  # nothing left of the refused ones
        await store.cancel("token#a", one.id)  # an ended job no longer counts
        three = store.create("token#a", b"mask\n" + row, "three.csv")
        assert {j.id for j in store.jobs_of("token#a")} == {one.id, two.id, three.id}
        gate.set()
