"""The nginx ``limit_req`` harness (tests/nginx.py) against the mock order API, on loopback."""

from __future__ import annotations

import asyncio
import math
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from lookup.mockapi.server import MockConfig, MockOrderServer
from support.nginx import AccessLog, LogRecord, NginxError, NginxLimiter, parse_access_log

KNOWN = "13800000001"
ORDERS = {KNOWN: 3}
RATE = 100
BURST = 20
REQUESTS = 300
IN_FLIGHT = 20


async def test_limit_req_answers_bare_429_and_passes_the_rest(nginx_binary: str) -> None:
    async with MockOrderServer(ORDERS) as mock:
        limiter = NginxLimiter(
            ("127.0.0.1", mock.port), rate=RATE, burst=BURST, binary=nginx_binary
        )
        async with limiter as nginx, aiohttp.ClientSession() as session:
            assert nginx.orders_url == f"http://127.0.0.1:{nginx.port}/orders?phone={{phone}}"
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one() -> tuple[int, str | None]:
                async with gate, session.get(nginx.orders_url.format(phone=KNOWN)) as resp:
                    await resp.read()
                    return resp.status, resp.headers.get("Retry-After")

            start = time.monotonic()
            answers = await asyncio.gather(*(one() for _ in range(REQUESTS)))
            elapsed = time.monotonic() - start
        assert not nginx.running
        stats = mock.stats

    seen = Counter(status for status, _ in answers)
    assert set(seen) == {200, 429}
    assert all(retry_after is None for status, retry_after in answers if status == 429)
    # nginx's own log, final once it stopped, agrees with the client and with the mock.
    assert nginx.counts() == dict(seen)
    assert sum(nginx.counts().values()) == REQUESTS
    assert nginx.passed() == seen[200] == stats.orders_requests == stats.status(200)
    assert nginx.rejected() == seen[429]
    assert nginx.throttled_share() == seen[429] / REQUESTS
    # limit_req with nodelay: the burst (+1) passes at once, then about RATE per second.
    assert BURST + 1 <= nginx.passed() <= BURST + 2 + math.ceil(RATE * elapsed)
    assert nginx.passed_per_second() > 0


async def test_upstream_answers_pass_through_and_are_not_rejections(nginx_binary: str) -> None:
    frozen = 0.0  # the mock's clock: its rate window never frees
    config = MockConfig(rate_limit=1, retry_after=3)
    async with (
        MockOrderServer(ORDERS, config=config, clock=lambda: frozen) as mock,
        NginxLimiter(("127.0.0.1", mock.port), rate=1000, burst=100, binary=nginx_binary) as nginx,
        aiohttp.ClientSession() as session,
    ):
        answers = []
        for _ in range(2):
            async with session.get(nginx.orders_url.format(phone=KNOWN)) as resp:
                answers.append((resp.status, resp.headers.get("Retry-After"), await resp.json()))
        mock.config = MockConfig(error_rate=1)
        async with session.post(nginx.batch_url, json={"phones": [KNOWN]}) as resp:
            assert resp.status == 500
    assert answers == [
        (200, None, {"phone": KNOWN, "total": 3}),
        (429, "3", {"error": "rate limited"}),  # the mock's 429 keeps its Retry-After
    ]
    assert [(r.status, r.passed) for r in nginx.records()] == [
        (200, True),
        (429, True),
        (500, True),
    ]
    assert (nginx.rejected(), nginx.throttled_share()) == (0, 0.0)
    assert mock.stats.orders_requests == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sync_use_and_an_unreachable_upstream(nginx_binary: str) -> None:
    with NginxLimiter(("127.0.0.1", _closed_port()), binary=nginx_binary) as nginx:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(nginx.orders_url.format(phone=KNOWN), timeout=5)
        failed.value.close()
        assert failed.value.code == 502
    assert nginx.counts() == {502: 1}
    assert nginx.passed() == 1  # nginx tried the upstream: not a limit_req rejection
    with pytest.raises(RuntimeError, match="not running"):
        _ = nginx.url


def test_a_binary_that_exits_is_reported() -> None:
    with pytest.raises(NginxError, match="did not start"):
        NginxLimiter(("127.0.0.1", 9), binary="/bin/false").start()


@pytest.mark.parametrize(
    ("rate", "spec"), [(100, "100r/s"), (2.0, "2r/s"), (0.5, "30r/m"), (0.05, "3r/m")]
)
def test_rates_nginx_can_express(rate: float, spec: str, tmp_path: Path) -> None:
    conf = NginxLimiter(("127.0.0.1", 9), rate=rate, burst=5).render_config(tmp_path, 8999)
    assert f"zone=api:1m rate={spec};" in conf
    assert "burst=5 nodelay;" in conf
    assert "listen 127.0.0.1:8999;" in conf
    assert "$uri" not in conf and "$request" not in conf  # no phone number reaches a log


@pytest.mark.parametrize("rate", [0, -1, 0.01, 1.234])
def test_rates_nginx_cannot_express(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        NginxLimiter(("127.0.0.1", 9), rate=rate)


def test_upstream_must_be_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        NginxLimiter(("192.0.2.1", 80))


def test_access_log_parsing_and_summaries() -> None:
    log = AccessLog(
        parse_access_log(
            [
                "200 200 10.000",
                "429 - 10.001",
                "",
                "502 502 10.500",
                "200 200 11.000",
                "429 - 12.000",
                "429 -",  # torn: the line nginx is writing right now
            ]
        )
    )
    assert log.records[:2] == [LogRecord(200, True, 10.0), LogRecord(429, False, 10.001)]
    assert log.counts() == {200: 2, 429: 2, 502: 1}
    assert (log.passed(), log.rejected(), log.throttled_share()) == (3, 2, 0.4)
    assert log.passed_per_second() == 3 / 2.0
    assert math.isclose(log.passed_per_second(since=10.4, until=11.0), 2 / 0.6)
    with pytest.raises(ValueError, match="span"):
        log.passed_per_second(since=11.0, until=11.0)
    assert AccessLog([]).passed_per_second() == AccessLog([]).throttled_share() == 0.0
