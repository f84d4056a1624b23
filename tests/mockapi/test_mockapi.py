"""The bundled mock order API, exercised over real loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError
from support.fakes import FakeTime

from lookup.mockapi.cli import main as mockapi_main
from lookup.mockapi.server import (
    MAX_BATCH,
    MockConfig,
    MockOrderServer,
    default_orders_file,
)

ROOT = Path(__file__).resolve().parents[2]
KNOWN = "13800000001"
UNKNOWN = "13900000009"
ORDERS = {KNOWN: 3, "13800000002": 1}


@contextlib.contextmanager
def standalone(*args: str) -> Iterator[str]:
    """``python -m lookup.mockapi.server --port 0 ARGS`` in a subprocess; yield its base URL."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookup.mockapi", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no listening line within 15 s"
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
async def server() -> AsyncIterator[MockOrderServer]:
    async with MockOrderServer(ORDERS) as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as sess:
        yield sess


async def get_order(
    session: aiohttp.ClientSession, server: MockOrderServer, phone: str = KNOWN, **kw: Any
) -> tuple[int, Any]:
    async with session.get(server.orders_url.format(phone=phone), **kw) as resp:
        return resp.status, await resp.json()


async def test_lookup_known_and_unknown(
    server: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    assert server.orders_url == f"{server.url}/orders?phone={{phone}}"
    assert await get_order(session, server, KNOWN) == (200, {"phone": KNOWN, "total": 3})
    assert await get_order(session, server, UNKNOWN) == (200, {"phone": UNKNOWN, "total": 0})


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?phone=",
        "?phone=1380000000",
        "?phone=138000000012",
        "?phone=1380000000a",
        "?phone=" + urllib.parse.quote("１３８００００００００１"),  # full-width digits
        "?phone=%2B8613800000001",
    ],
)
async def test_bad_phone_is_400(
    server: MockOrderServer, session: aiohttp.ClientSession, query: str
) -> None:
    async with session.get(f"{server.url}/orders{query}") as resp:
        assert resp.status == 400
        assert "error" in await resp.json()
    assert server.stats.status(400) == 1


async def test_batch(server: MockOrderServer, session: aiohttp.ClientSession) -> None:
    phones = [KNOWN, UNKNOWN, "13800000002", KNOWN]
    async with session.post(server.batch_url, json={"phones": phones}) as resp:
        assert resp.status == 200
        assert await resp.json() == {"results": {KNOWN: 3, UNKNOWN: 0, "13800000002": 1}}
    async with session.post(server.batch_url, json={"phones": []}) as resp:
        assert await resp.json() == {"results": {}}
    full = [f"137{i:08d}" for i in range(MAX_BATCH)]
    async with session.post(server.batch_url, json={"phones": full}) as resp:
        assert resp.status == 200
        assert len((await resp.json())["results"]) == MAX_BATCH
    stats = server.stats
    assert (stats.batch_requests, stats.phones_checked) == (3, 4 + MAX_BATCH)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"phones": "13800000001"}',
        b'{"phones": [13800000001]}',
        b'{"phones": ["1380000000"]}',
        json.dumps({"phones": [KNOWN] * (MAX_BATCH + 1)}).encode(),
    ],
)
async def test_batch_bad_body_is_400(
    server: MockOrderServer, session: aiohttp.ClientSession, body: bytes
) -> None:
    async with session.post(server.batch_url, data=body) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()


