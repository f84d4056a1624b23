"""FakeOrderApi, the base helpers, load_plugin / ThreadedOrderApi, and the package surface."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import lookup.orders
from lookup.domain.errors import ConfigError, FatalApiError, TransientApiError
from lookup.domain.models import CheckOutcome
from lookup.orders import (
    BaseOrderApi,
    BatchOrderApi,
    FakeOrderApi,
    OrderApi,
    ThreadedOrderApi,
    load_plugin,
    mask_phone,
    supports_batch,
)

HIT = "13812341234"
MISS = "13800000000"
TESTS_DIR = Path(__file__).resolve().parents[1] / "support"


# -- mask_phone ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("13812341234", "138****1234"),
        ("call 13812341234 or 13900001111.", "call 138****1234 or 139****1111."),
        ("1381234123", "1381234123"),  # 10 digits: not a number to hide
        ("138123412345", "138123412345"),  # 12 digits: part of something longer
        ("", ""),
    ],
)
def test_mask_phone(text: str, masked: str) -> None:
    assert mask_phone(text) == masked


# -- FakeOrderApi ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (True, CheckOutcome(phone=HIT, has_orders=True)),
        (False, CheckOutcome(phone=HIT, has_orders=False)),
        (3, CheckOutcome(phone=HIT, has_orders=True, order_count=3)),
        (0, CheckOutcome(phone=HIT, has_orders=False, order_count=0)),
        (
            CheckOutcome(phone=HIT, has_orders=True, details={"ids": [1]}),
            CheckOutcome(phone=HIT, has_orders=True, details={"ids": [1]}),
        ),
    ],
)
async def test_fake_handler_answers(answer: Any, expected: CheckOutcome) -> None:
    async with FakeOrderApi(lambda phone: answer) as api:
        assert await api.check(HIT) == expected


async def test_fake_async_handler() -> None:
    async def handler(phone: str) -> int:
        await asyncio.sleep(0)
        return 5 if phone == HIT else 0

    api = FakeOrderApi(handler)
    assert (await api.check(HIT)).order_count == 5
    assert not (await api.check(MISS)).has_orders


async def test_fake_handler_errors_propagate() -> None:
    def handler(phone: str) -> bool:
        raise TransientApiError("busy", status=503, retry_after=1.0)

    api = FakeOrderApi(handler)
    with pytest.raises(TransientApiError) as info:
        await api.check(HIT)
    assert info.value.retry_after == 1.0
    assert api.in_flight == 0


async def test_fake_rejects_answers_of_the_wrong_type() -> None:
    api = FakeOrderApi(lambda phone: "yes")  # type: ignore[arg-type,return-value]
    with pytest.raises(FatalApiError, match=r"returned str for 138\*\*\*\*1234; expected bool"):
        await api.check(HIT)


async def test_from_orders_mapping_and_set() -> None:
    orders = {HIT: 2}
    by_count = FakeOrderApi.from_orders(orders)
    orders[MISS] = 9  # copied: later changes do not leak in
    assert await by_count.check(HIT) == CheckOutcome(phone=HIT, has_orders=True, order_count=2)
    assert await by_count.check(MISS) == CheckOutcome(phone=MISS, has_orders=False, order_count=0)
    by_set = FakeOrderApi.from_orders({HIT})
    assert (await by_set.check(HIT)).has_orders
    assert (await by_set.check(MISS)).order_count is None


async def test_fake_spy_tracks_calls_and_concurrency() -> None:
    api = FakeOrderApi.from_orders({HIT}, latency=0.01)
    phones = [f"1380000000{i}" for i in range(5)] + [HIT]
    outcomes = await asyncio.gather(*(api.check(p) for p in phones))
    assert [o.has_orders for o in outcomes] == [False] * 5 + [True]
    assert api.calls == phones
    assert api.max_in_flight == 6
    assert api.in_flight == 0


async def test_fake_counts_in_flight_even_without_latency() -> None:
    api = FakeOrderApi(lambda phone: False)
    await asyncio.gather(*(api.check(MISS) for _ in range(3)))
    assert api.max_in_flight == 3


async def test_fake_check_many() -> None:
    assert not supports_batch(FakeOrderApi.from_orders({HIT: 1}))  # single checks by default
    api = FakeOrderApi.from_orders({HIT: 1}, batch=True)
    assert supports_batch(api)
    outcomes = await api.check_many([HIT, MISS, HIT])
    assert outcomes == {
        HIT: CheckOutcome(phone=HIT, has_orders=True, order_count=1),
        MISS: CheckOutcome(phone=MISS, has_orders=False, order_count=0),
    }
    assert api.batches == [[HIT, MISS]]
    assert api.calls == [HIT, MISS]


async def test_fake_lifecycle() -> None:
    api = FakeOrderApi.from_orders(set())
    async with api:
        assert not api.closed
    assert api.closed
    with pytest.raises(RuntimeError, match="closed"):
        await api.check(HIT)
    await api.aclose()  # idempotent


def test_fake_is_an_order_api() -> None:
    api = FakeOrderApi.from_orders(set())
    assert isinstance(api, OrderApi)
    assert isinstance(api, BatchOrderApi)
    assert isinstance(api, BaseOrderApi)


# -- BaseOrderApi / supports_batch -------------------------------------------------


async def test_base_order_api_closes_on_exit() -> None:
    class Api(BaseOrderApi):
        closed = False

        async def check(self, phone: str) -> CheckOutcome:
            return CheckOutcome(phone=phone, has_orders=False)

        async def aclose(self) -> None:
            self.closed = True

    with pytest.raises(TypeError):
        BaseOrderApi()  # type: ignore[abstract]
    async with Api() as api:
        assert not (await api.check(HIT)).has_orders
    assert api.closed
    assert isinstance(api, OrderApi)
    assert not supports_batch(api)


# -- load_plugin -------------------------------------------------------------------


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    import plugins_for_tests

    return plugins_for_tests


async def test_plugin_full_async_object_is_used_as_is(plugins: ModuleType) -> None:
    api = load_plugin("plugins_for_tests:full_async_api")
    assert api is plugins.full_async_api


async def test_plugin_sync_class_runs_in_threads(plugins: ModuleType) -> None:
    api = load_plugin("plugins_for_tests:SyncApi", orders={HIT: 3})
    assert isinstance(api, ThreadedOrderApi)
    assert isinstance(api, OrderApi)
    target = api._target
    async with api:
        assert await api.check(HIT) == CheckOutcome(phone=HIT, has_orders=True, order_count=3)
        assert not (await api.check(MISS)).has_orders
        with pytest.raises(TransientApiError, match="flaky"):
            await api.check(plugins.FLAKY)
    main = threading.get_ident()
    assert target.check_threads and main not in target.check_threads
    assert len(target.close_threads) == 1 and main not in target.close_threads
    await api.aclose()  # idempotent: close() is not called again
    assert len(target.close_threads) == 1
    with pytest.raises(RuntimeError, match="closed"):
        await api.check(HIT)


async def test_plugin_sync_check_many(plugins: ModuleType) -> None:
    api = load_plugin("plugins_for_tests:SyncApi")
    assert supports_batch(api)
    async with api:
        outcomes = await api.check_many([HIT, MISS])
    assert outcomes[HIT].order_count == 2
    assert not outcomes[MISS].has_orders


async def test_plugin_factory_with_options(plugins: ModuleType) -> None:
    api = load_plugin("plugins_for_tests:make_sync_api", orders={MISS: 1})
    async with api:
        assert (await api.check(MISS)).order_count == 1


async def test_plugin_dotted_attribute_and_bool_answers(plugins: ModuleType) -> None:
    api = load_plugin("plugins_for_tests:Factories.bool_api")
    assert isinstance(api, ThreadedOrderApi)
    assert not supports_batch(api)
    async with api:  # no close() on the plug-in: nothing to call
        assert await api.check(HIT) == CheckOutcome(phone=HIT, has_orders=True)
        with pytest.raises(ConfigError, match="no check_many"):
            await api.check_many([HIT])


async def test_plugin_async_check_only_gets_a_lifecycle(plugins: ModuleType) -> None:
    api = load_plugin("plugins_for_tests:AsyncCheckOnly")
    assert not isinstance(api, ThreadedOrderApi)
    target = api._target  # type: ignore[attr-defined]
    async with api:
        assert await api.check(HIT) == CheckOutcome(phone=HIT, has_orders=True)
    await api.aclose()
    assert target.closed == 1


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("plugins_for_tests", {}, "expected the form 'package.module:attr'"),
        ("plugins_for_tests:", {}, "expected the form 'package.module:attr'"),
        (":SyncApi", {}, "expected the form 'package.module:attr'"),
        ("no_such_module_xyz:Api", {}, "'no_such_module_xyz' not found"),
        ("plugins_for_tests:Missing", {}, "has no attribute 'Missing'"),
        ("plugins_for_tests:NOT_AN_API", {}, "is a int, not an object with a check"),
        ("plugins_for_tests:NoCheck", {}, r"without a check\(phone\) method"),
        ("plugins_for_tests:returns_nothing_useful", {}, r"without a check\(phone\) method"),
        ("plugins_for_tests:full_async_api", {"x": 1}, "takes no options"),
        ("plugins_for_tests:make_sync_api", {"bogus": 1}, "with options"),
    ],
)
def test_bad_plugin_specs(
    plugins: ModuleType, spec: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_plugin(spec, **kwargs)


def test_plugin_module_with_a_missing_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plugin_needing_dep_xyz.py").write_text("import dependency_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="needs 'dependency_not_installed_xyz'"):
        load_plugin("plugin_needing_dep_xyz:Api")
    sys.modules.pop("plugin_needing_dep_xyz", None)


# -- package surface ---------------------------------------------------------------


def test_all_names_resolve() -> None:
    for name in lookup.orders.__all__:
        assert getattr(lookup.orders, name) is not None
    assert set(lookup.orders.__all__) <= set(dir(lookup.orders))
    with pytest.raises(AttributeError):
        _ = lookup.orders.no_such_name


def test_importing_the_package_does_not_import_aiohttp() -> None:
    code = (
        "import sys, lookup.orders\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported eagerly'\n"
        "lookup.orders.HttpOrderApi\n"
        "assert 'aiohttp' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=TESTS_DIR.parents[1])


@pytest.mark.parametrize("value", [-1, "1", None, 1.5])
def test_outcome_from_refuses_what_is_not_a_count_or_a_bool(value: object) -> None:
    from lookup.orders.base import outcome_from

    with pytest.raises(FatalApiError, match="unexpected answer"):
        outcome_from("13812345678", value)


# -- a plug-in is an OrderApi, a class or a factory; nothing else is called ------------


_TARGETS = '''
calls = []


class Counted:
    """No check(): must not be instantiated."""

    def __init__(self):
        calls.append("Counted")


async def async_factory():
    calls.append("async_factory")


class CallableThing:
    def __call__(self):
        calls.append("CallableThing")


callable_thing = CallableThing()
'''


@pytest.mark.parametrize(
    ("attr", "match"),
    [
        ("Counted", "class without a check"),
        ("async_factory", "is an async function"),
        ("callable_thing", "not an object with a check"),
        ("calls", "is a list"),
    ],
)
def test_plugin_targets_that_are_not_apis_are_never_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attr: str, match: str
) -> None:
    (tmp_path / "plugin_targets_xyz.py").write_text(_TARGETS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(ConfigError, match=match):
            load_plugin(f"plugin_targets_xyz:{attr}")
        assert sys.modules["plugin_targets_xyz"].calls == []
    finally:
        sys.modules.pop("plugin_targets_xyz", None)


@pytest.mark.parametrize("spec", ["os:system", "builtins:print", "time:sleep"])
def test_builtins_and_library_functions_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError):
        load_plugin(spec)
