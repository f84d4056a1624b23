"""Load synthetic orders into a PostgreSQL table: the demo recipe for ``--api postgresql://``
and the tests' seeder.

::

    python -m lookup.mockapi.pgseed seed postgresql://lookup@127.0.0.1:5432/shop

needs the ``[postgres]`` extra (asyncpg).
"""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from lookup.domain.privacy import mask_phone, redact_url
from lookup.orders.postgres import PostgresOrderApi, _import_asyncpg, _quote, is_postgres_url

__all__ = ["main", "read_orders", "seed"]



def read_orders(path: str | Path | None = None) -> dict[str, int]:
    """``phone,total`` rows of a CSV (default: the bundled synthetic ``demo_orders.csv``)."""
    if path is None:
        from lookup.domain.segments import SegmentDB

        path = SegmentDB.default().path.with_name("demo_orders.csv")
    with Path(path).open(newline="", encoding="utf-8-sig") as f:
        return {row["phone"].strip(): int(row.get("total") or 1) for row in csv.DictReader(f)}


async def seed(
    dsn: str,
    orders: Mapping[str, int],
    *,
    table: str = "orders",
    column: str = "phone",
    replace: bool = False,
) -> int:
    """Create ``table`` (one row per order, indexed on ``column``) and load ``orders``.

    ``orders`` maps a number to how many orders it has; returns the rows inserted.
    ``replace`` empties the table first.
    """
    asyncpg = _import_asyncpg()
    t, c = _quote(table, "table"), _quote(column, "column")
    index = _quote(f"{table.split('.')[-1]}_{column}_idx", "index")
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} (id bigserial PRIMARY KEY, {c} text NOT NULL, "
                "placed_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {t} ({c})")
            if replace:
                await conn.execute(f"TRUNCATE {t}")
            records = [(phone,) for phone, total in orders.items() for _ in range(total)]
            schema, _, name = table.rpartition(".")
            await conn.copy_records_to_table(
                name, records=records, columns=[column], schema_name=schema or None
            )
            await conn.execute(f"ANALYZE {t}")
    finally:
        await conn.close()
    return len(records)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lookup.mockapi.pgseed seed DSN [--orders CSV] [--table T] [--column C]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lookup.mockapi.pgseed",
        description="Load synthetic orders into a PostgreSQL table for `lookup --api postgresql://`.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sd = sub.add_parser("seed", help="create the orders table and load orders from a CSV")
    sd.add_argument("dsn", help="postgresql://USER@HOST:PORT/DB (password: PGPASSWORD, .pgpass)")
    sd.add_argument("--orders", help="CSV phone,total (default: the bundled demo orders)")
    sd.add_argument("--table", default="orders")
    sd.add_argument("--column", default="phone")
    sd.add_argument("--replace", action="store_true", help="empty the table first")
    args = parser.parse_args(argv)
    try:
        orders = read_orders(args.orders)
        rows = asyncio.run(
            seed(args.dsn, orders, table=args.table, column=args.column, replace=args.replace)
        )
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write(f"seed: error: {mask_phone(str(exc))}\n")
        return 2
    except Exception as exc:  # asyncpg's own errors: say what the server said
        api = PostgresOrderApi(args.dsn) if is_postgres_url(args.dsn) else None
        error = api._error("seeding", exc) if api is not None else None
        if error is None:
            raise
        sys.stderr.write(f"seed: error: {error}\n")
        return 3
    sys.stdout.write(
        f"seeded {rows:,} orders of {len(orders):,} numbers into {args.table} at "
        f"{redact_url(args.dsn)} (synthetic data)\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
