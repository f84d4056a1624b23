"""The service keeps its published contract: schemathesis against `lookup serve --api demo`.

Every operation of ``/openapi.json`` is fuzzed through the examples, coverage and fuzzing
phases, with positive and negative data, and every check schemathesis has. Two of them
are sharpened where the contract says more than the schema can:

* a lookup whose body fits the schema may still be bad *input* (a mask with no such
  segment, an unknown city): that is a 422 ``invalid-input`` problem, never an
  ``invalid-body`` one (``positive_data_acceptance`` accepts 422, and
  :func:`fits_the_schema_is_not_invalid_body` tells the two apart);
* a batch answers an item that breaks the schema as an ``invalid`` result naming the item's
  fields, the other items still run (:func:`bad_items_answered_one_by_one` replaces
  ``negative_data_rejection`` for that operation only).

Bounded: a handful of examples per operation, no shrinking, a fixed seed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import CheckContext
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.specs.openapi.checks import negative_data_rejection

from lookup.runtime.settings import Settings
from lookup.service.app import create_app, openapi

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "a-contract-token-long-enough"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``lookup serve --api demo`` on a free loopback port, with a token; its URL."""
    tmp = tmp_path_factory.mktemp("contract")
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")},
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "LOOKUP_SERVICE_TOKENS": json.dumps([TOKEN]),
        "LOOKUP_SERVICE_JOBS_DIR": str(tmp / "jobs"),
    }
    with (tmp / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lookup", "serve", "--api", "demo", "--port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no listening line within 30 s"
        line = proc.stdout.readline()
        assert line.startswith("lookup service listening on http://127.0.0.1:"), line
        proc.stdout.close()
        yield line.split()[4]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        log = (tmp / "stderr.txt").read_text()
        assert "Traceback" not in log, log[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


CONFIG = SchemathesisConfig.from_dict({
    "seed": 19,
    "headers": AUTH,
    "generation": {"max-examples": MAX_EXAMPLES, "no-shrink": True,
                   "mode": "all"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
               "fuzzing": {"enabled": True}},
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]}},
})  # fmt: skip


def _settings() -> Settings:
    return Settings(service_tokens=[SecretStr(TOKEN)])


# The document of an app with the served one's settings (schemathesis' lazy loading from
# a fixture does not run on pytest 9); test_the_served_document_is_this_one compares.
DOCUMENT = openapi(create_app(_settings()))
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
schemathesis.serializer.alias("application/x-ndjson", "text/plain")  # a JSONL upload is text


def _problem_type(response: Any) -> str:
    try:
        return str(json.loads(response.content).get("type", ""))
    except (ValueError, AttributeError):
        return ""


def _whole_floats(node: Any) -> bool:
    if isinstance(node, float):
        return node.is_integer()
    if isinstance(node, dict):
        return any(_whole_floats(v) for v in node.values())
    if isinstance(node, list):
        return any(_whole_floats(v) for v in node)
    return False


def fits_the_schema_is_not_invalid_body(ctx: CheckContext, response: Any, case: Any) -> None:
    """A body that fits the schema is never refused as breaking it.

    Except 698.0 for an integer: JSON Schema calls it an integer, the service's strict
    integers do not (and schemathesis' own negative phase expects it refused).
    """
    del ctx
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return
    if _whole_floats(case.body):
        return
    if _problem_type(response).endswith("problem-invalid-body"):
        raise Failure(
            operation=case.operation.label, title="Schema-valid body refused as invalid-body",
            message=response.content.decode(errors="replace")[:500],
        )  # fmt: skip


def bad_items_answered_one_by_one(ctx: CheckContext, response: Any, case: Any) -> None:
    """A batch that breaks the schema: a 4xx, or a 200 where a bad item is ``invalid``."""
    del ctx
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return
    if 400 <= response.status_code < 500:
        return
    results = json.loads(response.content).get("results", []) if response.status_code == 200 else []
    if not any(r.get("status") == "invalid" for r in results):
        raise Failure(
            operation=case.operation.label, title="Bad batch accepted without an invalid item",
            message=f"{response.status_code}: {response.content[:300]!r}",
        )  # fmt: skip


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_keeps_the_contract(case: Any, served: str) -> None:
    batch = case.operation.label == "POST /v1/lookups/batch"
    case.call_and_validate(
        base_url=served, headers=AUTH, timeout=30,
        excluded_checks=[negative_data_rejection] if batch else [],
        additional_checks=[fits_the_schema_is_not_invalid_body,
                           *([bad_items_answered_one_by_one] if batch else [])],
    )  # fmt: skip


def test_the_served_document_is_this_one(served: str) -> None:
    with urllib.request.urlopen(f"{served}/openapi.json", timeout=10) as resp:
        assert json.load(resp) == DOCUMENT


def test_the_documented_example_finds_a_number(served: str) -> None:
    """The request example of /openapi.json is a demo case, and it matches."""
    with urllib.request.urlopen(f"{served}/openapi.json", timeout=10) as resp:
        doc = json.load(resp)
    example = doc["components"]["schemas"]["LookupRequest"]["examples"][0]
    cases = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
    case = next(c for c in cases if c["mask"] == example["mask"] and c["hints"] == {
        k: v for k, v in example.items() if k != "mask"})  # fmt: skip
    request = urllib.request.Request(
        f"{served}/v1/lookups", data=json.dumps(example).encode(),
        headers={"Content-Type": "application/json", **AUTH},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as resp:
        result = json.load(resp)
    assert (result["status"], result["phone"]) == ("matched", case["expected_phone"])
    assert case["expected_status"] == "matched"
