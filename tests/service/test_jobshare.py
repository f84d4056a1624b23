"""Jobs over one folder shared by several stores (the workers of ``serve --workers N``):
one of them runs the jobs, every one admits, answers, cancels and removes them."""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.jobs import JobCaps, JobNotFoundError, JobQuotaError
from lookup.service.jobshare import SharedJobStore

LIMITS = Limits(max_in_flight=8, max_per_second=None, start_rate=None)
BLOCKED = "13905710"  # 13905710***: ten candidates, answered only when the gate opens
HIT = "13857152046"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def gated() -> tuple[FakeOrderApi, asyncio.Event]:
    gate = asyncio.Event()

    async def handler(phone: str) -> bool:
        if phone.startswith(BLOCKED):
            await gate.wait()
        return phone == HIT

    return FakeOrderApi(handler), gate


@asynccontextmanager
async def worker(root: Path, api: FakeOrderApi, **kw: Any) -> AsyncIterator[SharedJobStore]:
    settings = Settings(api_url="http://127.0.0.1:9/orders?phone={phone}", rate=None)
    store = SharedJobStore(root, checker=Checker(api, LIMITS), settings=settings, poll=0.01, **kw)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def eventually(cond: Callable[[], bool]) -> None:
    """Wait until ``cond()`` holds: the stores look at the folder every 10 ms (bounded)."""
    async with asyncio.timeout(30):
        while True:
            if cond():
                return
            await asyncio.sleep(0.01)  # the stores' own pace: they look at files, not events


def rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text("utf-8-sig"))))


async def test_one_store_runs_the_jobs_every_store_admits_and_answers(tmp_path: Path) -> None:
    api_a, _ = gated()
    api_b, _ = gated()
    async with worker(tmp_path, api_a) as a:
        await eventually(lambda: a.leading)
        async with worker(tmp_path, api_b) as b:
            assert not b._try_lead() and not b.leading  # the lock is a's
            job = b.create("token#1", "id,mask,city\nr1,138****2046,杭州\n".encode(), "a.csv")
            assert job.state == "queued" and job.id not in b._jobs
            done = await b.wait("token#1", job.id)  # run by a, seen by b through the folder
            assert done.state == "done" and done.counts["matched"] == 1
            assert api_b.calls == [] and len(api_a.calls) > 0
            assert [j.id for j in b.jobs_of("token#1")] == [job.id] == [j.id for j in a.jobs_of("token#1")]
            assert b.jobs_of("token#2") == []
            with pytest.raises(JobNotFoundError):
                b.get("token#2", job.id)
            got = rows(b.results("token#1", job.id, "csv"))
            assert [(r["id"], r["phone"]) for r in got] == [("r1", HIT)]
            progress = b.get("token#1", job.id).progress()
            assert progress["started"] and progress["finished"] and progress["done"] == 1
            assert await b.delete("token#1", job.id) is None  # removed through b ...
            with pytest.raises(JobNotFoundError):
                a.get("token#1", job.id)  # ... gone for a at once
            assert job.id not in a._jobs
            assert not (tmp_path / job.id).exists()


async def test_caps_count_every_stores_jobs_and_a_cancel_reaches_the_runner(tmp_path: Path) -> None:
    api_a, gate = gated()
    api_b, _ = gated()
    caps = JobCaps(jobs=1, rows=10, bytes=10_000)
    async with worker(tmp_path, api_a, caps=caps) as a:
        await eventually(lambda: a.leading)
        async with worker(tmp_path, api_b, caps=caps) as b:
            data = f"mask,city\n138****2046,杭州\n{BLOCKED}***,杭州\n".encode()
            job = a.create("token#1", data, "slow.csv")
            with pytest.raises(JobQuotaError, match="at most 1 at once"):
                b.create("token#1", b"mask\n138****2046\n", "more.csv")  # a's job counts in b
            await eventually(lambda: b.get("token#1", job.id).done == 1)
            seen = b.get("token#1", job.id)
            assert seen.state == "running" and seen.progress()["state"] == "running"
            cancelled = await b.cancel("token#1", job.id)  # a runs it: b asks through the folder
            assert cancelled.state == "cancelled" and cancelled.done == 1
            assert [r["status"] for r in rows(b.results("token#1", job.id, "csv"))] == ["matched"]
            more = b.create("token#1", "mask,city\n138****2046,杭州\n".encode(), "more.csv")
            gate.set()  # the cap was free again: the job runs to its end
            assert (await b.wait("token#1", more.id)).state == "done"


async def test_when_the_runner_stops_another_store_resumes_its_jobs(tmp_path: Path) -> None:
    api_a, _gate_a = gated()  # a's gate never opens: its job cannot end there
    api_b, gate_b = gated()
    gate_b.set()
    async with worker(tmp_path, api_a) as a:
        await eventually(lambda: a.leading)
        async with worker(tmp_path, api_b) as b:
            data = f"mask,city\n138****2046,杭州\n{BLOCKED}***,杭州\n".encode()
            job = b.create("token#1", data, "resume.csv")
            await eventually(lambda: b.get("token#1", job.id).done == 1)
            await a.close()  # the runner stops: its job stays resumable on disk
            assert b.get("token#1", job.id).state == "running"
            done = await b.wait("token#1", job.id)  # b took the lock and finished it
            assert b.leading and done.state == "done" and done.done == 2
            assert [r["status"] for r in rows(b.results("token#1", job.id, "csv"))] == [
                "matched", "not_found"]  # fmt: skip


async def test_a_resigned_store_leaves_the_lock_to_the_others(tmp_path: Path) -> None:
    """A stopping worker (draining) does not take the runner's lock when it is free: it
    would resume the jobs only to stop them again."""
    api_b, _gate_b = gated()  # b's gate never opens: a job b ran could not end
    api_c, gate_c = gated()
    gate_c.set()
    async with worker(tmp_path, api_b) as b:
        b.resign()  # before its first look at the folder, where it would take the free lock
        data = f"mask,city\n138****2046,杭州\n{BLOCKED}***,杭州\n".encode()
        job = b.create("token#1", data, "a.csv")
        async with worker(tmp_path, api_c) as c:  # its first look comes after b's
            async with asyncio.timeout(30):  # bounded: taken by b, the job would never end
                done = await c.wait("token#1", job.id)
            assert c.leading and not b.leading and done.state == "done" and done.done == 2
            assert api_b.calls == [] and len(api_c.calls) > 0
