"""The Redis quota (lookup.scale.redis) against a real redis-server on loopback.

Two ``redis.asyncio`` clients (two :func:`open_quota` contexts) stand for two processes:
the Lua GCRA keeps both under one rate with no burst, a throttle (or ``Retry-After``)
reported by one reaches the other, the breaker, cache and single flight are shared by
two checkers, Redis stopped mid-run means pacing alone at the fallback rate (logged once)
and rejoining when it is back, an unreachable Redis at start is a one-line error (exit 2
from the CLI), and no key holds a number or a URL. Real time: the quota paces with real
sleeps; every wait for an event is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from support.redis_fixture import RedisServer, free_port
from support.windows import most_in_window

from lookup.domain.errors import ConfigError, TransientApiError
from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checker import Checker, CheckStats
from lookup.orders import FakeOrderApi
from lookup.scale.redis.connect import namespace_of, open_quota
from lookup.scale.redis.quota import RedisQuota

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = "http GET http://127.0.0.1:9/orders?phone={phone}"
GUARD = 30.0


@asynccontextmanager
async def quotas(
    url: str, n: int = 2, identity: str = IDENTITY, **limits: object
) -> AsyncIterator[list[RedisQuota]]:
    base: dict[str, object] = {"max_per_second": 100.0, "cache_ttl": 60.0}
    async with AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(
                open_quota(url, identity=identity, limits=Limits(**(base | limits)))
            )
            for _ in range(n)
        ]
        yield opened


async def admit_all(quota: RedisQuota, n: int, starts: list[float]) -> None:
    for _ in range(n):
        assert await quota.admit()
        starts.append(time.monotonic())
        quota.on_clean()


# -- the rate budget ----------------------------------------------------------------------


async def test_two_clients_share_one_rate_with_no_burst(redis_server: RedisServer) -> None:
    async with quotas(redis_server.url) as (a, b), asyncio.timeout(GUARD):
        starts: list[float] = []
        began = time.monotonic()
        # Four callers on two clients, 40 admissions each: one budget of 100/s.
        await asyncio.gather(*(admit_all(q, 40, starts) for q in (a, b, a, b)))
        took = time.monotonic() - began
        assert took >= 159 * 1.02 / 100 - 0.02  # 160 starts, 2 % headroom, no burst
        assert most_in_window(starts, 0.5) <= 52
        assert a.granted + b.granted == 160 and min(a.granted, b.granted) >= 60

        # Idle for a while: still no burst, the next starts are spaced at once.
        await asyncio.sleep(0.3)  # idle time under test, not synchronisation
        again: list[float] = []
        resumed = time.monotonic()
        await asyncio.gather(*(admit_all(q, 5, again) for q in (a, b)))
        # From before the first ask, not from the first answer: a late first answer (CI's
        # scheduling noise, 18 ms once) shrank max - min; a burst still fails this.
        assert max(again) - resumed >= 9 * 1.02 / 100 - 0.01


async def test_the_slot_is_refused_past_max_wait_and_nothing_is_reserved(
    redis_server: RedisServer,
) -> None:
    async with quotas(redis_server.url, max_per_second=2.0) as (a, b):
        assert await a.admit(0.0)
        assert not await b.admit(0.1)  # the next slot is ~0.5 s away
        assert not await b.admit(0.1)
        began = time.monotonic()
        assert await b.admit(1.0)  # the refusals reserved nothing: the first slot is next
        assert 0.3 < time.monotonic() - began < 0.7


async def test_a_throttle_reported_by_one_lowers_the_rate_of_the_other(
    redis_server: RedisServer,
) -> None:
    async with quotas(redis_server.url) as (a, b):
        assert await a.admit() and await b.admit()
        await a.on_throttle(0.0, None)
        assert a.rate == pytest.approx(70.0)
        await b.read()
        assert b.rate == pytest.approx(70.0)
        await b.on_throttle(0.0, None)  # within the reaction window: no second cut
        await b.on_throttle(5.0, None)  # sent before the cut: says nothing new
        await a.read()
        assert a.rate == b.rate == pytest.approx(70.0)


async def test_clean_answers_while_held_back_raise_the_shared_rate_up_to_the_ceiling(
    redis_server: RedisServer,
) -> None:
    async with quotas(redis_server.url, max_per_second=40.0) as (a, b), asyncio.timeout(GUARD):
        await a.on_throttle(0.0, None)
        assert a.rate == pytest.approx(28.0)
        starts: list[float] = []
        await asyncio.gather(*(admit_all(q, 14, starts) for q in (a, b, a, b)))
        await a.read()
        assert b.rate is not None and a.rate == b.rate and 28.0 < a.rate <= 40.0
        await asyncio.gather(*(admit_all(q, 40, starts) for q in (a, b, a, b)))
        await b.read()
        assert b.rate == 40.0  # back at the ceiling, never above it


async def test_retry_after_reported_by_one_pauses_the_other(redis_server: RedisServer) -> None:
    async with quotas(redis_server.url) as (a, b):
        await a.on_throttle(0.0, 0.6)
        await b.read()
        assert 0.4 < b.paused_for <= 0.6
        began = time.monotonic()
        assert await b.admit()
        assert time.monotonic() - began >= 0.45


async def test_a_caller_waiting_for_its_slot_queues_again_behind_a_new_pause(
    redis_server: RedisServer,
) -> None:
    async with quotas(redis_server.url, 1, max_per_second=5.0) as (a,), asyncio.timeout(GUARD):
        assert await a.admit()
        began = time.monotonic()
        waiting = asyncio.create_task(a.admit())  # its slot is ~0.2 s away
        for _ in range(500):  # bounded polling: until the slot is reserved
            if a.granted == 2:
                break
            await asyncio.sleep(0.002)
        await a.on_throttle(0.0, 0.6)
        assert await waiting
        assert time.monotonic() - began >= 0.55 and a.granted == 3


async def test_without_a_ceiling_the_rate_starts_like_the_local_one_and_doubles(
    redis_server: RedisServer,
) -> None:
    async with quotas(redis_server.url, 1, max_per_second=None) as (a,), asyncio.timeout(GUARD):
        assert a.rate == 50.0 and a.slow_start  # the local pacer's start
        await admit_all(a, 25, [])
        assert a.rate is not None and a.rate >= 100.0 and a.slow_start
        rate = a.rate
        await a.on_throttle(0.0, None)  # the end of the start halves (at most)
        assert a.rate is not None and a.rate < rate and not a.slow_start


async def test_waiting_callers_cannot_book_the_slow_start_ahead(
    redis_server: RedisServer,
) -> None:
    async with quotas(redis_server.url, 1, max_per_second=None) as (a,), asyncio.timeout(GUARD):
        starts: list[float] = []
        began = time.monotonic()
        # 100 callers at once: each takes one slot; none may book the 50/s start for later.
        await asyncio.gather(*(admit_all(a, 1, starts) for _ in range(100)))
        took = time.monotonic() - began
        assert a.rate is not None and a.rate > 100.0
        assert took < 100 / 50.0 * 0.75  # at 50/s throughout it would take 2 s
        # Nothing was booked further ahead than one lease's horizon.
        assert a._leases.booked_until - time.monotonic() < 0.05


# -- breaker, cache, single flight across two checkers ------------------------------------


def two_checkers(
    quotas: list[RedisQuota], apis: list[FakeOrderApi], **overrides: object
) -> list[Checker]:
    base: dict[str, object] = {"max_per_second": 100.0, "cache_ttl": 60.0, "max_in_flight": 4}
    limits = Limits(**(base | overrides))
    return [Checker(api, limits, quota=q) for api, q in zip(apis, quotas, strict=True)]


async def test_one_checkers_open_breaker_holds_the_other_and_one_probe_closes_it(
    redis_server: RedisServer,
) -> None:
    down = {"on": True}

    def handler(phone: str) -> bool:
        if down["on"]:
            raise TransientApiError("HTTP 503", status=503)
        return False

    apis = [FakeOrderApi(handler), FakeOrderApi(handler)]
    settings = {"breaker_threshold": 2, "breaker_cooldown": 0.5, "max_attempts": 1}
    async with (
        quotas(redis_server.url, breaker_cooldown=0.5) as qs,
        asyncio.timeout(GUARD),
    ):
        a, b = two_checkers(qs, apis, **settings)
        for phone in ("13800000001", "13800000002"):
            with pytest.raises(TransientApiError):
                await a.check(phone)
        assert a.breaker_state == "open"
        # B saw no failure; the shared breaker holds it: nothing is sent.
        with pytest.raises(Exception, match="circuit breaker"):
            await b.check("13800000003", deadline=b.clock() + 0.2)
        assert apis[1].calls == [] and b.breaker_state == "open"
        down["on"] = False
        outcome = await b.check("13800000003")  # after the cooldown: one probe, for both
        assert not outcome.has_orders and b.breaker_state == "closed"
        assert not (await a.check("13800000004")).has_orders
        assert a.breaker_state == "closed"
        assert len(apis[1].calls) == 1


async def test_the_outcome_cache_is_shared(redis_server: RedisServer) -> None:
    apis = [FakeOrderApi.from_orders({"13800000008": 3}) for _ in range(2)]
    async with quotas(redis_server.url) as qs:
        a, b = two_checkers(qs, apis)
        assert (await a.check("13800000008")).order_count == 3
        stats = CheckStats()
        shared = await b.check("13800000008", stats)
        assert (shared.has_orders, shared.order_count, shared.phone) == (True, 3, "13800000008")
        assert apis[1].calls == [] and stats.cache_hits == 1 and stats.sent == 0


async def test_identical_checks_in_two_checkers_send_one_request(
    redis_server: RedisServer,
) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    async def slow(phone: str) -> bool:
        entered.set()
        await gate.wait()
        return True

    apis = [FakeOrderApi(slow), FakeOrderApi(slow)]
    async with quotas(redis_server.url) as qs, asyncio.timeout(GUARD):
        a, b = two_checkers(qs, apis)
        first = asyncio.create_task(a.check("13800000005"))
        await entered.wait()
        second = asyncio.create_task(b.check("13800000005"))
        for _ in range(1000):  # bounded polling of a readiness condition: B found A's flight
            if (outcomes := qs[1].outcomes) is not None and outcomes.waited:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("B never found A's flight")
        gate.set()
        assert (await first).has_orders and (await second).has_orders
        assert len(apis[0].calls) == 1 and apis[1].calls == []


async def test_keys_hold_no_number_and_no_url(redis_server: RedisServer) -> None:
    from redis.asyncio import Redis

    apis = [FakeOrderApi.from_orders({"13800000008": 1}) for _ in range(2)]
    async with quotas(redis_server.url) as qs:
        a, b = two_checkers(qs, apis)
        for phone in ("13800000008", "13912345678"):
            await a.check(phone)
            await b.check(phone)
    client = Redis.from_url(redis_server.url)
    try:
        keys = [k.decode() async for k in client.scan_iter("*")]
    finally:
        await client.aclose()
    namespace = namespace_of(IDENTITY)
    assert keys and all(k.startswith(f"lookup:{namespace}:") for k in keys)
    assert len([k for k in keys if ":o:" in k]) == 2  # both answers, as HMACs
    for key in keys:
        assert not re.search(r"1\d{10}", key) and "0000000" not in key and "5678" not in key
        assert "127.0.0.1" not in key and "http" not in key and "orders" not in key


# -- Redis away ---------------------------------------------------------------------------


async def test_redis_stopped_mid_run_paces_alone_then_rejoins(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lookup.shared")
    async with quotas(redis_server.url, 1, max_per_second=60.0) as (q,), asyncio.timeout(GUARD):
        await admit_all(q, 5, [])
        await asyncio.to_thread(redis_server.stop)
        starts: list[float] = []
        await admit_all(q, 20, starts)  # the first call finds Redis away
        assert q.away and q.rate == pytest.approx(30.0)  # 60/s shared by 2 processes
        assert most_in_window(starts, 0.5) <= 16
        await asyncio.to_thread(redis_server.start)
        rejoined = []
        while q.away:  # bounded by GUARD: one try a second
            await admit_all(q, 1, rejoined)
        assert q.rate == pytest.approx(60.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(warnings) == 1 and len(infos) == 1
    text = warnings[0].getMessage()
    assert "unreachable (connection refused)" in text and "30/s" in text


async def test_checks_go_on_while_redis_is_away(redis_server: RedisServer) -> None:
    apis = [FakeOrderApi.from_orders({"13800000008": 1}) for _ in range(2)]
    async with quotas(redis_server.url) as qs, asyncio.timeout(GUARD):
        a, b = two_checkers(qs, apis)
        await asyncio.to_thread(redis_server.stop)
        assert (await a.check("13800000008")).has_orders
        assert not (await b.check("13800000001")).has_orders
        assert qs[0].away and qs[1].away
        assert b.breaker_state == "closed" and b.status().rate == pytest.approx(50.0)


async def test_an_unreachable_redis_at_start_is_a_config_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError) as caught:
        async with open_quota(url, identity=IDENTITY, limits=Limits()):
            raise AssertionError("opened")
    assert str(caught.value) == (
        f"cannot reach the shared quota at {url} (connection refused): "
        "start Redis or leave out --shared"
    )


async def test_a_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigError, match=r"pip install '\.\[redis\]'"):
        async with open_quota("redis://127.0.0.1:1/0", identity=IDENTITY, limits=Limits()):
            raise AssertionError("opened")


def test_the_cli_exits_2_with_one_line_when_redis_is_unreachable() -> None:
    url = f"redis://:s3cretpass@127.0.0.1:{free_port()}/0"
    r = run_cli("find", "138****2046", "--api", "demo", "--shared", url)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the shared quota at redis://***@127.0.0.1" in lines[0]
    assert "s3cretpass" not in r.stderr + r.stdout and "Traceback" not in r.stderr


async def test_without_a_cache_no_outcome_is_shared_and_a_check_is_one_round_trip(
    redis_server: RedisServer,
) -> None:
    apis = [FakeOrderApi.from_orders({"13800000008": 1}) for _ in range(2)]
    async with quotas(redis_server.url, cache_ttl=0.0) as qs:
        a, b = two_checkers(qs, apis, cache_ttl=0.0)
        assert qs[0].outcomes is None
        before = qs[0].link.calls
        await a.check("13800000008")
        await b.check("13800000008")
        assert len(apis[0].calls) == len(apis[1].calls) == 1
        assert qs[0].link.calls - before == 1  # ADMIT only


async def test_outcomes_of_other_identities_are_not_shared(redis_server: RedisServer) -> None:
    apis = [FakeOrderApi.from_orders({"13800000008": 1}) for _ in range(2)]
    async with (
        quotas(redis_server.url, 1) as (q1,),
        quotas(redis_server.url, 1, identity="plugin other:api") as (q2,),
    ):
        a, b = two_checkers([q1, q2], apis)
        await a.check("13800000008")
        await b.check("13800000008")
        assert len(apis[1].calls) == 1 and q1.key != q2.key
        assert isinstance(await b.check("13800000008"), CheckOutcome)


def run_cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env |= {"PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8", **extra}
    return subprocess.run(
        [sys.executable, "-m", "lookup", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_lookup_shared_url_from_the_environment_paces_a_find(redis_server: RedisServer) -> None:
    r = run_cli("find", "138****2046", "--city", "杭州", "--api", "demo",
                LOOKUP_SHARED_URL=redis_server.url)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"quota shared through {redis_server.url}" in r.stdout + r.stderr


def test_config_shows_the_shared_url_redacted() -> None:
    r = run_cli("config", "--shared", "redis://:pa55word99@127.0.0.1:6390/0")
    assert r.returncode == 0, r.stderr
    assert "redis://***@127.0.0.1:6390/0" in r.stdout and "pa55word99" not in r.stdout


async def test_the_shared_outcome_cache_needs_a_secret_nobody_reading_redis_has(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With no API credentials and no LOOKUP_SHARED_SECRET, the HMAC key of the cache's keys
    would come from public values only: the shared outcome cache is then off (quota and
    breaker stay shared); a deployment secret turns it on, and it changes the keys."""
    from pydantic import SecretStr

    from lookup.runtime.engine import _shared_quota
    from lookup.runtime.settings import Settings

    plain = Settings(api_url="http://127.0.0.1:9/orders?phone={phone}", rate=None,
                     shared_url=redis_server.url)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="lookup.shared"):
        async with _shared_quota(plain, plain.limits()) as quota:
            assert quota is not None and quota.outcomes is None
    assert "shared outcome cache is off" in caplog.text
    keys = []
    for secret in ("deployment-secret-one-0123456789", "deployment-secret-two-0123456789"):
        with_secret = plain.model_copy(update={"shared_secret": SecretStr(secret)})
        async with _shared_quota(with_secret, with_secret.limits()) as quota:
            assert quota is not None and quota.outcomes is not None
            keys.append(quota.outcomes.keys("13857152046")[0])
    assert keys[0] != keys[1]  # the secret keys the hash: Redis alone cannot recompute it
    assert "13857152046" not in "".join(keys)
