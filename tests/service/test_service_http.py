"""The service's HTTP contract, through a real server on 127.0.0.1: problem+json errors,
request ids, media types and encodings, read timeouts, queue caps and fairness."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from lookup.domain.segments import SegmentDB
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving
from lookup.service.http import caller_name

TOKENS = ["first-service-token", "second-service-token"]
CITY_HIT = {"mask": "138****2046", "city": "杭州"}  # 102 candidates in its city tier
PHONE = "13857152046"
HEX32 = re.compile(r"[a-s]{32}")  # a generated request id: 32 letters, never digits


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def make_settings(**kw: Any) -> Settings:
    kw.setdefault("rate", None)
    kw.setdefault("max_in_flight", 10)
    kw["service_tokens"] = [SecretStr(t) for t in kw.get("service_tokens", TOKENS)]
    return Settings(**kw)


def auth(token: str = TOKENS[0], **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **more}


@asynccontextmanager
async def running(
    settings: Settings, api: FakeOrderApi, *, shutdown_timeout: float = 5.0
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    app = create_app(settings, api=api)
    async with (
        serving(app, shutdown_timeout=shutdown_timeout) as url,
        aiohttp.ClientSession(url) as session,
    ):
        yield url, session


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def problem_of(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    assert resp.content_type == "application/problem+json", resp.content_type
    data: dict[str, Any] = json.loads(await resp.text())
    assert {"type", "title", "status", "detail", "instance"} <= set(data), data
    assert data["status"] == resp.status
    assert data["instance"] == resp.headers["X-Request-Id"]
    return data


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(self.format(r) if r.exc_info else r.getMessage() for r in self.records)


@pytest.fixture
def records() -> Iterator[_Records]:
    handler = _Records()
    names = ("lookup.audit", "lookup.service", "aiohttp.server", "aiohttp.access",
             "aiohttp.web", "asyncio")  # fmt: skip
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG if lg.name != "asyncio" else logging.WARNING)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.fixture
async def service() -> AsyncIterator[tuple[str, aiohttp.ClientSession, FakeOrderApi]]:
    api = FakeOrderApi.from_orders({PHONE: 1})
    async with running(make_settings(), api) as (url, session):
        yield url, session, api


# -- request ids and problems ----------------------------------------------------------------


async def test_request_id_is_kept_when_sane_generated_otherwise_and_audited(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi], records: _Records
) -> None:
    _, session, _ = service
    async with session.post(
        "/v1/lookups", json=CITY_HIT, headers=auth(**{"X-Request-Id": "req-1.A_b"})
    ) as resp:
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "req-1.A_b"
    for bad in ("x" * 129, "a b", "id;drop", "ü"):
        async with session.get("/healthz", headers={"X-Request-Id": bad}) as resp:
            assert HEX32.fullmatch(resp.headers["X-Request-Id"]), bad
    async with session.get("/healthz") as resp:  # none given
        generated = resp.headers["X-Request-Id"]
        assert HEX32.fullmatch(generated)
    async with session.get("/healthz") as resp:
        assert resp.headers["X-Request-Id"] != generated
    async with session.get("/nowhere", headers={"X-Request-Id": "r404"}) as resp:  # no token
        assert resp.status == 404  # a path no route has: 404 with or without a token
        assert (await problem_of(resp))["instance"] == "r404"
    audit = [r.getMessage() for r in records.records if r.name == "lookup.audit"]
    assert len(audit) == 1 and audit[0].endswith(f"caller={caller_name(TOKENS[0].encode())} request_id=req-1.A_b")
    access = [r.getMessage() for r in records.records if r.name == "aiohttp.access"]
    assert any(line.endswith("request_id=req-1.A_b") for line in access)


async def test_a_body_that_is_not_utf8_is_a_422_that_names_the_problem(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi], records: _Records
) -> None:
    _, session, api = service
    gbk = json.dumps(CITY_HIT, ensure_ascii=False).encode("gbk")
    for ctype in ("application/json", "application/json; charset=gbk"):
        for path in ("/v1/lookups", "/v1/lookups/batch"):
            async with session.post(path, data=gbk, headers=auth(**{"Content-Type": ctype})) as r:
                assert r.status == 422, (path, ctype)
                problem = await problem_of(r)
            assert problem["type"] == "/docs#problem-invalid-body"
            assert "not UTF-8" in problem["detail"] and "offset" in problem["detail"]
            assert problem["errors"] == [{"field": "body", "message": "not UTF-8"}]
    assert "charset gbk" in problem["detail"]
    bom = b"\xef\xbb\xbf" + json.dumps(CITY_HIT, ensure_ascii=False).encode()
    json_type = {"Content-Type": "application/json"}
    async with session.post("/v1/lookups", data=bom, headers=auth(**json_type)) as resp:
        assert resp.status == 200  # UTF-8 with a BOM is UTF-8
    assert "Traceback" not in records.text
    assert len(api.calls) > 0


async def test_a_body_not_declared_as_json_is_415(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi],
) -> None:
    _, session, api = service
    payload = json.dumps(CITY_HIT).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        headers = auth(**{"Content-Type": ctype})
        async with session.post("/v1/lookups", data=payload, headers=headers) as resp:
            assert resp.status == 415, ctype
            problem = await problem_of(resp)
        assert ctype in problem["detail"] and "application/json" in problem["detail"]
    headers = auth(**{"Content-Type": "application/merge-patch+json"})
    async with session.post("/v1/lookups", data=payload, headers=headers) as resp:
        assert resp.status == 200  # a +json type is JSON
    assert len(api.calls) > 0


async def test_an_unexpected_error_is_a_500_problem_logged_once(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi],
    records: _Records,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: SegmentDB, seven: str) -> None:
        raise RuntimeError(f"a bug while reading segment {seven}")

    _, session, _ = service
    monkeypatch.setattr(SegmentDB, "segment", broken)
    headers = auth(**{"X-Request-Id": "boom-1"})
    async with session.get("/v1/segments/1380571", headers=headers) as resp:
        assert resp.status == 500
        problem = await problem_of(resp)
    assert problem["type"] == "/docs#problem-internal" and "boom-1" in problem["detail"]
    assert "a bug" not in problem["detail"]  # the details are in the log only
    logged = [r for r in records.records if r.name == "lookup.service" and r.exc_info]
    assert len(logged) == 1 and "request_id=boom-1" in logged[0].getMessage()


# -- read timeouts ---------------------------------------------------------------------------


async def test_half_sent_requests_are_closed_and_healthz_still_answers(
    records: _Records,
) -> None:
    """300 connections that send half a request line (slowloris): each is closed after
    the read timeout, quietly; meanwhile /healthz answers."""
    api = FakeOrderApi.from_orders({})
    settings = make_settings(service_read_timeout=1.0)
    async with running(settings, api) as (url, session):
        host, port = host_port(url)
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for i in range(300):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow-" if i % 2 else b"GET /hea")
            conns.append((reader, writer))
        await asyncio.gather(*(w.drain() for _, w in conns))
        async with session.get("/healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"

        async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
            return await reader.read()  # b"" at EOF: the server hung up

        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.wait_for(
            asyncio.gather(*(closed_by_server(r) for r, _ in conns)), 30
        )
        assert all(a == b"" for a in answers)  # closed without an answer
        assert loop.time() - started < 25  # closed by the read timeout, not by wait_for
        for _, writer in conns:
            writer.close()
        async with session.get("/healthz") as resp:
            assert resp.status == 200
    assert "Traceback" not in records.text
    assert not [r for r in records.records if r.levelno >= logging.WARNING]


async def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closes() -> None:
    api = FakeOrderApi.from_orders({})
    async with running(make_settings(service_read_timeout=0.5), api) as (url, _):
        reader, writer = await asyncio.open_connection(*host_port(url))
        writer.write(
            b"POST /v1/lookups HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
            + TOKENS[0].encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{"mask":'
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 20)  # until the server closes
        writer.close()
        await writer.wait_closed()
    head, _, text = data.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408"), head
    assert json.loads(text)["type"] == "/docs#problem-request-timeout"
    assert api.calls == []


async def test_a_broken_chunked_body_is_a_408_within_the_read_timeout(records: _Records) -> None:
    """aiohttp's parser stalls on a bad chunk size after the headers: the body read
    timeout ends the request (no hang, no traceback)."""
    api = FakeOrderApi.from_orders({})
    async with running(make_settings(service_read_timeout=0.5), api) as (url, _):
        reader, writer = await asyncio.open_connection(*host_port(url))
        writer.write(
            b"POST /v1/lookups HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
            + TOKENS[0].encode()
            + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            + b"Expect: 100-continue\r\n\r\n"
        )
        await writer.drain()
        # The 100 Continue says the request reached the app: the broken chunk comes after.
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        writer.write(b"2\r\n{}\r\nzz\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        await writer.wait_closed()
    assert data.startswith(b"HTTP/1.1 408"), data
    assert b"application/problem+json" in data
    assert api.calls == []
    assert "Traceback" not in records.text


# -- queue cap and fairness ------------------------------------------------------------------


async def test_a_caller_over_its_queue_cap_gets_429_with_retry_after_others_do_not() -> None:
    gate = asyncio.Event()
    arrived: list[asyncio.Event] = [asyncio.Event() for _ in range(5)]  # the 4th arrives after the gate opens
    waiting = 0

    async def held(phone: str) -> bool:
        nonlocal waiting
        waiting += 1
        arrived[waiting].set()  # the n-th lookup is at the order API
        await gate.wait()
        return False

    masks = [{"mask": f"1385715{n:04d}"} for n in range(3)]  # one candidate each
    settings = make_settings(service_max_queued=2, cache_ttl=0)
    api = FakeOrderApi(held)
    async with running(settings, api) as (_, session):
        first = [
            asyncio.create_task(session.post("/v1/lookups", json=m, headers=auth()))
            for m in masks[:2]
        ]
        await asyncio.wait_for(arrived[2].wait(), 10)  # both lookups are at the order API
        async with session.post("/v1/lookups", json=masks[2], headers=auth()) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            problem = await problem_of(resp)
        assert problem["type"] == "/docs#problem-too-many-queued"
        assert f"{caller_name(TOKENS[0].encode())} has 2 lookups" in problem["detail"]
        batch = {"lookups": masks}
        async with session.post("/v1/lookups/batch", json=batch, headers=auth()) as resp:
            assert resp.status == 429  # a batch needs room too
        other = asyncio.create_task(
            session.post("/v1/lookups", json=masks[2], headers=auth(TOKENS[1]))
        )
        await asyncio.wait_for(arrived[3].wait(), 10)  # the other caller's one was let in
        gate.set()
        for task in [*first, other]:
            async with await task as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "not_found"
        async with session.post("/v1/lookups", json=masks[2], headers=auth()) as resp:
            assert resp.status == 200  # room again
        async with session.get("/metrics", headers=auth()) as resp:
            text = await resp.text()
    assert 'lookup_lookups_refused_total{surface="service"} 1.0' in text
    assert 'lookup_lookups_refused_total{surface="service_batch"} 1.0' in text


async def test_one_callers_big_batch_does_not_starve_another_callers_lookup() -> None:
    """Caller 1 sends 40 lookups of 100 candidates each; caller 2's one lookup (same size)
    finishes while most of the batch is still to do."""

    under_way = asyncio.Event()
    calls = 0

    async def slow(phone: str) -> bool:
        nonlocal calls
        calls += 1
        if calls == 50:
            under_way.set()
        await asyncio.sleep(0.002)  # an order API's latency
        return False

    settings = make_settings(max_in_flight=8, cache_ttl=0, service_max_batch=100)
    api = FakeOrderApi(slow)
    big = {"lookups": [{"mask": f"1385715{n:02d}**"} for n in range(40)]}  # 100 each
    async with running(settings, api) as (_, session):
        batch = asyncio.create_task(session.post("/v1/lookups/batch", json=big, headers=auth()))
        await asyncio.wait_for(under_way.wait(), 10)  # the batch is under way
        mine = {"mask": "138571599**"}
        async with session.post("/v1/lookups", json=mine, headers=auth(TOKENS[1])) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "not_found"
        checks_when_done = len(api.calls)
        async with await batch as resp:
            assert resp.status == 200
            results = (await resp.json())["results"]
    assert [r["status"] for r in results] == ["not_found"] * 40
    total = 41 * 100
    assert checks_when_done < total / 2, (checks_when_done, total)


# -- requests aiohttp cannot parse, encodings, Authorization variants -------------------------


async def _exchange(url: str, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection(*host_port(url))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


async def test_requests_that_are_not_http_are_400_problems_without_their_bytes(
    records: _Records,
) -> None:
    """aiohttp answers these itself (text/plain quoting the bytes, a traceback at ERROR):
    here a bad-request problem naming the reason only, and one DEBUG line."""
    token, body = TOKENS[0].encode(), json.dumps(CITY_HIT).encode()
    start = b"POST /v1/lookups HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    cases = {
        "longer than 8190": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + token * 600
        + b"\r\n\r\n",
        "Too many headers": b"GET /healthz HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, token) for i in range(200)) + b"\r\n",
        "chunk size": start + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + b"\r\n",
        "Duplicate Content-Length": start + b"Content-Length: %d\r\nContent-Length: 3\r\n\r\n"
        % len(body) + body,
        "Transfer-Encoding can't be present": start + b"Content-Length: 4\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n" + body,
        "Data after": start + b"Connection: close\r\nContent-Length: 5\r\n\r\n"
        + b'{"mask": "' + PHONE.encode() + b'", "token": "' + token + b'"}',
        "Invalid method": b"F(O /healthz HTTP/1.1\r\nHost: t\r\nX-T: " + token + b"\r\n\r\n",
        "Invalid header token": b"GET /healthz HTTP/1.1\r\nHost: t\r\nAuthorization"
        + token + b"\r\n\r\n",
        "Unexpected whitespace": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: a\r\n"
        + b" " + token + b"\r\n\r\n",
        "Invalid char in url": b"GET /v1/" + PHONE.encode() + b"\x00 HTTP/1.1\r\nHost: t\r\n\r\n",
    }  # fmt: skip
    api = FakeOrderApi.from_orders({PHONE: 1})
    async with running(make_settings(), api) as (url, session):
        for reason, data in cases.items():
            status, headers, answer = _split(await _exchange(url, data))
            assert status == 400, (reason, answer)
            assert headers["content-type"].startswith("application/problem+json"), reason
            problem = json.loads(answer)
            assert problem["type"] == "/docs#problem-bad-request", reason
            assert reason in problem["detail"], (reason, problem["detail"])
            assert problem["instance"] == headers["x-request-id"] and HEX32.fullmatch(
                problem["instance"]
            )
            assert TOKENS[0] not in answer.decode() and PHONE not in answer.decode(), reason
            assert "b'" not in problem["detail"], problem["detail"]
        async with session.get("/healthz") as resp:  # the service is none the worse
            assert resp.status == 200
    assert api.calls == []
    assert "Traceback" not in records.text
    assert not [r for r in records.records if r.levelno >= logging.WARNING]
    assert TOKENS[0] not in records.text and PHONE not in records.text


async def test_a_content_encoding_the_service_does_not_decode_is_415(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi], records: _Records
) -> None:
    url, session, api = service
    payload = json.dumps(CITY_HIT).encode()
    for coding in ("bogus", "compress", "gzip, gzip"):
        headers = auth(**{"Content-Type": "application/json", "Content-Encoding": coding})
        async with session.post("/v1/lookups", data=payload, headers=headers) as resp:
            assert resp.status == 415, coding
            problem = await problem_of(resp)
        assert "Content-Encoding" in problem["detail"]
    assert api.calls == []
    # br without the Brotli package: aiohttp's parser refuses it before the app
    raw = (
        b"POST /v1/lookups HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        + TOKENS[0].encode()
        + b"\r\nContent-Type: application/json\r\nContent-Encoding: br\r\n"
        + b"Content-Length: 4\r\n\r\nxxxx"
    )
    status, headers, _ = _split(await _exchange(url, raw))
    assert status in (400, 415) and headers["content-type"].startswith("application/problem")
    headers = auth(**{"Content-Type": "application/json", "Content-Encoding": "gzip"})
    async with session.post("/v1/lookups", data=gzip.compress(payload), headers=headers) as resp:
        assert resp.status == 200  # gzip is decoded
    async with session.post("/v1/lookups", data=gzip.compress(b" " * 5_000_000 + payload),
                            headers=headers) as resp:  # fmt: skip
        assert resp.status == 413  # the size limit is on the decoded body
        await problem_of(resp)
    assert "Traceback" not in records.text


async def test_authorization_header_variants(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi],
) -> None:
    url, session, _ = service
    good, bad = f"Bearer {TOKENS[0]}", "Bearer not-a-token-of-this-service"
    for value in (f"bearer {TOKENS[0]}", f"BEARER   {TOKENS[0]}  "):
        async with session.get("/v1/segments/1380571", headers={"Authorization": value}) as r:
            assert r.status == 200, value
    for value in ("Basic dXNlcjpwYXNz", f"Bearer\t{TOKENS[0]}", "Bearer", TOKENS[0]):
        async with session.get("/v1/segments/1380571", headers={"Authorization": value}) as r:
            assert r.status == 401, value
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="lookup"'
            await problem_of(r)
    for first, second in ((good, bad), (bad, good), (good, good)):
        raw = (
            f"GET /v1/segments/1380571 HTTP/1.1\r\nHost: t\r\nAuthorization: {first}\r\n"
            f"Authorization: {second}\r\n\r\n"
        ).encode()
        status, headers, answer = _split(await _exchange(url, raw))
        assert status == 400, (first, second)
        problem = json.loads(answer)
        assert "send exactly one" in problem["detail"]
        assert TOKENS[0] not in answer.decode()
        assert headers.get("connection") == "close"


async def test_the_batch_endpoint_runs_through_run_batch(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    import lookup.service.app

    calls: list[int] = []
    real = lookup.service.app.run_batch

    async def spy(rows: list[Any], **kw: Any) -> Any:
        calls.append(len(rows))
        return await real(rows, **kw)

    monkeypatch.setattr(lookup.service.app, "run_batch", spy)
    _, session, _ = service
    batch = {"lookups": [CITY_HIT, {"mask": "bad"}, CITY_HIT]}
    async with session.post("/v1/lookups/batch", json=batch, headers=auth()) as resp:
        assert resp.status == 200
        statuses = [r["status"] for r in (await resp.json())["results"]]
    assert calls == [3] and statuses == ["matched", "invalid", "matched"]


async def test_a_paced_checker_gives_another_caller_its_share_during_a_100_lookup_batch() -> None:
    """At a paced rate: caller 1's batch of 100 lookups of 100 checks
    each (25 s of work at 400/s) keeps the checker busy; caller 2's lookup (100 checks,
    0.25 s alone) gets about half the checks while it runs and answers well within a 4 s
    client timeout."""
    batch_started = asyncio.Event()
    seen: list[str] = []

    async def check(phone: str) -> bool:
        seen.append(phone)
        if len(seen) == 200:
            batch_started.set()
        return False

    settings = make_settings(rate=400, max_in_flight=16, cache_ttl=0, service_max_batch=100)
    api = FakeOrderApi(check)
    big = {"lookups": [{"mask": f"1385715{n:02d}**"} for n in range(100)]}  # 100 checks each
    async with running(settings, api) as (_, session):
        batch = asyncio.create_task(session.post("/v1/lookups/batch", json=big, headers=auth()))
        await asyncio.wait_for(batch_started.wait(), 10)
        before = len(seen)
        timeout = aiohttp.ClientTimeout(total=4)
        mine = {"mask": "138057199**"}  # 100 candidates
        async with session.post(
            "/v1/lookups", json=mine, headers=auth(TOKENS[1]), timeout=timeout
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["checks_sent"] == 100
        during = seen[before:]
        assert not batch.done()  # the batch was under way all along
        batch.cancel()  # the client goes away: the service cancels the rest of the batch
        with contextlib.suppress(asyncio.CancelledError):
            await batch
    theirs = [p for p in during if not p.startswith("1380571")]
    assert len(during) - len(theirs) == 100
    assert len(theirs) < 2 * 100, (len(theirs), "caller 2 got less than a third")


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_body_that_is_not_its_content_encoding_is_a_400_on_every_route_and_no_traceback(
    service: tuple[str, aiohttp.ClientSession, FakeOrderApi], records: _Records, coding: str
) -> None:
    _url, session, api = service
    whole = gzip.compress(json.dumps(CITY_HIT).encode())
    bodies = {"not compressed": b'{"mask": "138****2046"}', "bad header": b"\x1f\x8b\x08garbage",
              "cut short": whole[: len(whole) // 2]}  # fmt: skip
    routes = ("/v1/lookups", "/v1/lookups/stream", "/v1/lookups/batch", "/v1/reveal", "/v1/jobs")
    headers = auth(**{"Content-Type": "application/json", "Content-Encoding": coding})
    for route in routes:
        for what, body in bodies.items():
            if coding == "gzip" and what == "cut short":
                continue  # gzip cut mid-stream: aiohttp hands over what it inflated
            async with session.post(route, data=body, headers=headers) as resp:
                assert resp.status == 400, (route, what)
                problem = await problem_of(resp)
            assert problem["detail"] == (
                f"the request body is not valid {coding}; send it uncompressed, "
                "or compress the whole body"
            ), (route, what)
    async with session.get("/healthz") as resp:  # the service is none the worse
        assert resp.status == 200
    assert api.calls == []
    assert "Traceback" not in records.text
    assert not [r for r in records.records if r.levelno >= logging.ERROR]
