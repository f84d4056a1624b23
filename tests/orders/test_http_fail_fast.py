"""Fail fast on a wrong address, be patient with a flaky API: an order API that has never
answered and cannot be connected to (refused, no such host) is a ``FatalApiError`` naming
host and port once ``fail_fast_after`` has passed; after one answer, the same failure is
transient (an outage: retried as before). Loopback and ``.invalid`` names only."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from lookup.domain.errors import FatalApiError, TransientApiError
from lookup.orders import HttpOrderApi

PHONE = "13857152046"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_refused_port_is_fatal_and_named() -> None:
    port = free_port()
    api = HttpOrderApi(f"http://127.0.0.1:{port}/orders?phone={{phone}}")
    api.fail_fast_after = 0.0
    async with api:
        with pytest.raises(FatalApiError) as info:
            await api.check(PHONE)
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and "connection refused" in text
    assert "check the host and port of --api" in text


async def test_an_unresolvable_host_is_fatal_and_named() -> None:
    api = HttpOrderApi("http://orders.example.invalid:8080/orders?phone={phone}")
    api.fail_fast_after = 0.0
    async with api:
        with pytest.raises(FatalApiError, match=r"orders\.example\.invalid:8080 \(no such host"):
            await api.check(PHONE)


async def test_within_the_grace_a_connect_failure_is_still_transient() -> None:
    api = HttpOrderApi(f"http://127.0.0.1:{free_port()}/orders?phone={{phone}}")
    async with api:  # the default grace (seconds) has not passed at the first failure
        with pytest.raises(TransientApiError) as info:
            await api.check(PHONE)
    assert info.value.kind == "connect"


async def test_once_it_answered_an_outage_is_transient() -> None:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"total": 0})

    app = web.Application()
    app.router.add_get("/orders", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api = HttpOrderApi(f"http://127.0.0.1:{port}/orders?phone={{phone}}")
    api.fail_fast_after = 0.0
    try:
        async with api:
            assert not (await api.check(PHONE)).has_orders
            await runner.cleanup()  # the API goes away
            with pytest.raises(TransientApiError) as info:
                await api.check(PHONE)
            assert info.value.kind in ("connect", "reset")
    finally:
        await runner.cleanup()
