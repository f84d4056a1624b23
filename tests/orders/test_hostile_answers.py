"""A table of hostile inputs for the order sources: HTTP answers (from a real aiohttp server on
127.0.0.1), batch answers, plug-in answers and configured addresses.

Each input has the one handling it must get: a definite outcome (``ok``), a failed check
(``transient``), an unexpected answer (``fatal``) or bad input (``config``). Anything else,
a "no orders" for a broken answer, another exception, a ``RecursionError``, is mishandled.

The HTTP answers run through both strict parsers (the standard library's, and orjson's when
the ``[fast]`` extra installed it); the two must agree on every body, value and refusal.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from lookup.domain import jsonfast
from lookup.domain.errors import ConfigError, FatalApiError, TransientApiError
from lookup.domain.models import CheckOutcome
from lookup.orders import FakeOrderApi, HttpOrderApi
from lookup.orders import http as http_module
from lookup.orders.httpbody import parse_json_orjson, parse_json_stdlib
from lookup.orders.postgres import PostgresOrderApi

PHONE = "13812341234"
OTHER = "13900001111"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Answer:
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    status: int = 200
    chunked: bool = False


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def ok(has: bool, count: int | None = None) -> tuple[str, bool, int | None]:
    return ("ok", has, count)


FATAL, TRANSIENT = "fatal", "transient"

# -- single answers: the body of GET /a/<case>?phone=... -------------------------------------------

ANSWERS: dict[str, tuple[Answer, Any]] = {
    # plain answers that must still work
    "count 0": (Answer(b'{"total": 0}'), ok(False, 0)),
    "count 3": (Answer(b'{"total": 3}'), ok(True, 3)),
    "true": (Answer(b'{"total": true}'), ok(True)),
    "false": (Answer(b'{"total": false}'), ok(False)),
    "2.0": (Answer(b'{"total": 2.0}'), ok(True, 2)),
    "1e3": (Answer(b'{"total": 1e3}'), ok(True, 1000)),
    "problem+json": (Answer(b'{"total": 1}', {"Content-Type": "application/problem+json"}),
                     ok(True, 1)),
    "charset": (Answer(b'{"total": 1}', {"Content-Type": "application/json; charset=utf-8"}),
                ok(True, 1)),
    "gzip": (Answer(gz(b'{"total": 1}'), {**JSON, "Content-Encoding": "gzip"}), ok(True, 1)),
    "deflate": (Answer(zlib.compress(b'{"total": 1}'), {**JSON, "Content-Encoding": "deflate"}),
                ok(True, 1)),
    "raw deflate": (Answer(zlib.compress(b'{"total": 1}', wbits=-15) if False else
                           zlib.compressobj(wbits=-15).compress(b'{"total": 1}')
                           + zlib.compressobj(wbits=-15).flush(),
                           {**JSON, "Content-Encoding": "deflate"}), FATAL),
    "chunked": (Answer(b'{"total": 1}', chunked=True), ok(True, 1)),
    # counts that are not counts
    "1e308": (Answer(b'{"total": 1e308}'), FATAL),
    "-1": (Answer(b'{"total": -1}'), FATAL),
    "-0.5": (Answer(b'{"total": -0.5}'), FATAL),
    "1.5": (Answer(b'{"total": 1.5}'), FATAL),
    "over the bound": (Answer(b'{"total": 1000000001}'), FATAL),
    "NaN": (Answer(b'{"total": NaN}'), FATAL),
    "Infinity": (Answer(b'{"total": Infinity}'), FATAL),
    "-Infinity": (Answer(b'{"total": -Infinity}'), FATAL),
    "string": (Answer(b'{"total": "1"}'), FATAL),
    "null": (Answer(b'{"total": null}'), FATAL),
    "list": (Answer(b'{"total": [1]}'), FATAL),
    "object": (Answer(b'{"total": {"n": 1}}'), FATAL),
    "5000 digits": (Answer(b'{"total": ' + b"1" * 5000 + b"}"), FATAL),
    # JSON that is not one answer
    "duplicate keys": (Answer(b'{"total": 1, "total": 0}'), FATAL),
    "duplicate same": (Answer(b'{"total": 0, "total": 0}'), FATAL),
    "duplicate escaped": (Answer(b'{"total": 0, "tot\\u0061l": 1}'), FATAL),
    "duplicate nested": (Answer(b'{"total": 0, "x": {"a": 1, "a": 2}}'), FATAL),
    "deep list": (Answer(b"[" * 100_000 + b"]" * 100_000), FATAL),
    "deep object": (Answer(b'{"a":' * 20_000 + b"1" + b"}" * 20_000), FATAL),
    "deep unclosed": (Answer(b"[" * 200_000), FATAL),
    "deep then total": (Answer(b'{"x":' + b"[" * 70 + b"]" * 70 + b', "total": 1}'), FATAL),
    "brackets in strings": (Answer(b'{"x": "' + b"[" * 100 + b'", "total": 1}'), ok(True, 1)),
    "empty body": (Answer(b""), FATAL),
    "json null": (Answer(b"null"), FATAL),
    "json list": (Answer(b"[]"), FATAL),
    "json number": (Answer(b"1"), FATAL),
    "not json": (Answer(b"<html>orders: 1</html>"), FATAL),
    "bad utf-8": (Answer(b'{"total": 1, "x": "\xff\xfe"}'), FATAL),
    "missing field": (Answer(b'{"count": 1}'), FATAL),
    # content types
    "text/html": (Answer(b'{"total": 1}', {"Content-Type": "text/html"}), FATAL),
    "no type": (Answer(b'{"total": 1}', {}), FATAL),
    "octet-stream": (Answer(b'{"total": 1}', {"Content-Type": "application/octet-stream"}), FATAL),
    "text/json-ish": (Answer(b'{"total": 1}', {"Content-Type": "text/plain+json"}), FATAL),
    # sizes and encodings
    "2 MiB": (Answer(b'{"total": 0, "pad": "' + b" " * (2 << 20) + b'"}'), FATAL),
    "2 MiB chunked": (Answer(b'{"total": 0, "pad": "' + b" " * (2 << 20) + b'"}', chunked=True),
                      FATAL),
    "gzip bomb": (Answer(gz(b'{"total": 0, "pad": "' + b" " * (64 << 20) + b'"}'),
                         {**JSON, "Content-Encoding": "gzip"}), FATAL),
    "gzip bomb chunked": (Answer(gz(b" " * (64 << 20)), {**JSON, "Content-Encoding": "gzip"},
                                 chunked=True), FATAL),
    "deflate bomb": (Answer(zlib.compress(b" " * (64 << 20), 9),
                            {**JSON, "Content-Encoding": "deflate"}), FATAL),
    "corrupt gzip": (Answer(b"\x1f\x8b\x08\x00garbage", {**JSON, "Content-Encoding": "gzip"}),
                     FATAL),
    "cut gzip": (Answer(gz(b'{"total": 1}')[:-6], {**JSON, "Content-Encoding": "gzip"}), FATAL),
    "plain as gzip": (Answer(b'{"total": 1}', {**JSON, "Content-Encoding": "gzip"}), FATAL),
    "br": (Answer(b'{"total": 1}', {**JSON, "Content-Encoding": "br"}), FATAL),
    "unknown coding": (Answer(b'{"total": 1}', {**JSON, "Content-Encoding": "x-rot13"}), FATAL),
    # statuses
    "204": (Answer(b"", {}, status=204), FATAL),
    "404 html": (Answer(b"<html>nope</html>", {"Content-Type": "text/html"}, status=404), FATAL),
    "500 huge": (Answer(b" " * (4 << 20), {}, status=500), TRANSIENT),
    "503 no retry-after": (Answer(b"", {}, status=503), TRANSIENT),
    "429": (Answer(b"", {"Retry-After": "1e308"}, status=429), TRANSIENT),
    "302 far": (Answer(b"", {"Location": "http://192.0.2.1/steal"}, status=302), FATAL),
    "307 far https": (Answer(b"", {"Location": "https://127.0.0.1/a"}, status=307), FATAL),
    "302 bad location": (Answer(b"", {"Location": "http://[::1/x"}, status=302), FATAL),
    "302 loop": (Answer(b"", {"Location": "/a/302 loop"}, status=302), FATAL),
    "301 scheme-relative far": (Answer(b"", {"Location": "//example.invalid/x"}, status=301),
                                FATAL),
}  # fmt: skip
ANSWERS.pop("raw deflate")  # a raw-deflate body is accepted (servers send it): see below


def _handler(table: dict[str, tuple[Answer, Any]]) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        answer = table[request.match_info["case"]][0]
        if answer.chunked:
            resp = web.StreamResponse(status=answer.status, headers=answer.headers)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(answer.body), 65536):
                await resp.write(answer.body[i : i + 65536])
            await resp.write_eof()
            return resp
        return web.Response(body=answer.body, status=answer.status, headers=answer.headers)

    return handle


PARSERS = {"stdlib": parse_json_stdlib, "orjson": parse_json_orjson}


@pytest.fixture(params=list(PARSERS))
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The HTTP source parses answers with each strict parser in turn."""
    name: str = request.param
    if name == "orjson" and not jsonfast.ORJSON:
        pytest.skip("orjson is not installed (the [fast] extra)")
    monkeypatch.setattr(http_module, "parse_json", PARSERS[name])
    return name


