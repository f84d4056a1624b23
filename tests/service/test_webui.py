"""The desk page's HTTP side: page and assets, streamed lookups, reveals, /v1/jobs."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving
from lookup.service.desk import CSP, job_store
from lookup.service.http import caller_name

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
CASE = {c["name"]: c for c in CASES}
ORDERS = {c["expected_phone"]: 1 for c in CASES if c["expected_phone"]}
TOKENS = ["desk-token-one", "desk-token-two"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def auth(i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[i]}"}


@asynccontextmanager
async def running(
    tmp_path: Path, api: FakeOrderApi | None = None, **kw: Any
) -> AsyncIterator[tuple[aiohttp.ClientSession, Any]]:
    settings = Settings(rate=None, max_in_flight=kw.pop("max_in_flight", 16),
                        service_tokens=[SecretStr(t) for t in TOKENS],
                        service_jobs_dir=tmp_path / "jobs", **kw)  # fmt: skip
    app = create_app(settings, api=api or FakeOrderApi.from_orders(ORDERS))
    async with serving(app, shutdown_timeout=2) as url, aiohttp.ClientSession(url) as session:
        URLS[id(session)] = url
        try:
            yield session, app
        finally:
            del URLS[id(session)]


URLS: dict[int, str] = {}
"""The URL each session of :func:`running` talks to (for a second, raw session)."""


async def events(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in (await resp.text()).split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            out.append((lines["event"], json.loads(lines["data"])))
    return out


async def test_the_page_and_its_assets_are_open_strict_and_self_contained(tmp_path: Path) -> None:
    async with running(tmp_path) as (session, _):
        async with session.get("/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            html = await resp.text()
            headers = resp.headers
        assert headers["Content-Security-Policy"] == CSP
        assert "script-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "Access-Control-Allow-Origin" not in headers
        assert '<html lang="zh-CN">' in html
        # No inline script or style, nothing from another host.
        assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
        assert "<style" not in html and " style=" not in html
        assert not re.search(r"(src|href)=\"(https?:)?//", html)
        async with session.get("/", headers={"Accept-Language": "en-US,en;q=0.9,zh;q=0.5"}) as resp:
            assert '<html lang="en">' in await resp.text()
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
            async with session.get(f"/assets/{name}") as resp:
                assert resp.status == 200 and resp.content_type == kind
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                text = await resp.text()
            assert "http://" not in text and "https://" not in text  # works offline
        for bad in ("/assets/index.html", "/assets/..%2Fwebui.py", "/assets/nope.js"):
            async with session.get(bad) as resp:
                assert resp.status == 404


async def test_every_api_call_needs_a_token(tmp_path: Path) -> None:
    async with running(tmp_path) as (session, _):
        for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/lookups/stream"),
                             ("POST", "/v1/reveal"), ("GET", "/v1/jobs/x/results")):  # fmt: skip
            async with session.request(method, path) as resp:
                assert resp.status == 401, path
            async with session.request(method, path, headers={"Authorization": "Bearer no"}) as r:
                # the service answers an unknown token 401 invalid_token (branch service)
                assert r.status == 401, path
                assert 'error="invalid_token"' in r.headers["WWW-Authenticate"], path


async def test_a_streamed_lookup_masks_the_number_until_an_audited_reveal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    case = CASE["city hit"]
    phone = case["expected_phone"]
    async with running(tmp_path) as (session, _):
        body = {"mask": case["mask"], **case["hints"]}
        async with session.post("/v1/lookups/stream", json=body, headers=auth()) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            raw = await resp.read()
            resp._body = raw
            got = await events(resp)
        assert phone.encode() not in raw
        names = [name for name, _ in got]
        assert names[0] == "plan" and names[-1] == "result"
        tiers = {t["name"]: t["candidates"] for t in got[0][1]["tiers"]}
        assert tiers == case["tiers"]
        result = got[-1][1]
        assert (result["status"], result["tier"]) == ("matched", "city")
        assert result["phone"] == f"{phone[:3]}****{phone[-4:]}" and result["reveal"]
        assert result["region"]["segment"] is None  # 7 digits + the last 4 = the number
        assert result["region"]["city"] == "杭州"
        assert [h["region"]["segment"] for h in result["hits"]] == [None]
        reveal = {"id": result["reveal"]}
        async with session.post("/v1/reveal", json=reveal, headers=auth(1)) as resp:
            assert resp.status == 404  # another caller's lookup
        with caplog.at_level(logging.INFO, "lookup.audit"):
            async with session.post("/v1/reveal", json=reveal, headers=auth()) as resp:
                assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
                assert (await resp.json())["phone"] == phone
        line = f"reveal mask={case['mask']} phone={result['phone']} caller={caller_name(TOKENS[0].encode())}"
        assert line in caplog.text and phone not in caplog.text


async def test_progress_events_carry_tiers_rate_and_the_checker_state(tmp_path: Path) -> None:
    case = CASE["national hit"]  # 745 checks, 4 at a time, 2 ms each: at least 0.37 s
    api = FakeOrderApi.from_orders(ORDERS, latency=0.002)
    async with running(tmp_path, api, max_in_flight=4) as (session, _):
        body = {"mask": case["mask"], **case["hints"]}
        async with session.post("/v1/lookups/stream", json=body, headers=auth()) as resp:
            got = await events(resp)
    progress = [data for name, data in got if name == "progress"]
    assert progress, [name for name, _ in got]
    last = progress[-1]
    assert last["state"] == "ok" and last["text"]
    assert last["answered"] > 0 and last["rate"] > 0 and last["tier"] in case["tiers"]
    assert {t["name"] for t in last["tiers"]} == set(case["tiers"])
    assert got[-1][1]["tier"] == "national"


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"mask": "12345"}, "mask", "InvalidMaskError"),
        ({"mask": "138****2046", "city": "火星"}, "city", "UnknownRegionError"),
        ({"mask": "138****2046", "area_code": "0571", "zip": "999999"}, "zip",
         "UnknownRegionError"),
        ({"city": "杭州"}, "mask", "ValidationError"),
        ({"mask": "1**8***1234"}, "mask", "TooManyCandidatesError"),
        ({"mask": "138****2046", "city": "杭州", "carrier": "电信"}, "carrier", "InvalidMaskError"),
        ({"mask": "138****2046", "carrier": "卫星"}, "carrier", "UnknownRegionError"),
        ({"mask": "138****2046", "city": "杭州", "province": "广东"}, "city", "UnknownRegionError"),
    ],
)
async def test_bad_input_names_the_field(
    tmp_path: Path, body: dict[str, str], field: str, kind: str
) -> None:
    async with (
        running(tmp_path) as (session, _),
        session.post("/v1/lookups/stream", json=body, headers=auth()) as resp,
    ):
        assert resp.status == 422
        err = await resp.json()
    assert resp.content_type == "application/problem+json"
    assert (err["errors"][0]["field"], err["kind"]) == (field, kind), err
    assert err["detail"] and err["instance"]


async def test_cross_origin_api_requests_are_refused(tmp_path: Path) -> None:
    case = CASE["city hit"]
    body = {"mask": case["mask"], **case["hints"]}
    async with running(tmp_path) as (session, _):
        own = str(session._base_url).rstrip("/")
        evil = {**auth(), "Origin": "http://evil.example"}
        async with session.get("/v1/jobs", headers=evil) as resp:
            assert resp.status == 403 and (await resp.json())["kind"] == "CrossOrigin"
            assert "Access-Control-Allow-Origin" not in resp.headers
        for site in ("cross-site", "same-site"):
            async with session.get("/v1/jobs", headers={**auth(), "Sec-Fetch-Site": site}) as resp:
                assert resp.status == 403, site
        # A form or fetch POST from another site: refused before anything runs.
        for headers in ({**evil, "Sec-Fetch-Site": "cross-site"}, evil):
            async with session.post("/v1/lookups/stream", json=body, headers=headers) as resp:
                assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers
            async with session.post("/v1/jobs", params={"name": "a.csv"}, data=b"mask\n1\n",
                                    headers=headers) as resp:  # fmt: skip
                assert resp.status == 403
        async with session.get("/v1/jobs", headers=auth()) as resp:
            assert (await resp.json())["jobs"] == []  # nothing was created
        # A preflight gets no CORS answer either.
        preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        async with session.options("/v1/lookups/stream", headers=preflight) as resp:
            assert resp.status >= 400 and "Access-Control-Allow-Origin" not in resp.headers
        same = {**auth(), "Origin": own}
        async with session.get("/v1/jobs", headers=same) as resp:
            assert resp.status == 200
        # Behind a TLS-terminating proxy the page's Origin says https; the browser's own
        # Sec-Fetch-Site says same-origin, and that decides.
        proxied = {**auth(), "Origin": own.replace("http:", "https:"),
                   "Sec-Fetch-Site": "same-origin"}  # fmt: skip
        async with session.post("/v1/lookups/stream", json=body, headers=proxied) as resp:
            assert resp.status == 200 and (await events(resp))[-1][1]["status"] == "matched"


async def test_without_tokens_the_api_answers_only_on_a_loopback_name(tmp_path: Path) -> None:
    """DNS rebinding: a page of another site re-points its name at 127.0.0.1; the browser
    then sends that name as Host and the Origin to match."""
    case = CASE["city hit"]
    body = {"mask": case["mask"], **case["hints"]}
    settings = Settings(rate=None, service_jobs_dir=tmp_path / "jobs")
    app = create_app(settings, api=FakeOrderApi.from_orders(ORDERS))
    async with serving(app) as url, aiohttp.ClientSession(url) as session:
        port = url.rsplit(":", 1)[1]
        rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
                   "Sec-Fetch-Site": "same-origin"}  # fmt: skip
        async with session.post("/v1/lookups/stream", json=body, headers=rebound) as resp:
            assert resp.status == 403
            assert "answers only on a loopback name" in (await resp.json())["detail"]
        async with session.post("/v1/reveal", json={"id": "x" * 24}, headers=rebound) as resp:
            assert resp.status == 403
        async with session.get("/v1/jobs", headers=rebound) as resp:
            assert resp.status == 403
        async with session.get("/", headers=rebound) as resp:
            assert resp.status == 200  # the page holds no data
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            async with session.post("/v1/lookups/stream", json=body, headers={"Host": host}) as resp:
                assert resp.status == 200, host
                assert (await events(resp))[-1][1]["status"] == "matched"


async def test_jobs_over_http_per_token(tmp_path: Path) -> None:
    rows = ["id,mask,city"] + [f"r{i},{c['mask']},杭州" for i, c in enumerate(CASES[:4], 1)]
    data = ("\n".join(rows) + "\n").encode("gb18030")
    async with running(tmp_path) as (session, app):
        form = aiohttp.FormData()
        form.add_field("mode", "first")
        form.add_field("file", data, filename="桌面.csv", content_type="text/csv")
        async with session.post("/v1/jobs", data=form, headers=auth()) as resp:
            assert resp.status == 201, await resp.text()
            job = await resp.json()
            assert resp.headers["Location"] == f"/v1/jobs/{job['id']}"
        assert (job["total"], job["filename"], job["format"]) == (4, "桌面.csv", "csv")
        async with session.get(f"/v1/jobs/{job['id']}", headers=auth(1)) as resp:
            assert resp.status == 404
        async with session.get("/v1/jobs", headers=auth(1)) as resp:
            assert (await resp.json())["jobs"] == []
        store = job_store(app)
        assert store is not None
        await store.wait(caller_name(TOKENS[0].encode()), job["id"])
        async with session.get(f"/v1/jobs/{job['id']}", headers=auth()) as resp:
            done = await resp.json()
        assert done["state"] == "done" and done["counts"]["matched"] == 4
        url = f"/v1/jobs/{job['id']}/results"
        async with session.get(url, params={"format": "csv"}, headers=auth()) as resp:
            assert resp.status == 200 and resp.content_type == "text/csv"
            assert resp.headers["Content-Disposition"].endswith('-results.csv"')
            table = list(csv.DictReader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
        assert [r["id"] for r in table] == ["r1", "r2", "r3", "r4"]
        assert [r["phone"] for r in table] == [c["expected_phone"] for c in CASES[:4]]
        async with session.get(url, params={"format": "xml"}, headers=auth()) as resp:
            assert resp.status == 422
        async with session.get(url, headers=auth(1)) as resp:
            assert resp.status == 404
        # A raw body with its name in the query; then a bad one.
        line = json.dumps({"mask": CASES[0]["mask"], "city": "杭州"}, ensure_ascii=False)
        async with session.post("/v1/jobs", params={"name": "one.jsonl"},
                                data=line.encode(), headers=auth(1)) as resp:  # fmt: skip
            assert resp.status == 201 and (await resp.json())["format"] == "jsonl"
        async with session.post("/v1/jobs", params={"name": "x.csv"}, data=b"phone\n1\n",
                                headers=auth()) as resp:  # fmt: skip
            err = await resp.json()
            assert resp.status == 422 and err["errors"][0]["field"] == "file"
            assert "x.csv: the first line must be a header" in err["detail"]


async def test_deleting_a_running_job_cancels_it(tmp_path: Path) -> None:
    import asyncio

    gate = asyncio.Event()

    async def handler(phone: str) -> bool:
        await gate.wait()
        return False

    async with running(tmp_path, FakeOrderApi(handler)) as (session, _):
        async with session.post("/v1/jobs", params={"name": "a.csv"},
                                data=b"mask\n13905710***\n", headers=auth()) as resp:  # fmt: skip
            job = await resp.json()
        async with session.get(f"/v1/jobs/{job['id']}/results", headers=auth()) as resp:
            assert resp.status == 409
        async with session.delete(f"/v1/jobs/{job['id']}", headers=auth(1)) as resp:
            assert resp.status == 404
        async with session.delete(f"/v1/jobs/{job['id']}", headers=auth()) as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
        async with session.get(f"/v1/jobs/{job['id']}/results", headers=auth()) as resp:
            assert resp.status == 200 and await resp.text() == ""


async def test_hostile_uploads_and_job_ids(tmp_path: Path) -> None:
    from lookup.service.jobroutes import JOB_MAX_UPLOAD

    jobs = tmp_path / "jobs"
    async with running(tmp_path) as (session, app):
        form = aiohttp.FormData()
        form.add_field("file", f"mask,city\n{CASES[0]['mask']},杭州\n".encode(),
                       filename="../../x.csv", content_type="text/csv")  # fmt: skip
        async with session.post("/v1/jobs", data=form, headers=auth()) as resp:
            assert resp.status == 201
            job = await resp.json()
        assert job["filename"] == "x.csv"
        assert not (tmp_path / "x.csv").exists()  # where jobs/<id>/../../x.csv would be
        assert (jobs / job["id"] / "input.csv").is_file()
        store = job_store(app)
        assert store is not None
        await store.wait(caller_name(TOKENS[0].encode()), job["id"])
        url = f"/v1/jobs/{job['id']}/results"
        async with session.get(url, params={"format": "csv"}, headers=auth()) as resp:
            assert resp.headers["Content-Disposition"] == 'attachment; filename="x-results.csv"'
        # Over the size limit: 413, said in words, nothing left on disk.
        big = b"mask\n" + b"138****2046\n" * (JOB_MAX_UPLOAD // 12 + 1)
        async with session.post("/v1/jobs", params={"name": "big.csv"}, data=io.BytesIO(big),
                                headers=auth()) as resp:  # fmt: skip
            assert resp.status == 413
            assert "an upload is at most 32 MiB: split the file" in (await resp.json())["detail"]
        assert [p.name for p in jobs.iterdir()] == [job["id"]]
        # Job ids that try to leave the jobs folder, or are just long: 404 like any unknown id.
        for bad in ("..%2F..%2Fetc%2Fpasswd", "..", "%2e%2e%2f" + job["id"],
                    job["id"] + "%2F..%2F" + job["id"], "A" * 4000):  # fmt: skip
            for method, tail in (("GET", ""), ("DELETE", ""), ("GET", "/results?format=csv")):
                async with session.request(method, f"/v1/jobs/{bad}{tail}", headers=auth()) as resp:
                    assert resp.status == 404, (method, bad[:40], tail)


async def test_a_client_leaving_mid_stream_stops_its_lookup_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    gate = asyncio.Event()  # never set: every check waits until its lookup is cancelled

    async def handler(phone: str) -> bool:
        await gate.wait()
        return False

    api = FakeOrderApi(handler)
    body = {"mask": CASE["national hit"]["mask"], "city": "杭州"}
    with caplog.at_level(logging.INFO):
        async with running(tmp_path, api, max_in_flight=4) as (session, _):
            async with session.post("/v1/lookups/stream", json=body, headers=auth()) as resp:
                async for line in resp.content:
                    if line.startswith(b"event: progress"):
                        break
                assert api.in_flight > 0
                resp.close()  # the operator closed the tab
            for _ in range(100_000):  # bounded: the lookup is cancelled, its checks end
                if api.in_flight == 0:
                    break
                await asyncio.sleep(0)
            assert api.in_flight == 0
            async with session.get("/v1/jobs", headers=auth()) as resp:
                assert resp.status == 200  # the service goes on
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert "Traceback" not in caplog.text


async def test_many_streams_at_once(tmp_path: Path) -> None:
    import asyncio

    api = FakeOrderApi.from_orders(ORDERS, latency=0.001)

    async def one(session: aiohttp.ClientSession, case: dict[str, Any]) -> tuple[str, str]:
        body = {"mask": case["mask"], **case["hints"]}
        async with session.post("/v1/lookups/stream", json=body, headers=auth()) as resp:
            assert resp.status == 200
            got = await events(resp)
        return got[0][0], got[-1][1]["status"]

    async with running(tmp_path, api, max_in_flight=32, service_max_queued=40) as (session, _):
        answers = await asyncio.gather(*(one(session, CASES[i % len(CASES)]) for i in range(40)))
    assert answers == [("plan", CASES[i % len(CASES)]["expected_status"]) for i in range(40)]


async def test_streams_share_the_lookup_paths_queue_cap_and_metrics(tmp_path: Path) -> None:
    """The live stream is the same lookup as POST /v1/lookups: the caller's queue cap
    answers 429 past it (another caller is not refused), a text/plain body is a 415, and
    its lookups are counted in /metrics under surface="stream"."""
    import asyncio

    api = FakeOrderApi.from_orders(ORDERS, latency=0.02)
    case = CASES[0]
    body = {"mask": case["mask"], **case["hints"]}

    async def stream(session: aiohttp.ClientSession, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post("/v1/lookups/stream", json=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async with running(tmp_path, api, service_max_queued=4) as (session, _):
        async with session.post("/v1/lookups/stream", data="mask=138", headers={
                **auth(), "Content-Type": "text/plain"}) as resp:  # fmt: skip
            assert resp.status == 415
        statuses = await asyncio.gather(
            *(stream(session, TOKENS[0]) for _ in range(30)), stream(session, TOKENS[1])
        )
        async with session.get("/metrics", headers=auth()) as resp:
            text = await resp.text()
    assert statuses[-1] == 200  # the other caller
    assert statuses[:-1].count(200) >= 4 and statuses[:-1].count(429) >= 20
    assert set(statuses) == {200, 429}
    assert 'lookup_lookups_refused_total{surface="stream"}' in text
    counted = [line for line in text.splitlines()
               if line.startswith('lookup_lookups_total{status="matched",surface="stream"}')]  # fmt: skip
    assert counted and float(counted[0].split()[-1]) == statuses.count(200)


async def test_the_services_retention_setting_removes_ended_jobs(tmp_path: Path) -> None:
    import asyncio

    async with running(tmp_path, service_job_retention=0.5) as (session, app):
        async with session.post("/v1/jobs", params={"name": "a.csv"},
                                data=f"mask,city\n{CASES[0]['mask']},杭州\n".encode(),
                                headers=auth()) as resp:  # fmt: skip
            job = await resp.json()
        folder = tmp_path / "jobs" / job["id"]
        store = job_store(app)
        assert store is not None and store.retention_s == 0.5
        await store.wait(caller_name(TOKENS[0].encode()), job["id"])
        assert folder.is_dir()
        for _ in range(200):  # the sweep runs every second: bounded at 10 s
            if not folder.exists():
                break
            await asyncio.sleep(0.05)
        assert not folder.exists()
        async with session.get(f"/v1/jobs/{job['id']}", headers=auth()) as resp:
            assert resp.status == 404


async def test_a_job_belongs_to_its_token_across_a_restart_and_a_reordered_token_list(
    tmp_path: Path,
) -> None:
    """The owner is the token's stable name, not its position: after a restart with the
    tokens reordered (and one added) the owner still sees its job, the others never do,
    and DELETE of the ended job removes it with its files."""
    third = "desk-token-three"

    def app_with(tokens: list[str]) -> Any:
        settings = Settings(rate=None, service_tokens=[SecretStr(t) for t in tokens],
                            service_jobs_dir=tmp_path / "jobs")  # fmt: skip
        return create_app(settings, api=FakeOrderApi.from_orders(ORDERS))

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    data = f"mask,city\n{CASES[0]['mask']},杭州\n".encode()
    app = app_with(TOKENS)
    async with serving(app, shutdown_timeout=2) as url, aiohttp.ClientSession(url) as session:
        async with session.post("/v1/jobs", params={"name": "a.csv"}, data=data,
                                headers=bearer(TOKENS[0])) as resp:  # fmt: skip
            assert resp.status == 201
            job = await resp.json()
        store = job_store(app)
        assert store is not None
        await store.wait(caller_name(TOKENS[0].encode()), job["id"])
    folder = tmp_path / "jobs" / job["id"]
    assert folder.is_dir()

    app = app_with([third, TOKENS[1], TOKENS[0]])  # reordered, one added
    async with serving(app, shutdown_timeout=2) as url, aiohttp.ClientSession(url) as session:
        for other in (third, TOKENS[1]):
            async with session.get(f"/v1/jobs/{job['id']}", headers=bearer(other)) as resp:
                assert resp.status == 404
            async with session.get("/v1/jobs", headers=bearer(other)) as resp:
                assert (await resp.json())["jobs"] == []
            async with session.delete(f"/v1/jobs/{job['id']}", headers=bearer(other)) as resp:
                assert resp.status == 404
        async with session.get(f"/v1/jobs/{job['id']}", headers=bearer(TOKENS[0])) as resp:
            assert resp.status == 200 and (await resp.json())["state"] == "done"
        assert folder.is_dir()
        async with session.delete(f"/v1/jobs/{job['id']}", headers=bearer(TOKENS[0])) as resp:
            assert resp.status == 204
        assert not folder.exists()
        async with session.get(f"/v1/jobs/{job['id']}", headers=bearer(TOKENS[0])) as resp:
            assert resp.status == 404


def test_the_default_jobs_folder_is_the_services_own() -> None:
    from lookup.service.desk import default_jobs_dir

    one = default_jobs_dir(Settings(service_port=8000))
    other = default_jobs_dir(Settings(service_port=8001))
    assert one != other and one.name == "127.0.0.1-8000"


async def test_a_trickled_upload_gets_408_like_every_route(tmp_path: Path) -> None:
    """POST /v1/jobs has the body deadline of every route: a body that stops arriving is
    answered 408 (and the connection closed) once service_read_timeout has passed."""
    import asyncio

    never = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"mask,city\n"
        await never.wait()  # the rest never comes: the server must not wait for it forever

    async with (
        running(tmp_path, service_read_timeout=0.5) as (session, _),
        session.post("/v1/jobs", params={"name": "a.csv"}, data=trickle(),
                     headers=auth()) as resp,  # fmt: skip
    ):
        assert resp.status == 408
        assert (await resp.json(content_type=None))["type"].endswith("request-timeout")


# -- what desk work needs: order counts, times, 404s, compressed assets --------------------


async def test_a_streamed_hit_carries_its_order_count(tmp_path: Path) -> None:
    case = CASE["city hit"]
    api = FakeOrderApi.from_orders({case["expected_phone"]: 6})
    async with running(tmp_path, api) as (session, _):
        body = {"mask": case["mask"], **case["hints"]}
        async with session.post("/v1/lookups/stream", json=body, headers=auth()) as resp:
            result = (await events(resp))[-1][1]
    assert result["status"] == "matched"
    assert [h["order_count"] for h in result["hits"]] == [6]


async def test_assets_are_gzipped_once_with_vary_an_etag_and_the_security_headers(
    tmp_path: Path,
) -> None:
    import gzip

    static = ROOT / "lookup" / "service" / "static"
    async with running(tmp_path) as (session, _), aiohttp.ClientSession(
        URLS[id(session)], auto_decompress=False
    ) as raw:
        for path, name, kind in (("/assets/app.js", "app.js", "text/javascript"),
                                 ("/assets/app.css", "app.css", "text/css"),
                                 ("/assets/favicon.svg", "favicon.svg", "image/svg+xml"),
                                 ("/favicon.ico", "favicon.svg", "image/svg+xml")):  # fmt: skip
            plain = (static / name).read_bytes()
            async with raw.get(path, headers={"Accept-Encoding": "gzip, deflate, br"}) as resp:
                assert resp.status == 200 and resp.content_type == kind, path
                assert resp.headers["Content-Encoding"] == "gzip"
                assert "Accept-Encoding" in resp.headers["Vary"]
                assert resp.headers["Content-Security-Policy"] == CSP
                assert resp.headers["X-Content-Type-Options"] == "nosniff"
                zipped = await resp.read()
                etag = resp.headers["ETag"]
            assert gzip.decompress(zipped) == plain and len(zipped) < len(plain), path
            async with raw.get(path, headers={"Accept-Encoding": "gzip",
                                              "If-None-Match": etag}) as resp:  # fmt: skip
                assert resp.status == 304 and await resp.read() == b""
            for refuse in ("identity", "gzip;q=0, identity", ""):
                async with raw.get(path, headers={"Accept-Encoding": refuse}) as resp:
                    assert "Content-Encoding" not in resp.headers, (path, refuse)
                    assert await resp.read() == plain and resp.headers["ETag"] != etag
        async with raw.get("/", headers={"Accept-Encoding": "gzip",
                                         "Accept-Language": "en"}) as resp:  # fmt: skip
            assert resp.headers["Content-Encoding"] == "gzip"
            assert resp.headers["Vary"] == "Accept-Language, Accept-Encoding"
            assert b'<html lang="en">' in gzip.decompress(await resp.read())
            assert resp.headers["Content-Security-Policy"] == CSP
        async with raw.get("/", headers={"Accept-Encoding": "gzip"}) as resp:
            html = gzip.decompress(await resp.read()).decode()
        assert '<link rel="icon" href="/assets/favicon.svg"' in html


async def test_unknown_paths_are_404_problems_with_or_without_a_token(tmp_path: Path) -> None:
    async with running(tmp_path) as (session, _):
        for path in ("/nope", "/v1/nope", "/favicon.png", "/v1/lookups/nope", "/assets"):
            for headers in ({}, auth(), {"Authorization": "Bearer wrong"}):
                async with session.get(path, headers=headers) as resp:
                    assert resp.status == 404, (path, headers)
                    assert resp.content_type == "application/problem+json"
                    assert "WWW-Authenticate" not in resp.headers
                    assert (await resp.json())["status"] == 404
        async with session.get("/favicon.ico") as resp:
            assert resp.status == 200 and resp.content_type == "image/svg+xml"
        # A known path still asks for the token, whatever the method.
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/jobs/abc"), ("GET", "/v1/lookups")):
            async with session.request(method, path) as resp:
                assert resp.status == 401, path


async def test_a_jobs_json_says_when_it_was_submitted_started_and_ended(tmp_path: Path) -> None:
    from datetime import datetime

    async with running(tmp_path) as (session, app):
        before = datetime.now().astimezone()
        async with session.post("/v1/jobs", params={"name": "t.csv"},
                                data=f"mask,city\n{CASES[0]['mask']},杭州\n".encode(),
                                headers=auth()) as resp:  # fmt: skip
            job = await resp.json()
        store = job_store(app)
        assert store is not None
        await store.wait(caller_name(TOKENS[0].encode()), job["id"])
        async with session.get(f"/v1/jobs/{job['id']}", headers=auth()) as resp:
            done = await resp.json()
        after = datetime.now().astimezone()
    times = [datetime.fromisoformat(done[k]) for k in ("created", "started", "finished")]
    assert all(t.utcoffset() is not None for t in times)  # with their zone: UTC
    assert before.replace(microsecond=0) <= times[0] <= times[1] <= times[2] <= after
    assert done["created"] == job["created"] and done["created"].endswith("+00:00")


async def test_a_caller_past_its_job_cap_gets_a_429_and_another_caller_does_not(
    tmp_path: Path,
) -> None:
    import asyncio

    gate = asyncio.Event()

    async def handler(phone: str) -> bool:
        await gate.wait()
        return False

    async with running(tmp_path, FakeOrderApi(handler), service_jobs_per_caller=1,
                       service_job_rows_per_caller=3) as (session, _):  # fmt: skip
        async def post(i: int, rows: int = 1) -> aiohttp.ClientResponse:
            data = ("mask\n" + "13905710***\n" * rows).encode()
            async with session.post("/v1/jobs", params={"name": "a.csv"}, data=data,
                                    headers=auth(i)) as resp:  # fmt: skip
                await resp.read()
                return resp

        assert (await post(0)).status == 201
        refused = await post(0)
        assert refused.status == 429 and refused.headers["Retry-After"] == "30"
        assert refused.content_type == "application/problem+json"
        problem = json.loads(refused._body or b"{}")
        assert "you have 1 job queued or running, at most 1" in problem["detail"]
        assert (await post(1, rows=4)).status == 429  # the rows cap
        assert (await post(1, rows=3)).status == 201
        gate.set()


async def test_the_page_is_told_what_happened_not_the_internal_detail(tmp_path: Path) -> None:
    """An API error's own text (an internal address, a Python class name) never reaches the
    page: the streamed result says it in words, in the page's language."""
    from lookup.domain.errors import FatalApiError

    def down(phone: str) -> bool:
        raise FatalApiError("GET http://10.1.2.3:8799/orders?phone={phone} failed: "
                            "connection error ClientConnectorError: Cannot connect")  # fmt: skip

    case = CASES[0]
    body = {"mask": case["mask"], **case["hints"]}
    async with running(tmp_path, FakeOrderApi(down)) as (session, _):
        for lang, words in (("zh-CN", "订单接口出错或无法连接；详情见服务日志"),
                            ("en", "the order API failed or could not be reached")):  # fmt: skip
            headers = {**auth(), "Accept-Language": lang}
            async with session.post("/v1/lookups/stream", json=body, headers=headers) as resp:
                got = await events(resp)
            result = got[-1][1]
            assert result["status"] == "api_error"
            assert words in result["reason"]
            assert "http://" not in json.dumps(result) and "ClientConnectorError" not in json.dumps(result)