async def test_stats_and_max_concurrent(
    server: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    server.config = MockConfig(latency_ms=50)
    results = await asyncio.gather(*(get_order(session, server) for _ in range(20)))
    assert all(status == 200 for status, _ in results)
    stats = server.stats
    assert stats.orders_requests == 20
    assert stats.statuses == {200: 20}
    assert stats.max_concurrent >= 2
    assert stats.concurrent == 0

    async with session.get(f"{server.url}/stats") as resp:
        assert resp.status == 200
        served = await resp.json()
    assert served["orders_requests"] == 20
    assert served["statuses"] == {"200": 20}
    assert served["requests"] == 21  # /stats itself is a request, not an order request

    server.reset_stats()
    stats = server.stats
    assert (stats.requests, stats.orders_requests, stats.max_concurrent, stats.statuses) == (
        0,
        0,
        0,
        {},
    )


async def test_connections_counts_distinct_client_connections(server: MockOrderServer) -> None:
    server.config = MockConfig(latency_ms=20)  # keeps requests overlapping
    connector = aiohttp.TCPConnector(limit=3)
    async with aiohttp.ClientSession(connector=connector) as pooled:
        results = await asyncio.gather(*(get_order(pooled, server) for _ in range(12)))
        assert all(status == 200 for status, _ in results)
        assert 1 <= server.stats.connections <= 3  # the pool's connections, reused
        results = await asyncio.gather(*(get_order(pooled, server) for _ in range(12)))
        assert server.stats.connections <= 3
    for _ in range(4):  # a session per request: a new connection each time
        async with aiohttp.ClientSession() as fresh:
            assert (await get_order(fresh, server))[0] == 200
    stats = server.stats
    assert 5 <= stats.connections <= 7
    assert stats.orders_requests == 28
    server.reset_stats()
    assert server.stats.connections == 0


async def test_latency_delays_answers(
    server: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    server.config = MockConfig(latency_ms=120)
    start = time.monotonic()
    assert (await get_order(session, server))[0] == 200
    assert time.monotonic() - start >= 0.11


async def test_token(server: MockOrderServer, session: aiohttp.ClientSession) -> None:
    server.config = MockConfig(token="s3cret")
    async with session.get(server.orders_url.format(phone=KNOWN)) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == "Bearer"
    for header in ("Basic s3cret", "Bearer"):
        async with session.get(
            server.orders_url.format(phone=KNOWN), headers={"Authorization": header}
        ) as resp:
            assert resp.status == 401
    async with session.get(
        server.orders_url.format(phone=KNOWN), headers={"Authorization": "Bearer wrong"}
    ) as resp:
        assert resp.status == 403
        assert "s3cret" not in await resp.text()
    status, body = await get_order(session, server, headers={"Authorization": "Bearer s3cret"})
    assert (status, body["total"]) == (200, 3)
    async with session.get(f"{server.url}/stats") as resp:  # never behind auth
        assert resp.status == 200
    assert server.stats.statuses == {401: 3, 403: 1, 200: 1}


async def test_error_rate_then_switched_off(
    server: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    server.config = MockConfig(error_rate=1)
    assert (await get_order(session, server))[0] == 500
    async with session.post(server.batch_url, json={"phones": [KNOWN]}) as resp:
        assert resp.status == 500
    server.config = MockConfig()
    assert (await get_order(session, server))[0] == 200
    assert server.stats.statuses == {500: 2, 200: 1}


async def test_reset_drops_connection(
    server: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    server.config = MockConfig(reset_rate=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await get_order(session, server)
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.post(server.batch_url, json={"phones": [KNOWN]}) as resp:
            await resp.read()
    stats = server.stats
    assert stats.resets >= 2  # aiohttp may retry an idempotent GET once by itself
    assert stats.statuses == {}
    server.config = MockConfig()
    assert (await get_order(session, server))[0] == 200


async def test_hang_times_out_and_shutdown_is_prompt(session: aiohttp.ClientSession) -> None:
    server = MockOrderServer(ORDERS, config=MockConfig(hang_rate=1))
    async with server:
        with pytest.raises(asyncio.TimeoutError):
            await get_order(session, server, timeout=aiohttp.ClientTimeout(total=0.3))
        assert server.stats.hangs == 1
        # The client gave up and closed its connection: the hung handler is released.
        async with asyncio.timeout(3):
            await server.wait_for(lambda s: s.concurrent == 0)

        pending = asyncio.create_task(get_order(session, server))
        async with asyncio.timeout(3):
            await server.wait_for(lambda s: s.hangs == 2)
        start = time.monotonic()
    assert time.monotonic() - start < 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await pending
    assert server.stats.concurrent == 0


async def test_rate_limit_burst(server: MockOrderServer, session: aiohttp.ClientSession) -> None:
    server.config = MockConfig(rate_limit=10)

    async def one() -> tuple[int, str | None]:
        async with session.get(server.orders_url.format(phone=KNOWN)) as resp:
            await resp.read()
            return resp.status, resp.headers.get("Retry-After")

    results = await asyncio.gather(*(one() for _ in range(50)))
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(ok) + len(limited) == 50
    assert len(ok) >= 10  # the window starts empty
    assert limited
    for _, retry_after in limited:
        assert retry_after is not None
        assert retry_after.isdigit()
        assert int(retry_after) >= 1
    assert server.stats.status(429) == len(limited)

    server.config = MockConfig(rate_limit=1, retry_after=7)
    statuses = [await one() for _ in range(3)]
    assert (429, "7") in statuses


async def test_orders_file_csv_with_bom(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    csv_file = tmp_path / "orders.csv"
    csv_file.write_bytes("\ufeffphone,total,note\n13700000001,5,首单\n13700000002,0,x\n\n".encode())
    async with MockOrderServer(orders_file=csv_file) as server:
        assert (await get_order(session, server, "13700000001"))[1]["total"] == 5
        assert (await get_order(session, server, "13700000002"))[1]["total"] == 0
    # A file and a mapping together: the mapping wins.
    async with MockOrderServer({"13700000001": 9}, orders_file=str(csv_file)) as server:
        assert (await get_order(session, server, "13700000001"))[1]["total"] == 9


@pytest.mark.parametrize(
    "text",
    [
        "number,total\n13700000001,1\n",
        "phone,total\n1370000000,1\n",
        "phone,total\n13700000001,x\n",
    ],
)
def test_orders_file_invalid(tmp_path: Path, text: str) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.csv"):
        MockOrderServer(orders_file=csv_file)


def test_default_orders_and_invalid_arguments() -> None:
    found = default_orders_file()
    bundled = ROOT / "data" / "demo_orders.csv"
    assert (found is not None) == bundled.is_file()
    MockOrderServer()  # loads the demo orders when bundled, else starts empty
    with pytest.raises(ValueError, match="loopback"):
        MockOrderServer({}, host="0.0.0.0")
    MockOrderServer({}, host="0.0.0.0", allow_remote=True)  # allowed, not started
    with pytest.raises(ValueError, match="11-digit"):
        MockOrderServer({"123": 1})
    with pytest.raises(ValidationError):
        MockConfig(error_rate=1.5)
    with pytest.raises(RuntimeError):
        _ = MockOrderServer({}).url


async def test_fault_draws_are_deterministic(session: aiohttp.ClientSession) -> None:
    async def sequence(seed: int) -> list[int]:
        async with MockOrderServer(ORDERS, config=MockConfig(error_rate=0.5, seed=seed)) as srv:
            return [(await get_order(session, srv))[0] for _ in range(24)]

    first = await sequence(1)
    assert first == await sequence(1)
    assert {200, 500} <= set(first)
    assert first != await sequence(2)


def test_standalone_process_prints_url_and_stops_on_sigterm() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookup.mockapi", "--port", "0", "--latency-ms", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15)
        assert ready, "no listening line within 15 s"
        line = proc.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        with urllib.request.urlopen(f"{url}/orders?phone={UNKNOWN}", timeout=5) as resp:
            assert json.load(resp) == {"phone": UNKNOWN, "total": 0}
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        out, err = proc.communicate(timeout=5)
        assert out == ""  # only the URL line, ever
        assert err.startswith("try: lookup find") and err.count("\n") == 1  # the hint only
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# -- fault knobs of throttle styles, outages, server-side counts -------------------


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime(1000.0)


@pytest.fixture
async def timed(clock: FakeTime) -> AsyncIterator[MockOrderServer]:
    """A mock on a fake clock: rate windows and outages move only when the test says so."""
    async with MockOrderServer(ORDERS, clock=clock) as srv:
        yield srv


async def answer(
    session: aiohttp.ClientSession, server: MockOrderServer, *, batch: bool = False
) -> tuple[int, str | None, Any]:
    """(status, Retry-After header, JSON body) of one single or batch order request."""
    if batch:
        request = session.post(server.batch_url, json={"phones": [KNOWN]})
    else:
        request = session.get(server.orders_url.format(phone=KNOWN))
    async with request as resp:
        return resp.status, resp.headers.get("Retry-After"), await resp.json()


async def test_rate_limit_window_on_the_server_clock(
    timed: MockOrderServer, session: aiohttp.ClientSession, clock: FakeTime
) -> None:
    timed.config = MockConfig(rate_limit=2)
    assert [(await answer(session, timed))[0] for _ in range(3)] == [200, 200, 429]
    clock.now += 0.999
    assert (await answer(session, timed))[:2] == (429, "1")
    clock.now += 0.001  # the window (1 s) has moved past both accepted requests
    assert [(await answer(session, timed))[0] for _ in range(3)] == [200, 200, 429]
    assert timed.stats.throttled == timed.stats.status(429) == 3


async def test_rate_limit_style_bare_429_has_no_retry_after(
    timed: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    timed.config = MockConfig(rate_limit=1, rate_limit_style="429-bare", retry_after=5)
    assert (await answer(session, timed))[0] == 200
    for batch in (False, True):
        status, retry_after, body = await answer(session, timed, batch=batch)
        assert (status, retry_after) == (429, None)
        assert "error" in body
    stats = timed.stats
    assert (stats.throttled, stats.statuses, stats.orders_requests) == (2, {200: 1, 429: 2}, 3)


async def test_rate_limit_style_body_answers_200_without_a_total(
    timed: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    timed.config = MockConfig(rate_limit=1, rate_limit_style="body")
    assert (await answer(session, timed))[2] == {"phone": KNOWN, "total": 3}
    assert await answer(session, timed) == (200, None, {"code": 429, "message": "quota exceeded"})
    assert await answer(session, timed, batch=True) == (
        200,
        None,
        {"code": 429, "message": "quota exceeded"},
    )
    stats = timed.stats
    assert (stats.throttled, stats.statuses, stats.phones_checked) == (2, {200: 3}, 1)


async def test_throttle_body_is_configurable(
    timed: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    body = {"error_response": {"code": 7, "msg": "App Call Limited", "sub_code": "isv.limit"}}
    timed.config = MockConfig(rate_limit=1, rate_limit_style="body", throttle_body=body)
    assert (await answer(session, timed))[2]["total"] == 3
    assert await answer(session, timed) == (200, None, body)
    assert timed.stats.throttled == 1


def test_throttle_body_needs_the_body_style() -> None:
    with pytest.raises(ValidationError, match="throttle_body"):
        MockConfig(rate_limit=1, throttle_body={"code": 7})
    with pytest.raises(ValidationError):
        MockConfig(rate_limit_style="503")  # type: ignore[arg-type]


async def test_outage_after_n_requests_for_s_seconds(
    timed: MockOrderServer, session: aiohttp.ClientSession, clock: FakeTime
) -> None:
    timed.config = MockConfig(outage_after=2, outage_seconds=5)
    assert [(await answer(session, timed))[0] for _ in range(2)] == [200, 200]
    clock.now += 100  # the outage is measured from its first request, not from the config
    start = clock.now
    status, retry_after, body = await answer(session, timed)
    assert (status, retry_after) == (503, None)
    assert "error" in body
    clock.now = start + 4.999
    assert (await answer(session, timed, batch=True))[:2] == (503, None)
    clock.now = start + 5
    assert [(await answer(session, timed))[0] for _ in range(3)] == [200, 200, 200]
    clock.now += 1000  # healthy for good: one outage per config
    assert (await answer(session, timed))[0] == 200
    stats = timed.stats
    assert stats.statuses == {200: 6, 503: 2}
    assert stats.orders_requests == 8
    assert stats.throttled == 0

    timed.config = MockConfig(outage_after=0, outage_seconds=1)  # a new config: a new outage
    assert (await answer(session, timed))[0] == 503


async def test_outage_status_and_retry_after(
    timed: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    timed.config = MockConfig(outage_after=0, outage_status=502)
    assert (await answer(session, timed))[:2] == (502, None)
    timed.config = MockConfig(outage_after=0, outage_retry_after=30)
    assert (await answer(session, timed))[:2] == (503, "30")
    timed.config = MockConfig(outage_after=0, outage_status=429, outage_retry_after=1.5)
    assert (await answer(session, timed))[:2] == (429, "1.5")
    assert timed.stats.throttled == 1  # a 429 is a throttle signal whatever sent it


async def test_outage_comes_before_the_rate_limit_and_after_auth(
    timed: MockOrderServer, session: aiohttp.ClientSession
) -> None:
    timed.config = MockConfig(outage_after=1, rate_limit=1, token="t")
    assert (await answer(session, timed))[0] == 401  # auth first: not counted for the outage
    auth = {"Authorization": "Bearer t"}
    statuses = []
    for _ in range(3):
        async with session.get(timed.orders_url.format(phone=KNOWN), headers=auth) as resp:
            statuses.append(resp.status)
    assert statuses == [200, 503, 503]  # the outage answers; the rate window is not touched
    assert timed.stats.throttled == 0


async def test_start_outage_programmatically(
    timed: MockOrderServer, session: aiohttp.ClientSession, clock: FakeTime
) -> None:
    timed.config = MockConfig(outage_status=504)
    timed.start_outage(3)
    assert (await answer(session, timed))[:2] == (504, None)
    clock.now += 2.9
    assert (await answer(session, timed))[0] == 504
    clock.now += 0.1
    assert (await answer(session, timed))[0] == 200
    with pytest.raises(ValueError, match="positive"):
        timed.start_outage(0)


async def test_orders_requests_counts_every_request_that_reached_the_server(
    timed: MockOrderServer, session: aiohttp.ClientSession, clock: FakeTime
) -> None:
    timed.config = MockConfig(rate_limit=1)
    await answer(session, timed)  # 200
    await answer(session, timed)  # 429
    timed.config = MockConfig(reset_rate=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await answer(session, timed, batch=True)  # a POST: aiohttp does not resend it
    timed.config = MockConfig(hang_rate=1)
    with pytest.raises(asyncio.TimeoutError):
        await get_order(session, timed, timeout=aiohttp.ClientTimeout(total=0.2))
    timed.config = MockConfig(outage_after=0)
    await answer(session, timed)  # 503
    timed.config = MockConfig(error_rate=1)
    await answer(session, timed)  # 500
    stats = timed.stats
    assert stats.statuses == {200: 1, 429: 1, 503: 1, 500: 1}
    assert (stats.resets, stats.hangs, stats.throttled) == (1, 1, 1)
    assert stats.orders_requests == 6 == sum(stats.statuses.values()) + stats.resets + stats.hangs
    async with session.get(f"{timed.url}/stats") as resp:
        served = await resp.json()
    assert (served["orders_requests"], served["throttled"]) == (6, 1)


async def test_outage_and_throttling_take_no_random_draws(
    session: aiohttp.ClientSession, clock: FakeTime
) -> None:
    async def sequence(config: MockConfig) -> list[int]:
        async with MockOrderServer(ORDERS, config=config, clock=clock) as srv:
            return [(await get_order(session, srv))[0] for _ in range(20)]

    plain = await sequence(MockConfig(error_rate=0.5, seed=3))
    faulted = MockConfig(error_rate=0.5, seed=3, outage_after=4, outage_seconds=60)
    with_outage = await sequence(faulted)
    assert with_outage == await sequence(faulted)  # deterministic per seed
    assert with_outage[4:] == [503] * 16
    assert with_outage[:4] == plain[:4]
    # The outage ends (the clock moves); the draws continue where they stopped.
    async with MockOrderServer(ORDERS, config=faulted, clock=clock) as srv:
        statuses = [(await get_order(session, srv))[0] for _ in range(6)]
        clock.now += 60
        statuses += [(await get_order(session, srv))[0] for _ in range(16)]
    assert [s for s in statuses if s != 503] == plain


def test_cli_rejects_bad_fault_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--rate-limit-style", "503"],
        ["--rate-limit-style", "body", "--throttle-body", "[1]"],
        ["--rate-limit-style", "body", "--throttle-body", "{oops"],
        ["--throttle-body", '{"code": 7}'],  # only with --rate-limit-style body
        ["--outage-after", "-1"],
        ["--outage-after", "3", "--outage-seconds", "0"],
    ):
        with pytest.raises(SystemExit) as exited:
            mockapi_main(["--port", "0", *argv])
        assert exited.value.code == 2, argv
    assert "throttle_body" in capsys.readouterr().err


def test_standalone_fault_flags() -> None:
    body = '{"error_response": {"code": 7, "msg": "App Call Limited"}}'
    with standalone(
        "--rate-limit", "0.01",  # one request per 100 s
        "--rate-limit-style", "body",
        "--throttle-body", body,
        "--outage-after", "2",
        "--outage-seconds", "100",
    ) as url:  # fmt: skip
        answers = []
        for _ in range(3):
            try:
                with urllib.request.urlopen(f"{url}/orders?phone={UNKNOWN}", timeout=5) as resp:
                    answers.append((resp.status, json.load(resp)))
            except urllib.error.HTTPError as exc:
                answers.append((exc.code, json.load(exc)))
                exc.close()
        with urllib.request.urlopen(f"{url}/stats", timeout=5) as resp:
            stats = json.load(resp)
    assert answers == [
        (200, {"phone": UNKNOWN, "total": 0}),
        (200, json.loads(body)),
        (503, {"error": "injected outage"}),
    ]
    assert (stats["orders_requests"], stats["throttled"]) == (3, 1)
