"""HttpOrderApi: status mapping, parsing, timeouts, lifecycle, privacy (aioresponses + loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aioresponses import CallbackResult, aioresponses
from yarl import URL

from lookup.domain import jsonfast
from lookup.domain.errors import ConfigError, FatalApiError, TransientApiError
from lookup.domain.models import CheckOutcome
from lookup.orders import DEFAULT_TIMEOUTS, HttpOrderApi, Timeouts, supports_batch
from lookup.orders import http as http_module
from lookup.orders.http import parse_retry_after

BASE = "http://127.0.0.1:8080"
TEMPLATE = BASE + "/orders?phone={phone}"
PHONE = "13812341234"
MASKED = "138****1234"
URL_1 = TEMPLATE.replace("{phone}", PHONE)
POST_URL = BASE + "/orders"
BATCH_URL = BASE + "/orders/batch"
TOKEN = "Bearer s3cr3t-t0ken-value"


def make_api(**kwargs: Any) -> HttpOrderApi:
    kwargs.setdefault("headers", {"Authorization": TOKEN})
    return HttpOrderApi(kwargs.pop("url", TEMPLATE), **kwargs)


@pytest.fixture
async def api() -> AsyncIterator[HttpOrderApi]:
    async with make_api() as opened:
        yield opened


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 does not pass the ``stream_writer`` aiohttp 3.14 requires.

    Known and open upstream: https://github.com/pnuckowski/aioresponses/issues/289.
    The mock builds responses of requests already sent (``writer=None``), which
    only read ``stream_writer.output_size``.
    """

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse).parameters


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    if _NEEDS_STREAM_WRITER:
        monkeypatch.setattr("aioresponses.core.ClientResponse", _CompatResponse)
    with aioresponses() as m:
        yield m


def recorded(m: aioresponses, method: str, url: str) -> list[Any]:
    calls: list[Any] = m.requests[(method, URL(url))]
    return calls


# -- success paths ---------------------------------------------------------------


async def test_get_fills_the_template_and_reads_total(api: HttpOrderApi, mocked: Any) -> None:
    mocked.get(URL_1, payload={"phone": PHONE, "total": 3})
    outcome = await api.check(PHONE)
    assert outcome == CheckOutcome(phone=PHONE, has_orders=True, order_count=3)
    (call,) = recorded(mocked, "GET", URL_1)
    assert call.kwargs["json"] is None
    assert call.kwargs["headers"]["Authorization"] == TOKEN


async def test_total_zero_is_a_definite_no(api: HttpOrderApi, mocked: Any) -> None:
    mocked.get(URL_1, payload={"total": 0})
    outcome = await api.check(PHONE)
    assert outcome.has_orders is False
    assert outcome.order_count == 0


async def test_post_sends_the_phone_in_a_json_body(mocked: Any) -> None:
    mocked.post(POST_URL, payload={"total": 1})
    async with make_api(url=POST_URL, method="post") as api:
        outcome = await api.check(PHONE)
    assert outcome.has_orders
    (call,) = recorded(mocked, "POST", POST_URL)
    assert call.kwargs["json"] == {"phone": PHONE}


@pytest.mark.parametrize(
    ("payload", "has_orders", "count"),
    [
        ({"data": {"total": 2}}, True, 2),
        ({"data": {"total": 2.0}}, True, 2),
        ({"data": {"total": 0}}, False, 0),
    ],
)
async def test_dotted_hit_field_number(
    mocked: Any, payload: dict[str, Any], has_orders: bool, count: int
) -> None:
    mocked.get(URL_1, payload=payload)
    async with make_api(hit_field="data.total") as api:
        outcome = await api.check(PHONE)
    assert (outcome.has_orders, outcome.order_count) == (has_orders, count)


@pytest.mark.parametrize("flag", [True, False])
async def test_dotted_hit_field_bool(mocked: Any, flag: bool) -> None:
    mocked.get(URL_1, payload={"result": {"has_orders": flag}})
    async with make_api(hit_field="result.has_orders") as api:
        outcome = await api.check(PHONE)
    assert outcome == CheckOutcome(phone=PHONE, has_orders=flag, order_count=None)


