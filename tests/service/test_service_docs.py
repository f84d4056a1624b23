"""/openapi.json, /docs, /metrics additions, short tokens and `lookup serve` start-up errors."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from openapi_spec_validator import validate
from pydantic import SecretStr

from lookup.cli.main import main as cli_main
from lookup.domain.errors import ConfigError
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.app import check_exposure, create_app, openapi, serving
from lookup.service.openapi import UndescribedRouteError

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a-service-token-long-enough"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def make_settings(**kw: Any) -> Settings:
    kw.setdefault("rate", None)
    kw["service_tokens"] = [SecretStr(t) for t in kw.get("service_tokens", [TOKEN])]
    return Settings(**kw)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    app = create_app(make_settings(), api=FakeOrderApi.from_orders({"13857152046": 1}))
    async with serving(app) as url, aiohttp.ClientSession(url) as client:
        yield client


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node))
    return set()


async def test_openapi_document_is_valid_3_1_and_needs_no_token(
    session: aiohttp.ClientSession,
) -> None:
    async with session.get("/openapi.json") as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # openapi-spec-validator: a valid OpenAPI 3.1 document
    assert {(path, method) for path, ops in doc["paths"].items() for method in ops} == {
        ("/v1/lookups", "post"), ("/v1/lookups/stream", "post"), ("/v1/lookups/batch", "post"),
        ("/v1/segments/{seven}", "get"), ("/v1/reveal", "post"), ("/v1/jobs", "get"),
        ("/v1/jobs", "post"), ("/v1/jobs/{id}", "get"), ("/v1/jobs/{id}", "delete"),
        ("/v1/jobs/{id}/results", "get"), ("/healthz", "get"), ("/metrics", "get"),
        ("/openapi.json", "get"), ("/docs", "get"), ("/", "get"), ("/assets/{name}", "get"),
        ("/favicon.ico", "get"),
    }  # fmt: skip
    schemas = doc["components"]["schemas"]
    assert {"LookupRequest", "LookupResult", "BatchRequest", "BatchResponse", "Problem"} <= set(
        schemas
    )
    for ref in refs(doc):  # every reference resolves inside the document
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas
    post = doc["paths"]["/v1/lookups"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/LookupRequest"}
    assert schemas["LookupRequest"]["properties"]["mask"]["maxLength"] == 64
    assert {"200", "401", "413", "415", "422", "429", "500"} <= set(post["responses"])
    problem = post["responses"]["422"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert post["security"] == [{"bearer": []}]


async def test_docs_page_is_readable_html_without_any_external_asset(
    session: aiohttp.ClientSession,
) -> None:
    async with session.get("/docs") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        page = await resp.text()
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing off the page
    assert "default-src 'none'" in csp
    style = re.search(r"<style>(.*?)</style>", page, re.DOTALL)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp  # the inline style is the one the CSP allows
    for text in (
        "/v1/lookups",
        "/v1/lookups/batch",
        "/v1/segments/{seven}",
        "LookupRequest",
        'id="problem-too-many-queued"',
        'id="schema-LookupResult"',
        "max_candidates",
    ):
        assert text in page, text  # fmt: skip


async def test_metrics_have_the_process_http_requests_by_route_and_no_created(
    session: aiohttp.ClientSession,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/v1/segments/1380571", "/v1/segments/1380572", "/v1/segments/1000000"):
        async with session.get(path, headers=headers) as resp:
            assert resp.status in (200, 404)
    async with session.get("/v1/segments/1380571") as resp:
        assert resp.status == 401
    async with session.get("/no/such/13800138000") as resp:
        assert resp.status == 404  # no such route: 404 before any token is asked for
    async with session.post(
        "/v1/lookups", json={"mask": "138****2046", "city": "杭州"}, headers=headers
    ) as resp:
        assert resp.status == 200
    async with session.get("/metrics", headers=headers) as resp:
        text = await resp.text()
    assert "_created" not in text
    assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text
    route = 'lookup_http_requests_total{route="/v1/segments/{seven}",status="%s"} %s'
    assert route % ("200", "2.0") in text
    assert route % ("404", "1.0") in text
    assert route % ("401", "1.0") in text
    assert 'lookup_http_requests_total{route="/v1/lookups",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "1380571" not in text and "13800138000" not in text  # never the raw path
    assert 'lookup_api_requests_total{outcome="timeout"}' in text
    assert 'lookup_api_requests_total{outcome="throttled"}' in text
    assert 'lookup_numbers_checked_total{outcome="hit"} 1.0' in text
    assert 'lookup_http_request_duration_seconds_count{route="/v1/segments/{seven}"} 4.0' in text
    assert "python_gc_collections_total" in text and "python_info{" in text
    assert 'lookup_build_info{data_version="' in text and 'loop="asyncio"' in text


def test_short_tokens_are_refused_off_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="fewer than 16 characters"):
        check_exposure(make_settings(service_tokens=["short-token"], service_host="0.0.0.0"))
    check_exposure(make_settings(service_tokens=["short-token"], service_host="127.0.0.1"))
    check_exposure(make_settings(service_tokens=["x" * 16], service_host="0.0.0.0"))
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setenv("LOOKUP_SERVICE_TOKENS", '["abc"]')
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--api", "demo"]
    assert cli_main(argv, stdout=out, stderr=err) == 2
    assert "service token #1 has fewer than 16 characters" in err.getvalue()
    assert "abc" not in err.getvalue() and out.getvalue() == ""


def serve(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOKUP_SERVICE_TOKENS": json.dumps([TOKEN])}
    return subprocess.Popen(
        [sys.executable, "-m", "lookup", "serve", "--api", "demo", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_serve_on_a_busy_port_or_an_address_not_of_this_host_is_a_one_line_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = serve("--port", str(port))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"cannot listen on 127.0.0.1 port {port}" in err and "--port" in err
    # TEST-NET-1 (RFC 5737): not an address of this machine; binding sends nothing
    proc = serve("--host", "192.0.2.1", "--port", "0")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "cannot listen on 192.0.2.1" in err, err
    assert out == ""


def test_serve_accepts_a_bracketed_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    proc = serve("--host", "[::1]", "--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("lookup service listening on http://[::1]:"), line + (
            proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_every_route_is_in_the_document_and_an_undescribed_one_is_refused() -> None:
    app = create_app(make_settings(), api=FakeOrderApi.from_orders({}))
    routes = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}  # fmt: skip
    doc = openapi(app)
    assert routes == {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    # a worker of --workers N serves and describes the same routes (jobs included)
    worker = create_app(make_settings(), api=FakeOrderApi.from_orders({}), worker="1")
    assert openapi(worker) == doc

    async def extra(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/v1/extra", extra)
    with pytest.raises(UndescribedRouteError, match="GET /v1/extra"):
        openapi(app)


def test_the_document_names_its_enums_and_states_the_service_caps() -> None:
    app = create_app(make_settings(max_candidates=5_000, service_max_batch=20),
                     api=FakeOrderApi.from_orders({}))  # fmt: skip
    doc = openapi(app)
    validate(doc)
    schemas = doc["components"]["schemas"]

    def inline_enums(node: Any, top: bool) -> int:
        if isinstance(node, dict):
            here = int(not top and ("enum" in node or "const" in node))
            return here + sum(inline_enums(v, False) for v in node.values())
        if isinstance(node, list):
            return sum(inline_enums(v, False) for v in node)
        return 0

    assert inline_enums(doc["paths"], False) == 0
    assert sum(inline_enums(s, True) for s in schemas.values()) == 0
    for name in ("LookupStatus", "Mode", "TierName", "TierStatus", "RowStatus", "JobState",
                 "InputFormat", "HealthStatus", "StreamEventName"):  # fmt: skip
        assert "enum" in schemas[name], name
    cap = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 5_000}, {"type": "null"}]}
    for model in ("LookupRequest", "BatchRequest"):
        assert {k: v for k, v in schemas[model]["properties"]["max_candidates"].items()
                if k == "anyOf"} == cap  # fmt: skip
    lookups = schemas["BatchRequest"]["properties"]["lookups"]
    assert lookups["items"] == {"$ref": "#/components/schemas/BatchItem"}
    assert lookups["maxItems"] == 20
    segment = doc["paths"]["/v1/segments/{seven}"]["get"]["responses"]["200"]
    assert segment["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SegmentInfo"}  # fmt: skip
    assert schemas["LookupRequest"]["examples"] == [{"mask": "138****2046", "city": "杭州"}]
    assert schemas["LookupResult"]["properties"]["checks_sent"]["deprecated"] is True


async def test_strict_integers_a_boolean_or_a_float_is_a_422(
    session: aiohttp.ClientSession,
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path, body in (
        ("/v1/lookups", {"mask": "138****2046", "max_candidates": True}),
        ("/v1/lookups", {"mask": "138****2046", "max_candidates": 6347000.0}),
        ("/v1/lookups/batch", {"lookups": [], "max_candidates": 100.0}),
        ("/v1/lookups/batch", {"lookups": [{"id": True, "mask": "138****2046"}]}),
    ):
        async with session.post(path, json=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
        if path.endswith("batch") and "lookups" in body and body["lookups"]:
            # a bad item is answered on its own, naming its field
            assert resp.status == 200, answer
            assert answer["results"][0]["status"] == "invalid"
            assert answer["results"][0]["errors"][0]["field"].startswith("lookups.0.id")
        else:
            assert resp.status == 422, (body, answer)
            assert answer["errors"][0]["field"] == "max_candidates"
