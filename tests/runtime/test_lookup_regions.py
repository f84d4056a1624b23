"""The one lookup path counts matched lookups' regions once, and plans with the counts."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr
from support.fakes import FakeTime

from lookup.domain.models import Limits, LookupRequest, LookupResult
from lookup.domain.segments import SegmentDB
from lookup.engine.batch import BatchRow
from lookup.engine.checker import Checker
from lookup.files.regions import RegionCounts
from lookup.orders.fake import FakeOrderApi
from lookup.runtime.lookups import LookupPath
from lookup.runtime.regions import region_sink
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving

DB = SegmentDB.default()
URUMQI = "13899802046"  # a 乌鲁木齐 number that fits 138****2046
HANGZHOU = "13857152046"  # 杭州
FAST = Limits(max_per_second=None, start_rate=None, max_in_flight=64)  # a fake: no pacing


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def make_path(store: RegionCounts | None, *orders: str) -> tuple[LookupPath, FakeOrderApi]:
    api = FakeOrderApi.from_orders(set(orders))
    checker = Checker(api, FAST)
    path = LookupPath(checker, DB, max_candidates=20_000, regions=store)
    return path, api


async def test_run_and_row_count_a_matched_lookup_once_and_nothing_else(tmp_path: Path) -> None:
    store = RegionCounts(tmp_path / "regions.json")
    path, _ = make_path(store, HANGZHOU)
    request = LookupRequest(mask="138****2046", city="杭州")
    result = await path.run(request, caller="t", surface="library")
    assert result.status == "matched" and result.phone == HANGZHOU
    assert store.counts() == {"杭州": 1}
    row = BatchRow(row=1, mask="138****2046", city="杭州")
    done = await path.row(row, caller="t", surface="batch")
    assert done.status == "matched"
    assert store.counts() == {"杭州": 2}
    missing = await path.run(LookupRequest(mask="13900001***"), caller="t", surface="library")
    assert missing.status == "not_found"
    bad = await path.row(BatchRow(row=2, mask="12"), caller="t", surface="batch")
    assert bad.status == "invalid"
    assert store.counts() == {"杭州": 2}  # only matched lookups count


async def test_without_a_sink_nothing_is_counted(tmp_path: Path) -> None:
    path, _ = make_path(None, HANGZHOU)
    result = await path.run(LookupRequest(mask="138****2046", city="杭州"), caller="t",
                            surface="library")  # fmt: skip
    assert result.status == "matched"
    assert not os.listdir(tmp_path)


async def test_plans_follow_new_counts_once_they_are_read_again(tmp_path: Path) -> None:
    clock = FakeTime()
    store = RegionCounts(tmp_path / "regions.json", threshold=3, ttl=5.0, clock=clock)
    path, api = make_path(store, URUMQI)
    request = LookupRequest(mask="138****2046", city="杭州")
    nearer = path.plan(request).tier("national").segments
    for _ in range(3):  # three lookups whose hit is in 乌鲁木齐: the threshold
        result = await path.run(request, caller="t", surface="service")
        assert result.status == "matched"
    assert store.counts() == {"乌鲁木齐": 3}
    learned = path.plan(request).tier("national")  # the cached plan is not reused
    assert learned.segments != nearer
    assert DB.segment(learned.segments[0]).city == "乌鲁木齐"  # type: ignore[union-attr]
    before = len(api.calls)
    await path.run(request, caller="t", surface="service")
    assert len(api.calls) - before < 10  # 乌鲁木齐's segment goes first: a few checks

    # Another process counts elsewhere: seen after the sink's ttl, not before.
    RegionCounts(store.path).add({"广州": 500})
    await path.refresh()
    assert DB.segment(path.plan(request).tier("national").segments[0]).city == "乌鲁木齐"  # type: ignore[union-attr]
    clock.now += 5.0
    await path.refresh()
    assert DB.segment(path.plan(request).tier("national").segments[0]).city == "广州"  # type: ignore[union-attr]


def test_region_sink_follows_the_settings(tmp_path: Path) -> None:
    assert region_sink(Settings()) is None
    sink = region_sink(Settings(learn_regions=True, regions_file=tmp_path / "r.json"))
    assert isinstance(sink, RegionCounts) and sink.path == tmp_path / "r.json"


@asynccontextmanager
async def service(settings: Settings, api: FakeOrderApi) -> AsyncIterator[aiohttp.ClientSession]:
    async with (
        serving(create_app(settings, api=api)) as url,
        aiohttp.ClientSession(url) as session,
    ):
        yield session


async def test_the_service_counts_json_stream_and_batch_lookups(tmp_path: Path) -> None:
    settings = Settings(learn_regions=True, regions_file=tmp_path / "regions.json", rate=None,
                        max_in_flight=64,
                        service_tokens=[SecretStr("a-service-token-1")])  # fmt: skip
    headers = {"Authorization": "Bearer a-service-token-1"}
    lookup = {"mask": "138****2046", "city": "杭州"}
    async with service(settings, FakeOrderApi.from_orders({HANGZHOU})) as session:
        async with session.post("/v1/lookups", json=lookup, headers=headers) as r:
            assert r.status == 200 and (await r.json())["status"] == "matched"
        stream = {**headers, "Accept": "text/event-stream"}
        async with session.post("/v1/lookups", json=lookup, headers=stream) as r:
            assert r.status == 200
            await r.read()
        batch = {"lookups": [lookup, lookup, {"mask": "13900001***"}]}
        async with session.post("/v1/lookups/batch", json=batch, headers=headers) as r:
            assert r.status == 200
    assert RegionCounts(tmp_path / "regions.json").counts() == {"杭州": 4}


def test_a_result_without_a_region_is_not_counted(tmp_path: Path) -> None:
    store = RegionCounts(tmp_path / "regions.json")
    assert not store.record(LookupResult(status="matched", mask="138****2046", phone=HANGZHOU))
    assert store.counts() == {}
