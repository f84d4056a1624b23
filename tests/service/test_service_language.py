"""The service's problems speak the reader's language (``Accept-Language``); the machine
fields (``type``, ``status``, ``kind``) stay the same in every language."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from pydantic import SecretStr

from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving

TOKEN = "tok-language-0123456789"


@pytest.fixture
async def session(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[aiohttp.ClientSession]:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)
    settings = Settings(rate=None, service_tokens=[SecretStr(TOKEN)])
    app = create_app(settings, api=FakeOrderApi.from_orders({}))
    async with serving(app) as url, aiohttp.ClientSession(url) as client:
        yield client


async def _problem(session: aiohttp.ClientSession, lang: str | None) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if lang is not None:
        headers["Accept-Language"] = lang
    async with session.post("/v1/lookups", json={"mask": "238****2046"}, headers=headers) as resp:
        assert resp.status == 422
        data: dict[str, object] = await resp.json(content_type=None)
        return data


async def test_problem_title_and_detail_follow_accept_language(
    session: aiohttp.ClientSession,
) -> None:
    en = await _problem(session, None)
    zh = await _problem(session, "zh-CN,zh;q=0.9,en;q=0.8")
    assert en["title"] == "Invalid lookup input"
    assert str(en["detail"]).startswith("'238****2046' does not start with 1")
    assert zh["title"] == "查询输入无效"
    assert str(zh["detail"]).startswith("“238****2046”不以 1 开头")
    for key in ("type", "status", "kind"):
        assert en[key] == zh[key]
    assert (await _problem(session, "en-US,zh;q=0.5"))["title"] == "Invalid lookup input"


async def test_unauthorised_problem_in_chinese(session: aiohttp.ClientSession) -> None:
    async with session.get("/v1/segments/1380571", headers={"Accept-Language": "zh"}) as resp:
        assert resp.status == 401
        data = await resp.json(content_type=None)
    assert data["title"] == "需要身份验证"
