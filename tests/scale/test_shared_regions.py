"""Learned region counts in Redis beside the quota (``--shared`` with ``--learn-regions``),
against a real redis-server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from redis.asyncio import Redis
from support.fakes import FakeTime
from support.redis_fixture import RedisServer

from lookup.domain.models import LookupRequest, LookupResult
from lookup.domain.segments import SegmentDB
from lookup.orders import FakeOrderApi
from lookup.runtime.engine import api_identity, open_engine
from lookup.runtime.lookups import LookupPath
from lookup.runtime.regions import region_sink
from lookup.runtime.settings import Settings
from lookup.scale.redis.connect import namespace_of
from lookup.scale.redis.regions import RedisRegionCounts, regions_key

DB = SegmentDB.default()
URUMQI = "13899802046"  # 乌鲁木齐, national tier for a 杭州 hint


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def settings(url: str, tmp_path: Path) -> Settings:
    return Settings(api_url="http://orders.invalid/o?phone={phone}", shared_url=url,
                    learn_regions=True, regions_file=tmp_path / "regions.json", rate=None,
                    max_in_flight=32)  # fmt: skip


async def test_two_clients_share_the_counts_and_they_outlive_a_client(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    s = settings(redis_server.url, tmp_path)
    request = LookupRequest(mask="138****2046", city="杭州")
    api = FakeOrderApi.from_orders({URUMQI})
    async with open_engine(s, api=api) as one, open_engine(s, api=api) as two:
        sink_one, sink_two = region_sink(s, one.checker), region_sink(s, two.checker)
        assert isinstance(sink_one, RedisRegionCounts) and isinstance(sink_two, RedisRegionCounts)
        path = LookupPath(one.checker, DB, max_candidates=20_000, regions=sink_one)
        for _ in range(3):
            assert (await path.run(request, caller="a", surface="service")).status == "matched"
        assert await sink_two.counts() == {"乌鲁木齐": 3}  # the other process sees them
        other = LookupPath(two.checker, DB, max_candidates=20_000, regions=sink_two)
        await other.run(request, caller="b", surface="service")
        assert await sink_one.counts() == {"乌鲁木齐": 4}
    assert not (tmp_path / "regions.json").exists()  # nothing went to the local file

    async with open_engine(s, api=api) as again:  # a new client: the counts are still there
        sink = region_sink(s, again.checker)
        assert isinstance(sink, RedisRegionCounts)
        assert (await sink.refresh()).counts == {"乌鲁木齐": 4}
        namespace = namespace_of(api_identity(s)[0])
        assert sink.key == regions_key(namespace)
    client = Redis.from_url(redis_server.url)
    try:
        stored = await client.hgetall(regions_key(namespace))
    finally:
        await client.aclose()
    assert stored == {"乌鲁木齐".encode(): b"4"}  # counts per region only: no number, no mask


async def test_the_counts_are_read_at_most_once_per_ttl_and_redis_away_is_no_error(
    redis_server: RedisServer,
) -> None:
    clock = FakeTime()
    client = Redis.from_url(redis_server.url)
    try:
        sink = RedisRegionCounts(client, "feedc0de", threshold=2, ttl=5.0, clock=clock)
        writer = RedisRegionCounts(client, "feedc0de")
        await client.hset(sink.key, mapping={"广州": 7, "bad1": 3, "深圳": "x"})
        assert (await sink.refresh()).counts == {"广州": 7}  # labels only: digits dropped
        await client.hincrby(sink.key, "广州", 1)
        assert (await sink.refresh()).counts == {"广州": 7}  # within the ttl: no read
        clock.now += 5.0
        order = await sink.refresh()
        assert order.counts == {"广州": 8} and order.learned
        version = sink.version
        redis_server.stop()
        clock.now += 5.0
        assert (await sink.refresh()).counts == {"广州": 8}  # away: the counts last read
        assert sink.version == version
        hit = LookupResult(status="matched", mask="138****2046", phone=URUMQI,
                           region=DB.segment(URUMQI))  # fmt: skip
        assert not await writer.count(hit)  # not counted, not raised
    finally:
        await client.aclose()
