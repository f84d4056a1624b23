"""Tests of lookup.engine.threads: ``find_sync`` and ``LookupClient`` from plain threads.

The HTTP cases talk to the bundled mock order API run as a separate process
(``python -m lookup.mockapi --port 0``) on loopback, so that its event loop is not the
client's and not the test's.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import select
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lookup.domain.models import Limits, LookupResult
from lookup.engine.threads import LookupClient, find_sync
from lookup.orders import FakeOrderApi
from lookup.orders.http import Timeouts

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
with (ROOT / "data" / "demo_orders.csv").open(encoding="utf-8-sig", newline="") as _f:
    ORDERS = {row["phone"]: int(row["total"]) for row in csv.DictReader(_f)}
FAST = Limits(max_in_flight=64, max_per_second=None)
SMALL = "139057100**"  # 100 candidates in 杭州, none with demo orders
# The demo cases that need few checks (city, province, area code, not found): ~1,400
# requests in all, so that 32 threads stay quick against a mock on a slow machine.
CHEAP = [c for c in CASES if c["expected_tier"] in ("city", "province", None)]


def check_case(result: LookupResult, case: dict[str, Any]) -> None:
    assert result.status == case["expected_status"], (case["name"], result.reason)
    assert result.phone == case["expected_phone"], case["name"]
    assert result.tier == case["expected_tier"], case["name"]


def run_in_threads(fn: Callable[[], Any], n: int) -> list[Any]:
    """Run ``fn`` in ``n`` plain threads (no event loop in any); return results or errors."""
    out: list[Any] = [None] * n
    start = threading.Barrier(n)

    def body(i: int) -> None:
        start.wait()
        try:
            out[i] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            out[i] = exc

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    return out


# -- the mock order API in its own process ----------------------------------------------------


@contextlib.contextmanager
def mock_process(*args: str) -> Iterator[str]:
    """Start ``python -m lookup.mockapi --port 0 ARGS``; yield its base URL; stop it."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lookup.mockapi", "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            line = proc.stdout.readline() if ready else ""
            if not line.startswith("listening on http://127.0.0.1:"):
                err.seek(0)
                pytest.fail(f"mock API did not start: {line!r} {err.read()}")
            yield line.split()[-1]
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def orders_url(base: str) -> str:
    return f"{base}/orders?phone={{phone}}"


def mock_stats(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/stats", timeout=10) as resp:
        stats: dict[str, Any] = json.load(resp)
        return stats


@pytest.fixture(scope="module")
def mock_base() -> Iterator[str]:
    with mock_process() as base:
        yield base


@pytest.fixture(scope="module")
def hanging_base() -> Iterator[str]:
    with mock_process("--hang-rate", "1") as base:
        yield base


# -- find_sync ---------------------------------------------------------------------------------


def test_find_sync_from_plain_threads_with_an_instance() -> None:
    api = FakeOrderApi.from_orders(ORDERS)
    cases = [c for c in CASES for _ in range(2)]
    it = iter(cases)
    lock = threading.Lock()

    def one() -> tuple[dict[str, Any], LookupResult]:
        with lock:
            case = next(it)
        return case, find_sync(case["mask"], api=api, limits=FAST, **case["hints"])

    for item in run_in_threads(one, len(cases)):
        assert not isinstance(item, BaseException), repr(item)
        check_case(item[1], item[0])
    assert not api.closed  # a ready object belongs to the caller


def test_find_sync_with_a_factory_opens_and_closes_one_api_per_call() -> None:
    made: list[FakeOrderApi] = []
    lock = threading.Lock()

    def factory() -> FakeOrderApi:
        api = FakeOrderApi.from_orders(ORDERS)
        with lock:
            made.append(api)
        return api

    case = CASES[0]
    results = run_in_threads(
        lambda: find_sync(case["mask"], api=factory, limits=FAST, **case["hints"]), 3
    )
    for result in results:
        assert isinstance(result, LookupResult), repr(result)
        check_case(result, case)
    assert len(made) == 3
    assert all(api.closed and api.calls for api in made)


def test_find_sync_with_a_url(mock_base: str) -> None:
    case = next(c for c in CASES if c["expected_tier"] == "province")
    (result,) = run_in_threads(
        lambda: find_sync(case["mask"], api=orders_url(mock_base), limits=FAST, **case["hints"]),
        1,
    )
    assert isinstance(result, LookupResult), repr(result)
    check_case(result, case)


def test_find_sync_from_a_thread_whose_own_loop_is_running() -> None:
    case = CASES[0]
    api = FakeOrderApi.from_orders(ORDERS)

    def in_thread() -> LookupResult:
        async def main() -> LookupResult:
            # Blocks this loop, but the lookup runs on the shared background loop.
            return find_sync(case["mask"], api=api, limits=FAST, **case["hints"])

        return asyncio.run(main())

    with ThreadPoolExecutor(2) as pool:
        results = [f.result(30) for f in [pool.submit(in_thread) for _ in range(2)]]
    for result in results:
        check_case(result, case)


def test_find_sync_timeout_against_a_hanging_mock(hanging_base: str) -> None:
    with pytest.raises(TimeoutError):
        find_sync(
            SMALL,
            api=orders_url(hanging_base),
            city="杭州",
            limits=FAST,
            timeout=0.5,
            http_options={"timeouts": Timeouts(connect=5, read=30, total=30)},
        )
    # The shared loop is still good.
    result = find_sync(SMALL, api=FakeOrderApi(lambda p: False), city="杭州", limits=FAST)
    assert result.status == "not_found"


# -- LookupClient ------------------------------------------------------------------------------


def test_lookup_client_shared_by_32_threads(mock_base: str) -> None:
    before = mock_stats(mock_base)["orders_requests"]
    cases = [CHEAP[i % len(CHEAP)] for i in range(32)]
    with LookupClient(orders_url(mock_base), limits=FAST) as client, ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(client.find, c["mask"], timeout=60, **c["hints"]) for c in cases]
        results = [f.result(90) for f in futures]
        for case, result in zip(cases, results, strict=True):
            check_case(result, case)
        counters = client.checker.counters
        # One checker for every thread: its counters hold every lookup's requests.
        assert counters.requests == sum(r.checks_sent for r in results)
        # The server saw them, less those cancelled after a hit before they went out.
        served = mock_stats(mock_base)["orders_requests"] - before
        assert counters.requests - 64 * len(cases) <= served <= counters.requests
        # Repeated masks were answered from the cache or joined a check in flight.
        assert counters.cache_hits + counters.deduped > 0
        assert counters.in_flight == 0