@pytest.fixture
async def server(parser: str) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/a/{case}", _handler(ANSWERS))
    app.router.add_post("/batch/{case}", _batch_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _kind(outcome: Any) -> Any:
    if isinstance(outcome, CheckOutcome):
        return ok(outcome.has_orders, outcome.order_count)
    if isinstance(outcome, FatalApiError):
        return FATAL
    if isinstance(outcome, TransientApiError):
        return TRANSIENT
    return f"mishandled: {type(outcome).__name__}: {outcome}"


async def _ask(api: Any, phone: str = PHONE) -> Any:
    try:
        return await api.check(phone)
    except (FatalApiError, TransientApiError) as exc:
        return exc


@pytest.mark.parametrize("case", list(ANSWERS))
async def test_http_answers(server: str, case: str) -> None:
    expected = ANSWERS[case][1]
    async with HttpOrderApi(f"{server}/a/{case}?phone={{phone}}") as api:
        got = _kind(await _ask(api))
    assert got == expected, case


async def test_a_raw_deflate_body_is_read_too(server: str) -> None:
    deflater = zlib.compressobj(wbits=-15)
    body = deflater.compress(b'{"total": 1}') + deflater.flush()
    ANSWERS["raw deflate"] = (Answer(body, {**JSON, "Content-Encoding": "deflate"}), ok(True, 1))
    try:
        async with HttpOrderApi(f"{server}/a/raw deflate?phone={{phone}}") as api:
            assert _kind(await _ask(api)) == ok(True, 1)
    finally:
        ANSWERS.pop("raw deflate")


# -- batch answers: POST /batch/<case> ----------------------------------------------------------

BATCHES: dict[str, tuple[dict[str, Any] | bytes, Any]] = {
    "fine": ({"results": {PHONE: 1, OTHER: 0}}, "ok"),
    "missing": ({"results": {PHONE: 1}}, FATAL),
    "extra": ({"results": {PHONE: 1, OTHER: 0, "13700000000": 1}}, FATAL),
    "negative": ({"results": {PHONE: -1, OTHER: 0}}, FATAL),
    "float": ({"results": {PHONE: 0.5, OTHER: 0}}, FATAL),
    "nested": ({"results": {PHONE: {"total": 1}, OTHER: 0}}, FATAL),
    "results list": ({"results": [1, 0]}, FATAL),
    "no results": ({"total": 1}, FATAL),
    "duplicate": (b'{"results": {"13812341234": 1, "13812341234": 0, "13900001111": 0}}', FATAL),
}


async def _batch_handler(request: web.Request) -> web.Response:
    body = BATCHES[request.match_info["case"]][0]
    raw = body if isinstance(body, bytes) else __import__("json").dumps(body).encode()
    return web.Response(body=raw, headers=JSON)


@pytest.mark.parametrize("case", list(BATCHES))
async def test_http_batch_answers(server: str, case: str) -> None:
    expected = BATCHES[case][1]
    api = HttpOrderApi(f"{server}/a/x?phone={{phone}}", batch_url=f"{server}/batch/{case}")
    async with api:
        try:
            got: Any = await api.check_many([PHONE, OTHER])
            kind: Any = "ok" if set(got) == {PHONE, OTHER} else f"mishandled: {got}"
        except (FatalApiError, TransientApiError) as exc:
            kind = _kind(exc)
    assert kind == expected, case


# -- plug-in answers (the same rule through outcome_from) ----------------------------------------

PLUGIN_VALUES: list[tuple[Any, Any]] = [
    (True, ok(True)),
    (False, ok(False)),
    (0, ok(False, 0)),
    (7, ok(True, 7)),
    (2.0, ok(True, 2)),
    (-1, FATAL),
    (-5, FATAL),
    (1.5, FATAL),
    (1e308, FATAL),
    (math.nan, FATAL),
    (math.inf, FATAL),
    (10**12, FATAL),
    ("1", FATAL),
    (None, FATAL),
    (b"1", FATAL),
    ([1], FATAL),
    ({"total": 1}, FATAL),
    (CheckOutcome.model_construct(phone=PHONE, has_orders=True, order_count=0), FATAL),
    (CheckOutcome.model_construct(phone=PHONE, has_orders=False, order_count=3), FATAL),
    (CheckOutcome.model_construct(phone=PHONE, has_orders=False, order_count=-5), FATAL),
    (CheckOutcome.model_construct(phone=PHONE, has_orders=1, order_count=None), FATAL),
    (CheckOutcome.model_construct(phone=PHONE, has_orders=True, order_count=True), FATAL),
    (CheckOutcome.model_construct(phone=OTHER, has_orders=True), FATAL),
    (CheckOutcome(phone=PHONE, has_orders=True, order_count=4), ok(True, 4)),
]


@pytest.mark.parametrize(("value", "expected"), PLUGIN_VALUES, ids=[repr(v)[:40] for v, _ in PLUGIN_VALUES])
async def test_plugin_answers(value: Any, expected: Any) -> None:
    api = FakeOrderApi(lambda phone: value)
    assert _kind(await _ask(api)) == expected


# -- addresses -----------------------------------------------------------------------------------

ADDRESSES = [
    "http://[::1/{phone}",
    "http://127.0.0.1:port/{phone}",
    "http://127.0.0.1:99999/{phone}",
    "http://127.0.0.1:-1/{phone}",
    "ftp://127.0.0.1/{phone}",
    "http:///{phone}",
    "127.0.0.1:8080/{phone}",
    "http://127.0.0.1/no-placeholder",
    "",
    "javascript:alert(1)//{phone}",
    "http://user:pw@[::1/{phone}",
]


@pytest.mark.parametrize("url", ADDRESSES)
def test_bad_http_addresses_are_bad_input(url: str) -> None:
    with pytest.raises(ConfigError):
        HttpOrderApi(url)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@127.0.0.1:port/db",
        "postgresql://u@127.0.0.1:70000/db",
        "postgres://u:secret@[::1/db",
        "mysql://u@127.0.0.1/db",
    ],
)
def test_bad_postgres_addresses_are_bad_input(dsn: str) -> None:
    pytest.importorskip("asyncpg")
    with pytest.raises(ConfigError) as info:
        PostgresOrderApi(dsn)
    assert "secret" not in str(info.value)


