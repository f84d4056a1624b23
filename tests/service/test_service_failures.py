"""``lookup serve`` keeps serving when the order API's checks raise anything at all
(``SystemExit`` and ``KeyboardInterrupt`` from a plug-in included): each lookup ends
``inconclusive`` or ``api_error``, never ``not_found``."""

from __future__ import annotations

import os

import aiohttp
import pytest
from pydantic import SecretStr

from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving

TOKEN = "a-service-token-for-failures"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("exc", [SystemExit(0), KeyboardInterrupt()], ids=type)
async def test_the_service_survives_a_source_that_raises_base_exceptions(
    exc: BaseException,
) -> None:
    def handler(phone: str) -> bool:
        raise exc

    api = FakeOrderApi(handler)
    settings = Settings(rate=None, max_in_flight=4, deadline=0.5, max_attempts=1,
                        service_tokens=[SecretStr(TOKEN)])  # fmt: skip
    app = create_app(settings, api=api)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with serving(app) as url, aiohttp.ClientSession(url) as session:
        for _ in range(2):
            async with session.post(
                "/v1/lookups", json={"mask": "1385715204*"}, headers=headers
            ) as resp:
                assert resp.status == 200
                data = await resp.json()
            assert data["status"] in ("inconclusive", "api_error")
            assert data["complete"] is False
        async with session.get("/healthz") as resp:
            assert resp.status == 200
    assert api.calls  # the checks were sent and failed