# -- status mapping --------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 507])
async def test_retryable_statuses_are_transient(
    api: HttpOrderApi, mocked: Any, status: int
) -> None:
    mocked.get(URL_1, status=status, body="busy")
    with pytest.raises(TransientApiError) as info:
        await api.check(PHONE)
    assert info.value.status == status
    assert info.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "check the method"),
        (401, "check the token (LOOKUP_API_TOKEN) or headers (--header)"),
        (403, "check the token (LOOKUP_API_TOKEN) or headers (--header)"),
        (404, "check the URL template"),
        (418, "check the API configuration"),
    ],
)
async def test_client_errors_are_fatal_and_say_what_to_check(
    api: HttpOrderApi, mocked: Any, status: int, hint: str
) -> None:
    mocked.get(URL_1, status=status, body="no")
    with pytest.raises(FatalApiError) as info:
        await api.check(PHONE)
    assert info.value.status == status
    assert hint in str(info.value)


async def test_unexpected_status_is_fatal(api: HttpOrderApi, mocked: Any) -> None:
    mocked.get(URL_1, status=304)
    with pytest.raises(FatalApiError) as info:
        await api.check(PHONE)
    assert info.value.status == 304


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("1.5", 1.5), ("-3", 0.0)])
async def test_retry_after_in_seconds(
    api: HttpOrderApi, mocked: Any, header: str, expected: float
) -> None:
    mocked.get(URL_1, status=429, headers={"Retry-After": header})
    with pytest.raises(TransientApiError) as info:
        await api.check(PHONE)
    assert info.value.retry_after == expected


