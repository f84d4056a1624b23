"""The PostgreSQL source holds its answers to the one rule, and runs its SQL read-only,
against a real server the tests start (tests/support/pg_fixture.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from support.pg_fixture import PgServer, find_bin_dir

from lookup.domain.errors import ConfigError, FatalApiError
from lookup.mockapi.pgseed import seed
from lookup.orders.postgres import PostgresOrderApi

HIT = "13857152046"
MISS = "13957758812"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql): initdb not found"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = PgServer(bin_dir)
    try:
        server.start()
        asyncio.run(seed(server.dsn, {HIT: 2}))
        yield server
    finally:
        server.cleanup()


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        # a count below zero
        ("SELECT phone, -1 FROM orders WHERE phone = ANY($1::text[])", r"answered -1"),
        ("SELECT p, -1 FROM unnest($1::text[]) AS p", r"answered -1"),
        # rows for numbers that were not asked
        ("SELECT '+86' || phone, count(*) FROM orders WHERE phone = ANY($1::text[]) GROUP BY phone",
         "not asked"),
        ("SELECT '13800000000', 1 FROM unnest($1::text[]) AS p LIMIT 1", "not asked"),
        # not counts
        ("SELECT p, 1.5 FROM unnest($1::text[]) AS p", "answered Decimal"),
        ("SELECT p, 1e308::float8 FROM unnest($1::text[]) AS p", "answered 1e\\+308"),
        ("SELECT p, 10000000000 FROM unnest($1::text[]) AS p", "answered 100\\*\\*\\*\\*0000"),  # masked: it looks like a number
        ("SELECT p, 'nan'::float8 FROM unnest($1::text[]) AS p", "answered nan"),
    ],
)  # fmt: skip
async def test_implausible_rows_are_unexpected_answers(pg: PgServer, sql: str, says: str) -> None:
    async with PostgresOrderApi(pg.dsn, sql=sql) as api:
        with pytest.raises(FatalApiError, match=f"unexpected answer: .*{says}"):
            await api.check_many([HIT, MISS])


async def test_a_count_summed_past_the_bound_is_unexpected(pg: PgServer) -> None:
    sql = "SELECT p, 600000000 FROM unnest($1::text[]) AS p, generate_series(1, 2)"
    async with PostgresOrderApi(pg.dsn, sql=sql) as api:
        with pytest.raises(FatalApiError, match="summed count"):
            await api.check(HIT)


async def test_the_query_runs_read_only_and_deletes_nothing(pg: PgServer) -> None:
    sql = "DELETE FROM orders WHERE phone = ANY($1::text[]) RETURNING phone, 1"
    async with PostgresOrderApi(pg.dsn, sql=sql) as api:
        with pytest.raises(FatalApiError, match="read-only transaction"):
            await api.check(HIT)
    sneaky = ("WITH gone AS (DELETE FROM orders WHERE phone = ANY($1::text[]) RETURNING phone) "
              "SELECT phone, 1 FROM gone")  # fmt: skip
    async with PostgresOrderApi(pg.dsn, sql=sneaky) as api:
        with pytest.raises(FatalApiError, match="read-only transaction"):
            await api.check(HIT)
    async with PostgresOrderApi(pg.dsn) as api:
        assert (await api.check(HIT)).order_count == 2  # still there


async def test_the_session_default_cannot_be_turned_off_from_the_query(pg: PgServer) -> None:
    flip = ("SELECT p, 0 FROM unnest($1::text[]) AS p "
            "WHERE set_config('default_transaction_read_only', 'off', false) IS NOT NULL")  # fmt: skip
    delete = "DELETE FROM orders WHERE phone = ANY($1::text[]) RETURNING phone, 1"
    async with PostgresOrderApi(pg.dsn, sql=flip, pool_size=1) as api:
        await api.check(HIT)
        api.query = delete  # the next query on the same connection
        with pytest.raises(FatalApiError, match="read-only transaction"):
            await api.check(HIT)


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://lookup@127.0.0.1:port/shop", "postgresql://lookup@127.0.0.1:99999/shop"],
)
def test_a_dsn_whose_port_is_not_a_number_is_bad_input(dsn: str) -> None:
    with pytest.raises(ConfigError, match="PORT a number"):
        PostgresOrderApi(dsn)