# -- the two strict parsers agree ----------------------------------------------------------------


def _parsed(parse: Any, body: bytes) -> str:
    """What a parser made of ``body``: the value's repr (1 and 1.0 differ) or the error."""
    try:
        return "value " + repr(parse(body))
    except ValueError as exc:
        return f"{type(exc).__name__}: {exc}"


HOSTILE_BODIES = [answer.body for answer, _ in ANSWERS.values()] + [
    body if isinstance(body, bytes) else __import__("json").dumps(body).encode()
    for body, _ in BATCHES.values()
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=[*ANSWERS, *(f"batch {b}" for b in BATCHES)])
def test_both_parsers_agree_on_every_hostile_body(body: bytes) -> None:
    if not jsonfast.ORJSON:
        pytest.skip("orjson is not installed (the [fast] extra)")
    assert _parsed(parse_json_orjson, body) == _parsed(parse_json_stdlib, body)


async def test_the_source_parses_with_the_parser_the_fixture_gives(server: str, parser: str) -> None:
    seen: list[bytes] = []
    chosen = PARSERS[parser]

    def spy(body: bytes) -> Any:
        seen.append(body)
        return chosen(body)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http_module, "parse_json", spy)
        async with HttpOrderApi(f"{server}/a/count 3?phone={{phone}}") as api:
            assert _kind(await _ask(api)) == ok(True, 3)
    assert seen == [b'{"total": 3}']
