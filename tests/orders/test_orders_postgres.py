"""The PostgreSQL order source against a real server the tests start (tests/pg_fixture.py).

Without PostgreSQL installed the server tests skip with the reason on a developer machine
and fail when ``CI=true`` (.ci/run installs Debian's ``postgresql``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import pytest
from support.pg_fixture import PASSWORD, PgServer, find_bin_dir

import lookup
from lookup.domain.errors import ConfigError, FatalApiError, TransientApiError
from lookup.domain.masks import parse_mask
from lookup.domain.models import CheckOutcome, Limits
from lookup.domain.privacy import redact_url
from lookup.mockapi.pgseed import read_orders, seed
from lookup.orders.base import supports_batch
from lookup.orders.postgres import PostgresOrderApi, build_query, whole_segments
from lookup.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
FAST = Limits(max_per_second=None, max_in_flight=16, backoff_base=0.001, backoff_cap=0.01)
SYNTHETIC = 2_000


def _synthetic_orders() -> dict[str, int]:
    """The demo orders plus seeded random numbers that fit no demo mask."""
    orders = read_orders()
    wanted = len(orders) + SYNTHETIC
    masks = [parse_mask(c["mask"]) for c in CASES]
    rng = random.Random(20261122)
    prefixes = ["130", "133", "135", "138", "139", "150", "158", "177", "186", "189", "199"]
    while len(orders) < wanted:
        number = rng.choice(prefixes) + f"{rng.randrange(100_000_000):08d}"
        if number not in orders and not any(m.matches(number) for m in masks):
            orders[number] = rng.randint(1, 3)
    return orders


def _require_bin() -> Path:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql): initdb not found"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return bin_dir


def _start(orders: Mapping[str, int] | None) -> PgServer:
    server = PgServer(_require_bin())
    try:
        server.start()
        if orders is not None:
            asyncio.run(seed(server.dsn, orders))
    except BaseException:
        server.cleanup()
        raise
    return server


@pytest.fixture(scope="module")
def orders() -> dict[str, int]:
    return _synthetic_orders()


@pytest.fixture(scope="module")
def pg(orders: dict[str, int]) -> Iterator[PgServer]:
    server = _start(orders)
    yield server
    server.cleanup()


@pytest.fixture
async def api(pg: PgServer) -> AsyncIterator[PostgresOrderApi]:
    async with PostgresOrderApi(pg.dsn, pool_size=8) as opened:
        yield opened


# -- the adapter itself ------------------------------------------------------------------------


async def test_check_many_is_one_query(api: PostgresOrderApi, orders: dict[str, int]) -> None:
    hits = sorted(orders)[:3]
    misses = [f"1380000{i:04d}" for i in range(97) if f"1380000{i:04d}" not in orders]
    before = api.queries
    outcomes = await api.check_many([*hits, *misses, hits[0]])
    assert api.queries == before + 1
    assert set(outcomes) == {*hits, *misses}
    for phone in hits:
        assert outcomes[phone] == CheckOutcome(
            phone=phone, has_orders=True, order_count=orders[phone]
        )
    assert not any(outcomes[p].has_orders for p in misses)
    assert supports_batch(api)


async def test_check_is_check_many_of_one(api: PostgresOrderApi, orders: dict[str, int]) -> None:
    phone = next(iter(orders))
    assert (await api.check(phone)).order_count == orders[phone]
    assert (await api.check("13800000000")).has_orders is False
    assert await api.check_many([]) == {}


async def test_custom_sql_with_a_boolean_or_no_second_column(pg: PgServer) -> None:
    phone = "13857152046"  # a planted demo order
    for sql in (
        "SELECT phone, true FROM orders WHERE phone = ANY($1::text[])",
        "SELECT DISTINCT phone FROM orders WHERE phone = ANY($1::text[])",
    ):
        async with PostgresOrderApi(pg.dsn, sql=sql) as api:
            outcomes = await api.check_many([phone, "13800000000"])
        assert outcomes[phone].has_orders and outcomes[phone].order_count is None
        assert not outcomes["13800000000"].has_orders


async def test_sql_error_is_fatal_with_the_servers_message(pg: PgServer) -> None:
    async with PostgresOrderApi(pg.dsn, table="no_such_table") as api:
        with pytest.raises(FatalApiError) as info:
            await api.check("13857152046")
    text = str(info.value)
    assert 'relation "no_such_table" does not exist' in text and "42P01" in text
    assert PASSWORD not in text and "13857152046" not in text


async def test_a_bad_answer_shape_is_fatal(pg: PgServer) -> None:
    sql = "SELECT phone, 'many'::text FROM orders WHERE phone = ANY($1::text[])"
    async with PostgresOrderApi(pg.dsn, sql=sql) as api:
        with pytest.raises(FatalApiError, match=r"returned str .* 138\*\*\*\*2046"):
            await api.check("13857152046")


async def test_statement_timeout_is_transient(pg: PgServer) -> None:
    sql = "SELECT p, 1 FROM unnest($1::text[]) AS p, (SELECT pg_sleep(5)) AS s"
    async with PostgresOrderApi(pg.dsn, sql=sql, statement_timeout=0.2) as api:
        with pytest.raises(TransientApiError) as info:
            await api.check("13857152046")
    assert info.value.kind == "timeout"
    assert "statement timeout" in str(info.value)


async def test_wrong_password_fails_at_open_without_showing_it(pg: PgServer) -> None:
    dsn = pg.dsn.replace(PASSWORD, "not-the-password")
    with pytest.raises(FatalApiError) as info:
        async with PostgresOrderApi(dsn):
            pass
    assert "password authentication failed" in str(info.value)
    assert "not-the-password" not in str(info.value) and "28P01" in str(info.value)


async def test_password_from_pgpassword(pg: PgServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    async with PostgresOrderApi(pg.dsn_without_password()) as api:
        assert (await api.check("13857152046")).has_orders


async def test_no_server_is_a_transient_connect_error(pg: PgServer) -> None:
    dead = pg.dsn.replace(f":{pg.port}/", ":1/")
    with pytest.raises(TransientApiError) as info:
        async with PostgresOrderApi(dead, connect_timeout=2):
            pass
    assert info.value.kind == "connect" and PASSWORD not in str(info.value)


# -- configuration (no server needed) ------------------------------------------------------------


def test_identifiers_are_quoted_and_odd_ones_refused() -> None:
    assert build_query("shop.orders", "msisdn") == (
        'SELECT "msisdn", count(*) FROM "shop"."orders" WHERE "msisdn" = ANY($1::text[]) '
        'GROUP BY "msisdn"'
    )
    for table, column in (("orders; DROP TABLE x", "phone"), ("orders", 'ph"one'), ("a.b.c", "p")):
        with pytest.raises(ConfigError, match="not a plain SQL name"):
            PostgresOrderApi("postgresql://u@127.0.0.1/db", table=table, column=column)
    with pytest.raises(ConfigError, match=r"\$1"):
        PostgresOrderApi("postgresql://u@127.0.0.1/db", sql="SELECT 1")
    with pytest.raises(ConfigError, match="not a PostgreSQL URL"):
        PostgresOrderApi("http://u:pw@127.0.0.1/db")


def test_password_is_redacted_in_repr_and_config() -> None:
    dsn = "postgresql://shop:hunter2-pw@127.0.0.1:5432/orders"
    api = PostgresOrderApi(dsn)
    assert "hunter2-pw" not in repr(api) and "://***@127.0.0.1" in repr(api)
    assert redact_url(dsn) == "postgresql://***@127.0.0.1:5432/orders"  # lookup.domain.privacy: user info whole
    shown = Settings(api_url=dsn, sql_table="orders_v2").redacted()
    assert shown["api_url"] == "postgresql://***@127.0.0.1:5432/orders"
    assert shown["sql_table"] == "orders_v2" and shown["sql_column"] == "phone"


def test_missing_asyncpg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ConfigError, match=r"pip install '\.\[postgres\]'"):
        PostgresOrderApi("postgresql://u@127.0.0.1/db")


# -- end to end through find ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_find_gives_every_demo_answer(api: PostgresOrderApi, case: dict[str, Any]) -> None:
    before = api.queries
    result = await lookup.find(case["mask"], api=api, limits=FAST, **case["hints"])
    assert result.status == case["expected_status"], result.reason
    assert result.phone == case["expected_phone"]
    assert result.tier == case["expected_tier"]
    assert result.checks_sent == api.queries - before  # one query per chunk, each counted
    if result.status == "not_found":  # every tier in chunks of 100: one query each
        assert result.checks_sent == sum(-(-n // 100) for n in case["tiers"].values())


async def test_find_sends_one_query_per_chunk_of_adapting_size(api: PostgresOrderApi) -> None:
    """The demo's national-tier hit: 121 city + 369 province candidates, then the hit past
    the first chunk of the national tier (where exactly depends on the tier's order, nearer
    provinces first). Chunks start at 100 and grow while the answers come back fast (a
    local server: always), so the lookup takes fewer queries than chunks of 100 would."""
    plan_ = lookup.plan("186****3357", city="杭州")
    counts = {t.name: t.count for t in plan_.tiers}
    assert (counts["city"], counts["province"]) == (121, 369)
    position = list(plan_.tier("national")).index("18601503357")
    assert position >= 100
    before = api.queries
    result = await lookup.find("186****3357", api=api, limits=FAST, city="杭州")
    queries = api.queries - before
    assert (result.status, result.phone, result.tier) == ("matched", "18601503357", "national")
    assert result.checks_sent == queries
    city, province, national = result.tiers[:3]
    assert (city.checked, province.checked) == (121, 369)
    assert city.errors == province.errors == national.errors == result.retries == 0
    national_queries = -(-national.checked // 100)
    assert national.checked >= position + 1  # up to and with the hit
    assert queries < 2 + 4 + national_queries  # chunks of 100 would take this many


async def test_find_with_an_sql_error_is_api_error(pg: PgServer) -> None:
    async with PostgresOrderApi(pg.dsn, column="no_such_column") as api:
        result = await lookup.find("138****2046", api=api, limits=FAST, city="杭州")
    assert result.status == "api_error"
    assert result.reason is not None and 'column "no_such_column" does not exist' in result.reason
    assert PASSWORD not in result.model_dump_json()


class _StopAfter:
    """Delegates to a PostgreSQL api; stops the server (fast shutdown) at the n-th request
    (a ``check`` or a ``check_many``)."""

    def __init__(self, api: PostgresOrderApi, server: PgServer, n: int) -> None:
        self.api, self.server, self.n = api, server, n
        self.calls = 0
        self.stopped = False

    async def check(self, phone: str) -> CheckOutcome:
        self.calls += 1
        if self.calls >= self.n and not self.stopped:
            self.stopped = True
            await asyncio.to_thread(self.server.stop, "fast")
        return await self.api.check(phone)

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        self.calls += 1
        if self.calls >= self.n and not self.stopped:
            self.stopped = True
            await asyncio.to_thread(self.server.stop, "fast")
        return await self.api.check_many(phones)

    async def aclose(self) -> None:
        await self.api.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def test_server_stopped_mid_lookup_is_never_not_found() -> None:
    server = await asyncio.to_thread(_start, read_orders())
    try:
        # a short deadline: the unresolved chunks are retried until then (v2), not 300 s
        limits = FAST.model_copy(
            update={"max_attempts": 2, "breaker_threshold": 10, "deadline": 3.0}
        )
        async with PostgresOrderApi(server.dsn, pool_size=4) as pg_api:
            # the planted hit is in the national tier; the server stops at the 4th query
            # (a chunk of the province tier: the engine sends chunks of 100)
            api = _StopAfter(pg_api, server, n=4)
            result = await lookup.find("186****3357", api=api, limits=limits, city="杭州")
            assert api.stopped
            with pytest.raises(TransientApiError) as info:
                await pg_api.check("18601503357")
    finally:
        await asyncio.to_thread(server.cleanup)
    assert result.status in ("inconclusive", "api_error"), result.reason
    assert result.phone is None
    assert info.value.kind in ("connect", "reset")
    assert PASSWORD not in result.model_dump_json()


# -- the CLI and the seeding helper ---------------------------------------------------------------


def _run(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKUP_", "PG"))}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [sys.executable, *args], check=False, capture_output=True, text=True, cwd=ROOT,
        env=full_env, timeout=120,
    )  # fmt: skip


def test_cli_find_and_config_against_postgres(pg: PgServer) -> None:
    found = _run("-m", "lookup", "find", "139****8812", "--city", "杭州", "--api", pg.dsn,
                 "--rate", "none", "--max-in-flight", "8")  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert "matched 13957758812  tier province" in found.stdout
    assert f"asking the PostgreSQL orders at postgresql://***@127.0.0.1:{pg.port}" in (
        found.stderr  # not the answer: stdout carries only that
    )
    assert PASSWORD not in found.stdout + found.stderr
    shown = _run("-m", "lookup", "config", "--json", "--sql-column", "msisdn",
                 env={"LOOKUP_API_URL": pg.dsn})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["api_url"] == pg.dsn.replace(f"lookup:{PASSWORD}", "***") and data["sql_column"] == "msisdn"
    assert PASSWORD not in shown.stdout


def test_cli_sql_error_exits_3_with_the_message(pg: PgServer) -> None:
    done = _run("-m", "lookup", "find", "138****2046", "--city", "杭州", "--api", pg.dsn,
                "--sql-table", "missing_orders", "--rate", "none")  # fmt: skip
    assert done.returncode == 3
    assert 'relation "missing_orders" does not exist' in done.stdout
    assert PASSWORD not in done.stdout + done.stderr


def test_seed_helper_loads_the_demo_orders(pg: PgServer) -> None:
    done = _run("-m", "lookup.mockapi.pgseed", "seed", pg.dsn, "--table", "demo.orders_copy")
    assert done.returncode == 3 and 'schema "demo" does not exist' in done.stderr
    done = _run("-m", "lookup.mockapi.pgseed", "seed", pg.dsn, "--table", "orders_copy")
    assert done.returncode == 0, done.stderr
    total = sum(read_orders().values())
    assert f"seeded {total:,} orders of {len(read_orders()):,} numbers into orders_copy" in (
        done.stdout
    )
    assert PASSWORD not in done.stdout and "://***@127.0.0.1" in done.stdout
    found = _run("-m", "lookup", "find", "138****2046", "--city", "杭州", "--api", pg.dsn,
                 "--sql-table", "orders_copy", "--rate", "none", "--json")  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["phone"] == "13857152046"


# -- whole segments: one range query each ------------------------------------------------------


def test_whole_segments_are_exactly_every_number_of_their_segments() -> None:
    one = [f"1385715{t:04d}" for t in range(10_000)]
    two = one + [f"1390000{t:04d}" for t in range(10_000)]
    assert whole_segments(one) == ["1385715"]
    assert whole_segments(two) == ["1385715", "1390000"]
    assert whole_segments(one[:-1]) is None
    assert whole_segments([*one[:-1], "13900000000"]) is None
    assert whole_segments([*one[:-1], "1385715x000"]) is None


async def test_a_mask_hiding_the_last_four_digits_is_one_range_query(
    api: PostgresOrderApi, orders: dict[str, int]
) -> None:
    assert api.segment_queries
    before = api.queries
    result = await lookup.find("1385715****", api=api, limits=FAST)
    assert (result.status, result.phone) == ("matched", "13857152046")
    assert api.queries - before == 1 == result.checks_sent  # not 10,000 numbers in chunks
    wanted = [f"1385715{t:04d}" for t in range(10_000)]
    answers = await api.check_many(wanted)
    expected = {p for p in wanted if p in orders}
    assert {p for p, o in answers.items() if o.has_orders} == expected
    assert all(answers[p].order_count == orders[p] for p in expected)


async def test_custom_sql_takes_arrays_only(pg: PgServer) -> None:
    sql = "SELECT phone, count(*) FROM orders WHERE phone = ANY($1::text[]) GROUP BY phone"
    async with PostgresOrderApi(pg.dsn, sql=sql) as custom:
        assert not custom.segment_queries
        result = await lookup.find("1385715****", api=custom, limits=FAST)
        assert result.status == "matched" and custom.queries > 1