def test_lookup_client_with_an_instance_and_a_factory() -> None:
    case = CASES[1]
    api = FakeOrderApi.from_orders(ORDERS)
    with LookupClient(api, limits=FAST) as client:
        check_case(client.find(case["mask"], **case["hints"]), case)
    assert api.closed  # the client opened it, so the client closed it

    made: list[FakeOrderApi] = []

    def factory() -> FakeOrderApi:
        made.append(FakeOrderApi.from_orders(ORDERS))
        return made[-1]

    client = LookupClient(factory, limits=FAST)
    for _ in range(3):
        check_case(client.find(case["mask"], **case["hints"]), case)
    client.close()
    assert len(made) == 1 and made[0].closed


def test_lookup_client_find_from_its_own_loop_thread_raises() -> None:
    errors: list[BaseException] = []
    api = FakeOrderApi.from_orders(ORDERS)
    with LookupClient(api, limits=FAST) as client:

        def progress(tier: str, answered: int, count: int) -> None:
            if not errors:  # runs on the client's loop thread
                try:
                    client.find(SMALL, city="杭州")
                except BaseException as exc:  # noqa: BLE001 - inspected below
                    errors.append(exc)

        case = CASES[0]
        check_case(client.find(case["mask"], progress=progress, **case["hints"]), case)
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "own event loop" in str(errors[0])


def test_lookup_client_close_is_idempotent_and_a_closed_client_refuses() -> None:
    api = FakeOrderApi.from_orders(ORDERS)
    client = LookupClient(api, limits=FAST)
    assert client.find(SMALL, city="杭州").status == "not_found"
    client.close()
    client.close()
    assert api.closed
    with pytest.raises(RuntimeError, match="closed"):
        client.find(SMALL, city="杭州")
    with pytest.raises(RuntimeError, match="closed"):
        client.start()
    with pytest.raises(RuntimeError, match="closed"):
        _ = client.checker

    never_used = LookupClient(FakeOrderApi(lambda p: False))
    never_used.close()
    never_used.close()
    with pytest.raises(RuntimeError, match="closed"):
        never_used.find(SMALL, city="杭州")

    with LookupClient(FakeOrderApi(lambda p: False), limits=FAST) as ctx:
        ctx.find(SMALL, city="杭州")
    with pytest.raises(RuntimeError, match="closed"):
        ctx.find(SMALL, city="杭州")


def test_lookup_client_timeout_against_a_hanging_mock(hanging_base: str) -> None:
    client = LookupClient(
        orders_url(hanging_base),
        limits=Limits(max_in_flight=8, max_per_second=None),
        http_options={"timeouts": Timeouts(connect=5, read=30, total=30)},
    )
    try:
        with pytest.raises(TimeoutError):
            client.find(SMALL, city="杭州", timeout=0.5)
        with pytest.raises(TimeoutError):  # the client is still usable: it times out again
            client.find(SMALL, city="杭州", timeout=0.2)
    finally:
        client.close()
    client.close()
