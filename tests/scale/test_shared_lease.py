"""Leased start slots: one Redis round trip serves many starts, what is not used goes back.

The local part (:class:`~lookup.scale.redis.lease.Leases`) with a fake clock; the quota
against a real ``redis-server`` on loopback (real time: every wait bounded).
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from support.redis_fixture import RedisServer
from support.windows import most_in_window

from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.orders import FakeOrderApi
from lookup.scale.redis import quota as quota_module
from lookup.scale.redis.connect import open_quota
from lookup.scale.redis.lease import LEASE_SPAN, Block, Leases
from lookup.scale.redis.quota import RedisQuota

IDENTITY = "http GET http://127.0.0.1:9/lease?phone={phone}"
GUARD = 30.0


# -- the local part ----------------------------------------------------------------------


def test_a_block_serves_its_slots_spaced_and_no_more() -> None:
    leases = Leases()
    leases.add(Block(3, 10.0, 0.01, "10.0", "10.03"))
    assert not leases.try_take(9.999)  # before its first slot
    assert leases.try_take(10.0)
    assert not leases.try_take(10.005)  # spacing
    assert leases.try_take(10.01) and leases.try_take(10.02)
    assert not leases.try_take(10.03) and leases.left == 0 and not leases


def test_unused_slots_expire_with_their_block_and_are_never_banked() -> None:
    leases = Leases()
    leases.add(Block(5, 0.0, 0.001, "0", "0.005"))  # span 5 ms: the block lasts LEASE_SPAN
    assert leases.try_take(0.0)
    assert leases.try_take(LEASE_SPAN - 0.001)  # late, but inside the block
    assert not leases.try_take(LEASE_SPAN - 0.0005)  # spaced: no catching up in a burst
    assert not leases.try_take(LEASE_SPAN)  # expired with 3 slots unused
    assert leases.left == 0


def test_reserve_hands_out_future_slots_and_refuses_past_the_deadline() -> None:
    leases = Leases()
    leases.add(Block(3, 1.0, 0.5, "1", "2.5"))
    assert leases.reserve(0.0, deadline=0.5) == 1.0  # a first slot granted in time
    assert leases.reserve(0.0, deadline=1.2) == math.inf  # 1.5: nothing reserved
    assert leases.left == 2
    assert leases.reserve(0.0, deadline=2.0) == 1.5
    assert leases.reserve(0.0, deadline=2.0) == 2.0
    assert leases.reserve(0.0, deadline=9.0) is None  # lease more
    assert leases.booked_until == 2.5


def test_a_lease_is_sized_to_the_recent_rate_and_doubles_when_it_ran_out() -> None:
    leases = Leases()
    assert leases.size(0.0, 0, False, 4096) == 1  # nothing known yet
    assert leases.size(1.0, 1, True, 4096) == 2  # slow, but it ran out: twice as many
    assert leases.size(1.25, 2001, True, 4096) == 160  # 8,000 starts/s: 20 ms of them
    leases.add(Block(160, 1.25, 0.0001, "0", "0"))
    assert leases.size(1.5, 2801, True, 4096) == 64  # slower now, and slots left
    assert leases.size(1.75, 200_000, True, 4096) == 4096  # at most the cap


# -- against Redis -----------------------------------------------------------------------


async def test_one_round_trip_serves_many_starts(redis_server: RedisServer) -> None:
    limits = Limits(max_per_second=100_000.0, cache_ttl=0.0, max_in_flight=16)
    api = FakeOrderApi(lambda phone: False)
    async with open_quota(redis_server.url, identity=IDENTITY, limits=limits) as quota:
        checker = Checker(api, limits, quota=quota)
        numbers = iter(f"138{i:08d}" for i in range(3000))

        async def worker() -> None:
            for phone in numbers:
                await checker.check(phone)

        async with asyncio.timeout(GUARD):
            await asyncio.gather(*(worker() for _ in range(16)))
        assert len(api.calls) == 3000 and quota.granted == 3000
        assert quota.link.calls < 3000 / 5  # leases of many slots, not a call per check
        assert quota.leased < quota.link.calls + 1


async def test_leases_of_two_processes_keep_to_one_rate(redis_server: RedisServer) -> None:
    limits = Limits(max_per_second=400.0, cache_ttl=0.0)
    async with (
        open_quota(redis_server.url, identity=IDENTITY, limits=limits) as a,
        open_quota(redis_server.url, identity=IDENTITY, limits=limits) as b,
        asyncio.timeout(GUARD),
    ):
        starts: list[float] = []

        async def take(quota: object, n: int) -> None:
            for _ in range(n):
                assert await a.admit() if quota is a else await b.admit()
                starts.append(time.monotonic())

        began = time.monotonic()
        await asyncio.gather(*(take(q, 100) for q in (a, b, a, b)))
        took = time.monotonic() - began
        assert took >= 399 * 1.02 / 400 - 0.03  # 400 starts at 400/s: no burst
        assert most_in_window(starts, 0.25) <= 100 * 1.03 + 2
        assert a.leased + b.leased < 400  # some leases held more than one slot


async def tat(url: str, quota: RedisQuota) -> float:
    """The shared schedule's next free slot, as Redis keeps it."""
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        return float(await client.hget(quota.key, "tat") or 0)
    finally:
        await client.aclose()


async def hold_a_lease_with_spare_slots(quota: RedisQuota) -> None:
    for _ in range(500):  # bounded: the lease grows with the demand
        assert await quota.admit()
        if quota._leases.left >= 2:
            return
    raise AssertionError("no lease with spare slots")


async def test_unused_slots_go_back_when_the_process_goes_idle(
    redis_server: RedisServer,
) -> None:
    limits = Limits(max_per_second=200.0, cache_ttl=0.0)  # leases of up to 4 slots, 20 ms
    async with (
        open_quota(redis_server.url, identity=IDENTITY, limits=limits) as a,
        asyncio.timeout(GUARD),
    ):
        await hold_a_lease_with_spare_slots(a)
        booked = await tat(redis_server.url, a)
        before = a.returned
        for _ in range(100):  # bounded polling: the idle check gives them back
            if a.returned > before:
                break
            await asyncio.sleep(0.002)
        assert a.returned == before + 1 and not a._leases
        assert await tat(redis_server.url, a) < booked  # the schedule moved back


async def test_a_lease_is_given_back_on_close(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quota_module, "IDLE", 60.0)  # only the close gives it back
    limits = Limits(max_per_second=200.0, cache_ttl=0.0)
    async with open_quota(redis_server.url, identity=IDENTITY, limits=limits) as a:
        await hold_a_lease_with_spare_slots(a)
        booked = await tat(redis_server.url, a)
        assert a.returned == 0
    assert a.returned == 1
    assert await tat(redis_server.url, a) < booked


async def test_redis_away_drops_the_lease_and_paces_alone(redis_server: RedisServer) -> None:
    limits = Limits(max_per_second=200.0, cache_ttl=0.0)
    async with (
        open_quota(redis_server.url, identity=IDENTITY, limits=limits) as q,
        asyncio.timeout(GUARD),
    ):
        for _ in range(20):
            assert await q.admit()
        await asyncio.to_thread(redis_server.stop)
        starts: list[float] = []
        for _ in range(30):
            assert await q.admit()
            starts.append(time.monotonic())
        assert q.away and q.rate == 100.0 and not q._leases  # 200/s shared by 2
        assert most_in_window(starts, 0.1) <= 11
        assert not q.try_admit()  # no local serving while pacing alone
