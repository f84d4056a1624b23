"""Hostile values at the service: a request path cannot forge a log line, a problem never
echoes the caller's full number."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from lookup.orders import FakeOrderApi
from lookup.runtime.logs import setup_logging
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving

TOKEN = "first-service-token"
PHONE = "13857152046"
FULL_NUMBER = re.compile(r"(?<!\d)1\d{10}(?!\d)")
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    names = ("lookup", "lookup.audit", "aiohttp")
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate)
             for lg in (logging.getLogger(n) for n in names)]  # fmt: skip
    stream = io.StringIO()
    setup_logging("DEBUG", "text", stream=stream)
    yield stream
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    settings = Settings(rate=None, max_in_flight=10, service_tokens=[SecretStr(TOKEN)])
    app = create_app(settings, api=FakeOrderApi.from_orders({PHONE: 1}))
    async with serving(app) as url, aiohttp.ClientSession(url) as s:
        yield s


FORGED_PATHS = [
    "/v1/jobs/x%0a2024-01-01%2000:00:00,000%20INFO%20lookup.audit:%20forged",
    "/v1/jobs/x%0d%0aINFO%20forged",
    "/v1/jobs/x%00nul",
    "/v1/jobs/x%1b%5b2J",
    "/v1/jobs/x%e2%80%aeevil",  # U+202E
    "/v1/jobs/x%e2%80%a8ls",  # U+2028
    "/v1/jobs/x%c2%85nel",  # U+0085
    "/nowhere%0aforged",
]


@pytest.mark.parametrize("path", FORGED_PATHS)
async def test_a_request_path_cannot_forge_a_log_line(
    session: aiohttp.ClientSession, log_text: io.StringIO, path: str
) -> None:
    async with session.get(path) as resp:  # unauthenticated
        assert resp.status in (401, 404)
    out = log_text.getvalue()
    assert out, "the request was logged"
    for line in out.splitlines():
        assert line.isprintable(), repr(line)
        assert _RECORD_START.match(line) or line.startswith(" "), repr(line)


async def test_a_422_never_echoes_the_callers_full_number(session: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    bodies: list[dict[str, Any]] = [
        {"mask": PHONE},
        {"mask": "138 5715 2046"},
        {"mask": PHONE + "9"},
        {"mask": "138****2046", "zip": PHONE},
        {"mask": "138****2046", "area_code": PHONE},
        {"mask": "138****2046", "city": PHONE},
        {"mask": "138****2046", "carrier": PHONE},
        {"mask": "138****2046", "mode": PHONE},
        {"mask": "1385715204\x1b6"},
    ]
    for body in bodies:
        async with session.post("/v1/lookups", json=body, headers=headers) as resp:
            text = await resp.text()
            if resp.status == 200:
                continue
            assert resp.status == 422, (body, text)
            assert not FULL_NUMBER.search(text), (body, text)
            assert "57152046" not in text
            problem = json.loads(text)
            assert problem["detail"].isprintable()


@pytest.mark.parametrize(
    "name",
    ["report\u202ecsv.exe", "\u2066evil\u2069.csv", "a\x1b[2Jb.csv", "x\u200b\u200fy.csv",
     "line\u2028sep.csv", "c1\x85\x9b.csv", "\u202e\u202e\u202e"],
)  # fmt: skip
def test_an_upload_name_with_bidi_or_control_characters_is_cleaned(name: str) -> None:
    from lookup.service.uploads import safe_name

    cleaned = safe_name(name)
    assert cleaned.isprintable() and cleaned
    assert not any(c in cleaned for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\u200f")


async def test_a_jobs_folder_that_is_a_symlink_is_refused_and_never_chmodded(tmp_path: Any) -> None:
    import os
    import stat

    from lookup.domain.errors import ConfigError
    from lookup.service.jobs import JobStore

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    link = tmp_path / "jobs"
    link.symlink_to(shared)
    store = JobStore(link, checker=None, settings=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="symbolic link"):
        await store.start()
    with pytest.raises(ConfigError, match="symbolic link"):
        store._make_root()
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    # a folder that was there keeps its mode; one the tool makes is 0700
    JobStore(shared, checker=None, settings=None)._make_root()  # type: ignore[arg-type]
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    made = tmp_path / "new" / "jobs"
    JobStore(made, checker=None, settings=None)._make_root()  # type: ignore[arg-type]
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
