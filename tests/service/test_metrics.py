"""/metrics after one lookup from each surface, read with prometheus_client's parsers."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from lookup import __version__
from lookup.domain.segments import SegmentDB
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.app import create_app, serving
from lookup.service.desk import job_store
from lookup.service.http import caller_name

TOKEN = "a-metrics-token-long-enough"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HIT = {"mask": "138****2046", "city": "杭州"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def samples(families: object) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families for s in family.samples}  # type: ignore[attr-defined]  # fmt: skip


async def test_every_surface_is_counted_in_both_expositions(tmp_path: Path) -> None:
    settings = Settings(rate=None, service_tokens=[SecretStr(TOKEN)], service_jobs_dir=tmp_path)
    app = create_app(settings, api=FakeOrderApi.from_orders({"13857152046": 2}))
    async with serving(app) as url, aiohttp.ClientSession(url, headers=AUTH) as session:
        async with session.post("/v1/lookups", json=HIT) as resp:
            assert (await resp.json())["status"] == "matched"
        async with session.post("/v1/lookups", json=HIT,
                                headers={"Accept": "text/event-stream"}) as resp:  # fmt: skip
            assert "event: result" in await resp.text()
        async with session.post("/v1/lookups/batch", json={"lookups": [HIT, {"mask": "1"}]}) as resp:
            assert [r["status"] for r in (await resp.json())["results"]] == ["matched", "invalid"]
        form = aiohttp.FormData()
        form.add_field("file", b"mask,city\n138****2046,\xe6\x9d\xad\xe5\xb7\x9e\n",
                       filename="rows.csv", content_type="text/csv")  # fmt: skip
        async with session.post("/v1/jobs", data=form) as resp:
            assert resp.status == 201
            job_id = (await resp.json())["id"]
        store = job_store(app)
        assert store is not None
        job = await store.wait(caller_name(TOKEN.encode()), job_id)
        assert job.counts["matched"] == 1
        async with session.get("/metrics") as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = samples(text_string_to_metric_families(await resp.text()))
        async with session.get("/metrics",
                               headers={"Accept": "application/openmetrics-text"}) as resp:  # fmt: skip
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            body = await resp.text()
            assert body.endswith("# EOF\n")
            opened = samples(openmetrics_families(body))
    for found in (text, opened):
        lookups = {labels: v for (name, labels), v in found.items()
                   if name == "lookup_lookups_total" and v}  # fmt: skip
        assert lookups == {
            (("status", "matched"), ("surface", "service")): 1,
            (("status", "matched"), ("surface", "stream")): 1,
            (("status", "matched"), ("surface", "service_batch")): 1,
            (("status", "invalid"), ("surface", "service_batch")): 1,
            (("status", "matched"), ("surface", "job")): 1,
        }
        build = (("data_version", SegmentDB.default().version), ("loop", "asyncio"),
                 ("version", __version__))  # fmt: skip
        assert found[("lookup_build_info", build)] == 1
        assert found[("lookup_numbers_checked_total", (("outcome", "hit"),))] >= 1
        answered = found[("lookup_api_requests_total", (("outcome", "answered"),))]
        latency = found[("lookup_api_request_duration_seconds_count", (("outcome", "answered"),))]
        assert answered == latency >= 1
        route = (("route", "/v1/lookups"),)
        assert found[("lookup_http_request_duration_seconds_count", route)] == 2
        assert found[("lookup_http_requests_total", (*route, ("status", "200")))] == 2
        assert any(name.startswith("python_gc_") for name, _ in found)
        assert any(name == "python_info" for name, _ in found)
        assert not any(name.startswith(("lookup_checks", "lookup_check_")) for name, _ in found)
