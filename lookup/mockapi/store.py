"""The order store of the bundled mock order API: rows from a CSV file or a mapping, in SQLite.

A private helper of :mod:`lookup.mockapi.server` (same layer, L5), which re-exports
:func:`default_orders_file`.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final

from lookup.domain.segments import data_dir

__all__ = ["OrderStore", "default_orders_file", "is_phone"]

_SELECT_ONE: Final = "SELECT total FROM orders WHERE phone = ?"
_SELECT_MANY: Final = (
    "SELECT o.phone, o.total FROM json_each(?) AS j JOIN orders AS o ON o.phone = j.value"
)


def is_phone(value: object) -> bool:
    return isinstance(value, str) and len(value) == 11 and value.isascii() and value.isdigit()


def default_orders_file() -> Path | None:
    """The bundled ``demo_orders.csv``, from the installed package or the checkout."""
    here = data_dir()
    path = None if here is None else here / "demo_orders.csv"
    return path if path is not None and path.is_file() else None


def _read_orders_csv(stream: IO[str], name: str) -> list[tuple[str, int]]:
    reader = csv.DictReader(stream)
    fields = [f.strip() for f in reader.fieldnames or ()]
    if "phone" not in fields or "total" not in fields:
        raise ValueError(f"{name}: the header must have 'phone' and 'total' columns")
    reader.fieldnames = fields
    rows: list[tuple[str, int]] = []
    for row in reader:
        phone = (row.get("phone") or "").strip()
        raw_total = (row.get("total") or "").strip()
        if not phone and not raw_total:
            continue  # blank line
        if not is_phone(phone):
            raise ValueError(f"{name}:{reader.line_num}: phone is not 11 digits")
        try:
            total = int(raw_total)
        except ValueError:
            raise ValueError(f"{name}:{reader.line_num}: total is not an integer") from None
        rows.append((phone, total))
    return rows


def _load_orders_file(source: str | Path) -> list[tuple[str, int]]:
    # utf-8-sig: with or without a BOM.
    if isinstance(source, str | Path):
        with open(source, encoding="utf-8-sig", newline="") as stream:
            return _read_orders_csv(stream, str(source))
    with source.open("r", encoding="utf-8-sig") as stream:
        return _read_orders_csv(stream, str(source))


def _mapping_rows(orders: Mapping[str, int]) -> list[tuple[str, int]]:
    rows: list[tuple[str, int]] = []
    for phone, total in orders.items():
        if not is_phone(phone):
            raise ValueError("orders: every key must be an 11-digit phone string")
        rows.append((phone, int(total)))
    return rows


class OrderStore:
    """``orders(phone TEXT PRIMARY KEY, total INTEGER)`` in an in-memory SQLite database.

    Rows are read (and validated) at construction: ``orders_file`` first, then ``orders``
    (so the mapping wins on duplicates); with neither, the bundled demo orders when present.
    :meth:`open` loads them into SQLite, :meth:`close` keeps them for the next :meth:`open`.
    """

    def __init__(
        self, orders: Mapping[str, int] | None = None, *, orders_file: str | Path | None = None
    ) -> None:
        rows: list[tuple[str, int]] = []
        source: str | Path | None = orders_file
        if orders is None and orders_file is None:
            source = default_orders_file()
        if source is not None:
            rows.extend(_load_orders_file(source))
        if orders is not None:
            rows.extend(_mapping_rows(orders))
        self._rows: list[tuple[str, int]] = rows
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.execute("CREATE TABLE orders(phone TEXT PRIMARY KEY, total INTEGER)")
        if self._rows:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO orders(phone, total) VALUES (?, ?)", self._rows)
            db.execute("COMMIT")
        self._db = db

    def close(self) -> None:
        if self._db is not None:
            # Keep the rows in the closed form so the server can be started again.
            self._rows = list(self._db.execute("SELECT phone, total FROM orders"))
            self._db.close()
            self._db = None

    def total(self, phone: str) -> int:
        assert self._db is not None
        row = self._db.execute(_SELECT_ONE, (phone,)).fetchone()
        return int(row[0]) if row else 0

    def totals(self, phones: list[str]) -> dict[str, int]:
        """One query for the whole batch (json_each: ~1 µs per phone instead of ~3)."""
        assert self._db is not None
        results = dict.fromkeys(phones, 0)
        if phones:
            as_json = '["' + '","'.join(phones) + '"]'  # validated digit strings
            results.update(self._db.execute(_SELECT_MANY, (as_json,)).fetchall())
        return results
