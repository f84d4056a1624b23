"""Redirects, with two real aiohttp servers on 127.0.0.1 (two ports: two origins).

A redirect to another origin is never followed (the configured headers and the number
would go there): an ``api_error`` naming that origin, redacted. A same-origin redirect is
followed, at most three times, and each hop is a request the checker counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from lookup.domain.errors import FatalApiError
from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders import HttpOrderApi

PHONE = "13857152046"
KEY = "sk-redirect-secret-123"


@dataclass
class Server:
    url: str = ""
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    redirect_to: str = ""
    status: int = 302


@pytest.fixture
async def servers() -> AsyncIterator[tuple[Server, Server]]:
    home, other = Server(), Server()
    runners = []
    for srv in (home, other):

        async def handle(request: web.Request, srv: Server = srv) -> web.Response:
            srv.seen.append((request.method, str(request.rel_url), dict(request.headers)))
            if request.path.startswith("/redirect"):
                return web.Response(status=srv.status, headers={"Location": srv.redirect_to})
            if request.path.startswith("/loop"):
                return web.Response(status=302, headers={"Location": "/loop"})
            return web.json_response({"total": 1})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        srv.url = f"http://127.0.0.1:{port}"
        runners.append(runner)
    try:
        yield home, other
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.mark.parametrize(("method", "status"), [("GET", 302), ("GET", 301), ("POST", 307),
                                                ("POST", 308), ("GET", 303)])  # fmt: skip
async def test_a_redirect_to_another_origin_is_refused_and_named(
    servers: tuple[Server, Server], method: str, status: int
) -> None:
    home, other = servers
    home.status = status
    home.redirect_to = f"http://user:pw@{other.url.removeprefix('http://')}/orders?phone={PHONE}"
    api = HttpOrderApi(f"{home.url}/redirect?phone={{phone}}", method=method,
                       headers={"X-Api-Key": KEY})  # fmt: skip
    async with api:
        with pytest.raises(FatalApiError, match="another origin") as info:
            await api.check(PHONE)
    text = str(info.value)
    assert other.url.removeprefix("http://") in text  # the origin is named
    assert "pw" not in text and KEY not in text and PHONE not in text
    assert other.seen == []  # nothing, no header, no number, went there
    assert len(home.seen) == 1 and home.seen[0][2]["X-Api-Key"] == KEY


async def test_another_scheme_on_the_same_host_is_another_origin(
    servers: tuple[Server, Server],
) -> None:
    home, _ = servers
    home.redirect_to = home.url.replace("http://", "https://") + "/orders"
    async with HttpOrderApi(f"{home.url}/redirect?phone={{phone}}") as api:
        with pytest.raises(FatalApiError, match="another origin"):
            await api.check(PHONE)


async def test_a_same_origin_redirect_is_followed_and_counted(
    servers: tuple[Server, Server],
) -> None:
    home, other = servers
    home.redirect_to = "/orders?phone=" + PHONE
    api = HttpOrderApi(f"{home.url}/redirect?phone={{phone}}", headers={"X-Api-Key": KEY})
    async with api:
        checker = Checker(api, Limits(max_per_second=None, start_rate=None))
        assert await checker.check(PHONE) == CheckOutcome(
            phone=PHONE, has_orders=True, order_count=1
        )
    assert [path.split("?")[0] for _, path, _ in home.seen] == ["/redirect", "/orders"]
    assert api.requests == 2
    assert checker.counters.requests == 2  # the hop is a request the checker counted
    assert other.seen == []


async def test_a_redirect_loop_ends_as_api_error(servers: tuple[Server, Server]) -> None:
    home, _ = servers
    async with HttpOrderApi(f"{home.url}/loop?phone={{phone}}") as api:
        result = await find(PHONE, api=api, limits=Limits(max_per_second=None,
                                                                  start_rate=None))  # fmt: skip
    assert result.status == "api_error"
    assert "more than 3 redirects" in (result.reason or "")
    assert len(home.seen) == 4  # the first request and three hops, then it stopped