async def test_retry_after_as_http_date(api: HttpOrderApi, mocked: Any) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    mocked.get(URL_1, status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    with pytest.raises(TransientApiError) as info:
        await api.check(PHONE)
    assert info.value.status == 503
    assert info.value.retry_after is not None
    assert 25 <= info.value.retry_after <= 30


def test_parse_retry_after_forms() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 2.5 ", now=now) == 2.5
    assert parse_retry_after("Wed, 01 May 2024 12:00:42 GMT", now=now) == 42.0
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0  # never negative
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("nan", now=now) is None
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after(None, now=now) is None


# -- transport failures ----------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        aiohttp.ServerTimeoutError("read timeout"),
        aiohttp.ConnectionTimeoutError("connect timeout"),
        aiohttp.SocketTimeoutError("read timeout"),
        aiohttp.ClientConnectionError("connection reset"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("truncated"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_timeouts_and_connection_errors_are_transient(
    api: HttpOrderApi, mocked: Any, exc: Exception
) -> None:
    mocked.get(URL_1, exception=exc)
    with pytest.raises(TransientApiError) as info:
        await api.check(PHONE)
    assert info.value.__cause__ is exc
    assert info.value.status is None
    assert MASKED in str(info.value)


async def test_other_client_errors_are_fatal(api: HttpOrderApi, mocked: Any) -> None:
    exc = aiohttp.InvalidURL(URL_1)
    mocked.get(URL_1, exception=exc)
    with pytest.raises(FatalApiError) as info:
        await api.check(PHONE)
    assert info.value.__cause__ is exc
    assert MASKED in str(info.value) and PHONE not in str(info.value)


async def _serve(handler: Any) -> AsyncIterator[str]:
    """A real aiohttp server on loopback answering ``/orders`` with ``handler``: its URL
    template (aioresponses runs none of aiohttp's timers)."""
    app = web.Application()
    app.router.add_get("/orders", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/orders?phone={{phone}}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("trickle", [False, True], ids=["silent", "trickling"])
async def test_total_timeout_is_enforced_on_a_real_server(trickle: bool) -> None:
    # No request outlives ``total``: neither a server that says nothing nor one that
    # keeps the socket busy with a byte now and then (no read timeout would fire).
    release = asyncio.Event()
    finished: list[bool] = []

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if trickle:
            await resp.prepare(request)
            for _ in range(200):  # bounded: 200 x 0.02 s, far past total
                await resp.write(b" ")
                if release.is_set():
                    break
                await asyncio.sleep(0.02)
        else:
            await release.wait()
        finished.append(True)
        return resp

    async with contextlib.aclosing(_serve(slow)) as urls:
        url = await anext(urls)
        async with make_api(url=url, timeouts=Timeouts(total=0.2)) as api:
            with pytest.raises(TransientApiError, match=r"no answer within 0\.2s") as info:
                await api.check(PHONE)
            assert finished == []  # the server was still at it: the client gave up first
            release.set()
    assert info.value.kind == "timeout"
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_waiting_for_a_pooled_connection_is_not_a_timeout(mocked: Any) -> None:
    async def slowish(url: URL, **kwargs: Any) -> CallbackResult:
        await asyncio.sleep(0.1)
        return CallbackResult(payload={"total": 1})

    mocked.get(URL_1, callback=slowish, repeat=True)
    # One connection, four requests: the last waits 0.3s for the slot, then needs
    # 0.1s more. Only the 0.1s exchange counts against total=0.3.
    async with make_api(timeouts=Timeouts(total=0.3), max_connections=1) as api:
        outcomes = await asyncio.gather(*(api.check(PHONE) for _ in range(4)))
    assert all(o.has_orders for o in outcomes)


async def test_cancellation_propagates(api: HttpOrderApi, mocked: Any) -> None:
    started = asyncio.Event()

    async def hang(url: URL, **kwargs: Any) -> CallbackResult:
        started.set()
        await asyncio.sleep(10)
        return CallbackResult(payload={"total": 1})

    mocked.get(URL_1, callback=hang)
    task = asyncio.create_task(api.check(PHONE))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- bad bodies ------------------------------------------------------------------


async def test_undecodable_json_is_fatal_and_names_the_field(
    api: HttpOrderApi, mocked: Any
) -> None:
    mocked.get(URL_1, body="<html>oops</html>", content_type="application/json")
    with pytest.raises(FatalApiError, match="not JSON") as info:
        await api.check(PHONE)
    assert "'total'" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


async def test_missing_hit_field_is_fatal(mocked: Any) -> None:
    mocked.get(URL_1, payload={"data": {"count": 1}})
    async with make_api(hit_field="data.total") as api:
        with pytest.raises(FatalApiError, match=r"no field 'data\.total'"):
            await api.check(PHONE)


@pytest.mark.parametrize("payload", [{"total": "3"}, {"total": None}, [1, 2], {"total": [1]}])
async def test_wrongly_typed_hit_field_is_fatal(
    api: HttpOrderApi, mocked: Any, payload: Any
) -> None:
    mocked.get(URL_1, payload=payload)
    with pytest.raises(FatalApiError, match="'total'"):
        await api.check(PHONE)


# -- batch -----------------------------------------------------------------------

OTHER = "13900001111"


async def test_check_many_posts_the_phones(mocked: Any) -> None:
    mocked.post(BATCH_URL, payload={"results": {PHONE: 2, OTHER: False}})
    async with make_api(batch_url=BATCH_URL) as api:
        assert supports_batch(api)
        outcomes = await api.check_many([PHONE, OTHER, PHONE])
    assert outcomes == {
        PHONE: CheckOutcome(phone=PHONE, has_orders=True, order_count=2),
        OTHER: CheckOutcome(phone=OTHER, has_orders=False),
    }
    (call,) = recorded(mocked, "POST", BATCH_URL)
    assert call.kwargs["json"] == {"phones": [PHONE, OTHER]}


async def test_check_many_missing_phone_is_fatal(mocked: Any) -> None:
    mocked.post(BATCH_URL, payload={"results": {PHONE: 1}})
    async with make_api(batch_url=BATCH_URL) as api:
        with pytest.raises(FatalApiError, match="lacks 1 of 2") as info:
            await api.check_many([PHONE, OTHER])
    assert OTHER not in str(info.value)


async def test_check_many_without_results_is_fatal(mocked: Any) -> None:
    mocked.post(BATCH_URL, payload={"total": 1})
    async with make_api(batch_url=BATCH_URL) as api:
        with pytest.raises(FatalApiError, match="'results'"):
            await api.check_many([PHONE])


async def test_check_many_maps_statuses(mocked: Any) -> None:
    mocked.post(BATCH_URL, status=429, headers={"Retry-After": "2"})
    async with make_api(batch_url=BATCH_URL) as api:
        with pytest.raises(TransientApiError, match="a batch of 1 numbers") as info:
            await api.check_many([PHONE])
    assert info.value.retry_after == 2.0


async def test_check_many_of_nothing_sends_nothing(mocked: Any) -> None:
    async with make_api(batch_url=BATCH_URL) as api:
        assert await api.check_many([]) == {}
    assert not mocked.requests


async def test_check_many_needs_batch_url(api: HttpOrderApi) -> None:
    assert not supports_batch(api)
    with pytest.raises(ConfigError, match="batch_url"):
        await api.check_many([PHONE])


# -- lifecycle -------------------------------------------------------------------


async def test_check_outside_async_with_raises() -> None:
    api = make_api()
    with pytest.raises(RuntimeError, match=r"use `async with HttpOrderApi\(...\)"):
        await api.check(PHONE)
    await api.aclose()


async def test_check_after_close_raises_and_reopen_is_refused(mocked: Any) -> None:
    api = make_api()
    async with api:
        with pytest.raises(RuntimeError, match="already open"):
            await api.__aenter__()
    with pytest.raises(RuntimeError, match="closed"):
        await api.check(PHONE)
    with pytest.raises(RuntimeError, match="cannot be reopened"):
        await api.__aenter__()
    await api.aclose()  # idempotent


async def test_session_is_closed_on_exit(mocked: Any) -> None:
    mocked.get(URL_1, payload={"total": 1})
    async with make_api() as api:
        await api.check(PHONE)
        session = api._session
        assert session is not None
        assert isinstance(session.connector, aiohttp.TCPConnector)
        assert session.connector.limit == 100
        assert session.connector.limit_per_host == 100
    assert session.closed


# -- configuration ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": BASE + "/orders"}, r"must contain \{phone\}"),
        ({"method": "PUT"}, "GET or POST"),
        ({"url": "ftp://127.0.0.1/{phone}"}, "http"),
        ({"url": "/orders/{phone}"}, "absolute"),
        ({"batch_url": "orders/batch"}, "batch_url"),
        ({"hit_field": "data..total"}, "dotted path"),
        ({"max_connections": 0}, "at least 1"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make_api(**kwargs)


def test_timeouts_defaults_and_frozen() -> None:
    assert Timeouts(connect=5.0, read=10.0, total=20.0) == DEFAULT_TIMEOUTS
    with pytest.raises(ValueError):
        Timeouts(total=0)
    with pytest.raises(ValueError):
        DEFAULT_TIMEOUTS.total = 1.0  # type: ignore[misc]


# -- privacy ---------------------------------------------------------------------

SECRET_URL = BASE + "/orders?access_token=qwerty123&phone={phone}"


def test_repr_shows_template_and_method_only() -> None:
    api = make_api(url=SECRET_URL, headers={"Authorization": TOKEN, "X-Api-Key": "k3y-v4lue"})
    text = repr(api)
    assert text == (
        f"HttpOrderApi(url='{BASE}/orders?access_token=***&phone={{phone}}', method='GET')"
    )
    assert "s3cr3t" not in text and "k3y-v4lue" not in text and "qwerty123" not in text


def test_repr_hides_user_info() -> None:
    api = make_api(url="https://user:pa55word@127.0.0.1/orders/{phone}?key=abc")
    assert repr(api) == (
        "HttpOrderApi(url='https://***@127.0.0.1/orders/{phone}?key=***', method='GET')"
    )


@pytest.mark.parametrize(
    "respond",
    [
        {"status": 401},
        {"status": 503, "headers": {"Retry-After": "1"}},
        {"exception": aiohttp.ClientConnectionError(f"reset; sent {TOKEN} qwerty123 k3y-v4lue")},
        {"exception": TimeoutError()},
        {"body": "not json"},
        {"payload": {"total": "x"}},
    ],
)
async def test_secrets_and_full_numbers_never_in_messages(
    mocked: Any, respond: dict[str, Any]
) -> None:
    url = SECRET_URL.replace("{phone}", PHONE)
    mocked.get(url, **respond)
    headers = {"Authorization": TOKEN, "X-Api-Key": "k3y-v4lue"}
    async with make_api(url=SECRET_URL, headers=headers) as api:
        with pytest.raises((TransientApiError, FatalApiError)) as info:
            await api.check(PHONE)
        text = str(info.value) + repr(info.value) + repr(api)
    for secret in ("s3cr3t", "k3y-v4lue", "qwerty123", PHONE, url):
        assert secret not in text
    assert MASKED in text
    assert "{phone}" in text  # the template is shown, not the filled URL


# -- a real loopback server (no aioresponses) ------------------------------------


async def test_real_server_pool_limit_and_statuses() -> None:
    in_flight = 0
    max_in_flight = 0

    async def orders(request: web.Request) -> web.Response:
        nonlocal in_flight, max_in_flight
        assert request.headers["Authorization"] == TOKEN
        phone = request.query["phone"]
        if phone == "13000000429":
            return web.json_response({}, status=429, headers={"Retry-After": "3"})
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        try:
            await asyncio.sleep(0.05)
        finally:
            in_flight -= 1
        return web.json_response({"phone": phone, "total": int(phone[-1])})

    app = web.Application()
    app.router.add_get("/orders", orders)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        template = f"http://127.0.0.1:{port}/orders?phone={{phone}}"
        # total is well below the time the last request waits for a slot
        # (10 requests x 0.05s / 2 connections): pool waits must not count.
        timeouts = Timeouts(total=0.2)
        async with make_api(url=template, max_connections=2, timeouts=timeouts) as api:
            phones = [f"1380000000{i}" for i in range(10)]
            outcomes = await asyncio.gather(*(api.check(p) for p in phones))
            assert [o.order_count for o in outcomes] == list(range(10))
            with pytest.raises(TransientApiError) as info:
                await api.check("13000000429")
            assert (info.value.status, info.value.retry_after) == (429, 3.0)
        assert max_in_flight <= 2
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("writer", ["stdlib", "orjson"])
async def test_request_bodies_are_compact_json_on_both_writers(
    writer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if writer == "orjson" and not jsonfast.ORJSON:
        pytest.skip("orjson is not installed (the [fast] extra)")
    if writer == "stdlib":
        monkeypatch.setattr(http_module, "dumps", jsonfast.dumps_stdlib)
    bodies: list[tuple[str, bytes]] = []

    async def single(request: web.Request) -> web.Response:
        bodies.append((request.content_type, await request.read()))
        return web.json_response({"total": 1})

    async def batch(request: web.Request) -> web.Response:
        bodies.append((request.content_type, await request.read()))
        return web.json_response({"results": {PHONE: 0, OTHER: 2}})

    app = web.Application()
    app.router.add_post("/orders", single)
    app.router.add_post("/batch", batch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        api = HttpOrderApi(f"{base}/orders", method="POST", batch_url=f"{base}/batch")
        async with api:
            assert (await api.check(PHONE)).order_count == 1
            assert (await api.check_many([PHONE, OTHER]))[OTHER].order_count == 2
    finally:
        await runner.cleanup()
    assert bodies == [
        ("application/json", b'{"phone":"%s"}' % PHONE.encode()),
        ("application/json", b'{"phones":["%s","%s"]}' % (PHONE.encode(), OTHER.encode())),
    ]


@pytest.mark.parametrize(
    "value", ["-1", "-0.5", "1.5", "0.5", '"3"', "null", "[1]", '{"n": 1}', "1e400"]
)
async def test_an_answer_that_is_not_a_count_or_a_bool_is_fatal(
    api: HttpOrderApi, mocked: Any, value: str
) -> None:
    # `total: -1` became not_found
    mocked.get(URL_1, body='{"total": ' + value + '}', content_type="application/json")
    with pytest.raises(FatalApiError, match="unexpected answer"):
        await api.check(PHONE)


