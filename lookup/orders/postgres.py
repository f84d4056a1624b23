"""The PostgreSQL order source: one asyncpg pool, one ``= ANY($1::text[])`` query per chunk.

::

    api = PostgresOrderApi("postgresql://lookup@127.0.0.1:5432/shop", table="orders")
    async with api:                       # the pool is created here
        outcomes = await api.check_many(["13857152046", "13957758812"])

The query receives an array of 11-digit numbers (``text[]``) and returns one row per number
that has orders: the number first, then (optionally) a count or a boolean. Built from
``table``/``column``, it is::

    SELECT "phone", count(*) FROM "orders" WHERE "phone" = ANY($1::text[]) GROUP BY "phone"

or pass your own with ``sql=``. A number absent from the answer has no orders. With the
built query, a chunk that is whole segments (all 10,000 numbers of a 7-digit segment,
as a mask hiding the last four digits asks) is one range query per segment instead
(:func:`build_range_query`: an index range scan, not an array of 10,000 numbers).

Errors: connection trouble, a server shutting down or starting, too many connections, a
statement timeout and a pool wait that timed out are :class:`~lookup.domain.errors.TransientApiError`
(kind ``connect``, ``reset`` or ``timeout``); an SQL error (unknown table, syntax, permission,
wrong password) is :class:`~lookup.domain.errors.FatalApiError` with the server's message, numbers
masked. The password (from the DSN, ``PGPASSWORD`` or a ``.pgpass``, which asyncpg reads
itself) never appears in a message or ``repr``.

asyncpg is an optional dependency: ``pip install '.[postgres]'``. Run
``python -m lookup.mockapi.pgseed seed DSN`` to load the synthetic demo orders into a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import unquote, urlsplit

from lookup.domain.errors import (
    ConfigError,
    FatalApiError,
    OrderApiError,
    TransientApiError,
    TransientKind,
)
from lookup.domain.models import CheckOutcome
from lookup.domain.privacy import mask_phone, redact_url

__all__ = [
    "SCHEMES",
    "PostgresOrderApi",
    "build_query",
    "build_range_query",
    "is_postgres_url",
    "whole_segments",
]

SCHEMES: Final = ("postgresql", "postgres")
INSTALL_HINT: Final = "pip install '.[postgres]'"
_IDENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
# SQLSTATE classes worth retrying: connection exceptions, insufficient resources, operator
# intervention (admin shutdown, cannot connect now, query canceled), system errors,
# transaction rollback (serialization failure, deadlock).
_TRANSIENT_CLASSES: Final = ("08", "53", "57", "58", "40")


def is_postgres_url(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return bool(url) and urlsplit(str(url)).scheme.lower() in SCHEMES


def _quote(name: str, what: str) -> str:
    """A table or column name (``orders``, ``shop.orders``) as quoted SQL identifiers."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ConfigError(
            f"{what} {name!r} is not a plain SQL name (letters, digits, _; schema.table at "
            "most): pass the query itself with --sql instead"
        )
    return ".".join(f'"{p}"' for p in parts)


def build_query(table: str = "orders", column: str = "phone") -> str:
    """The default query: one row (number, order count) per number that has orders."""
    t, c = _quote(table, "table"), _quote(column, "column")
    return f"SELECT {c}, count(*) FROM {t} WHERE {c} = ANY($1::text[]) GROUP BY {c}"


def build_range_query(table: str = "orders", column: str = "phone") -> str:
    """One segment's numbers with orders: ``$1 <= phone < $2`` (the segment and the next)."""
    t, c = _quote(table, "table"), _quote(column, "column")
    return f"SELECT {c}, count(*) FROM {t} WHERE {c} >= $1 AND {c} < $2 GROUP BY {c}"


SEGMENT_NUMBERS: Final = 10_000


def whole_segments(phones: Sequence[str]) -> list[str] | None:
    """The 7-digit segments of ``phones`` (distinct numbers) if they are exactly every
    number of those segments, else ``None``."""
    if not phones or len(phones) % SEGMENT_NUMBERS:
        return None
    per: dict[str, int] = {}
    for phone in phones:
        if len(phone) != 11 or not (phone.isascii() and phone.isdigit()):
            return None
        per[phone[:7]] = per.get(phone[:7], 0) + 1
    if any(n != SEGMENT_NUMBERS for n in per.values()):
        return None
    return list(per)


def _import_asyncpg() -> Any:
    try:
        return importlib.import_module("asyncpg")
    except ImportError:
        raise ConfigError(
            f"the PostgreSQL order source needs asyncpg: {INSTALL_HINT}"
        ) from None


class PostgresOrderApi:
    """An order API answered by a PostgreSQL query, through one asyncpg pool.

    ``dsn``: ``postgresql://USER[:PASSWORD]@HOST:PORT/DB`` (libpq rules: ``PGPASSWORD`` and
    ``~/.pgpass`` apply). ``sql``: a query taking ``$1`` (``text[]``) and returning
    ``(phone[, count_or_bool])`` rows; default :func:`build_query` of ``table``/``column``.
    ``pool_size``: connections at most (size it to the checker's in-flight limit).
    ``statement_timeout``: seconds per query, enforced by the server and by the client.
    """

    batch_supported: Final = True

    def __init__(
        self,
        dsn: str,
        *,
        sql: str | None = None,
        table: str = "orders",
        column: str = "phone",
        pool_size: int = 16,
        statement_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if not is_postgres_url(dsn):
            raise ConfigError(
                f"not a PostgreSQL URL: {redact_url(dsn)!r}; expected postgresql://USER@HOST:PORT/DB"
            )
        if pool_size < 1:
            raise ConfigError(f"pool_size must be at least 1, got {pool_size}")
        if statement_timeout <= 0 or connect_timeout <= 0:
            raise ConfigError("statement_timeout and connect_timeout must be > 0 seconds")
        query = sql.strip() if sql else build_query(table, column)
        if "$1" not in query:
            raise ConfigError(
                "the SQL query must take the numbers as $1 (a text[]), e.g. "
                "SELECT phone, count(*) FROM orders WHERE phone = ANY($1::text[]) GROUP BY phone"
            )
        self._asyncpg = _import_asyncpg()
        self._dsn = dsn
        password = urlsplit(dsn).password
        self._secrets = sorted({password, unquote(password)} - {""}, key=len, reverse=True) if password else []
        self.query = query
        self._range_query = None if sql else build_range_query(table, column)
        self.pool_size = pool_size
        self.statement_timeout = statement_timeout
        self.connect_timeout = connect_timeout
        self.queries = 0  # queries sent (each one reached the pool)
        self._pool: Any = None
        self._closed = False

    @property
    def url(self) -> str:
        """The DSN with the password redacted."""
        return redact_url(self._dsn)

    def __repr__(self) -> str:
        return f"PostgresOrderApi({self.url!r}, pool_size={self.pool_size})"

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Create the pool (one connection at once: a wrong password or database fails here)."""
        if self._closed:
            raise RuntimeError("this PostgresOrderApi is closed; make a new one")
        if self._pool is not None:
            return
        ms = max(1, round(self.statement_timeout * 1000))
        with self._translate("connecting"):
            self._pool = await self._asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                command_timeout=self.statement_timeout + 1.0,
                server_settings={
                    "statement_timeout": str(ms),
                    "application_name": "phone-order-lookup",
                },
            )

    async def aclose(self) -> None:
        """Close the pool; idempotent."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=self.connect_timeout)
            except (OSError, TimeoutError, self._asyncpg.PostgresError):
                pool.terminate()

    # -- checks -----------------------------------------------------------------------------

    @property
    def segment_queries(self) -> bool:
        """Whether a chunk of whole segments is asked as one range query per segment (the
        built query; a custom ``sql=`` takes arrays only)."""
        return self._range_query is not None

    async def check(self, phone: str) -> CheckOutcome:
        """Whether ``phone`` has orders: :meth:`check_many` of one number."""
        return (await self.check_many([phone]))[phone]

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        """One query for all of ``phones``; one outcome per distinct number."""
        if self._pool is None:
            if self._closed:
                raise RuntimeError("this PostgresOrderApi is closed; make a new one")
            raise RuntimeError("use `async with PostgresOrderApi(...)` before checking")
        wanted = list(dict.fromkeys(phones))
        if not wanted:
            return {}
        heads = whole_segments(wanted) if self._range_query is not None else None
        if heads is not None:
            return self._outcomes(wanted, await self._fetch_segments(heads))
        self.queries += 1
        doing = f"checking {len(wanted)} number" + ("s" if len(wanted) > 1 else "")
        with self._translate(doing):
            rows = await self._pool.fetch(
                self.query, wanted, timeout=self.statement_timeout + 1.0
            )
        return self._outcomes(wanted, rows)

    async def _fetch_segments(self, heads: list[str]) -> list[Any]:
        """The rows of one range query per segment (numbers of the segment with orders)."""
        rows: list[Any] = []
        for head in heads:
            self.queries += 1
            with self._translate(f"checking the segment {head}"):
                rows += await self._pool.fetch(
                    self._range_query, head + "0000", str(int(head) + 1) + "0000",
                    timeout=self.statement_timeout + 1.0,
                )  # fmt: skip
        return rows

    def _outcomes(self, wanted: list[str], rows: Sequence[Any]) -> dict[str, CheckOutcome]:
        counts: dict[str, int | bool | None] = {}
        for row in rows:
            if len(row) == 0:
                raise FatalApiError("the SQL query returned a row without columns; "
                                    "expected (phone[, count])")  # fmt: skip
            phone = str(row[0])
            value = row[1] if len(row) > 1 else None
            if value is not None and not isinstance(value, bool | int):
                raise FatalApiError(
                    f"the SQL query returned {type(value).__name__} as the second column for "
                    f"{mask_phone(phone)}; expected an order count or a boolean"
                )
            if phone in counts and isinstance(value, int) and not isinstance(value, bool):
                before = counts[phone]
                value = value + (before if isinstance(before, int) else 0)
            counts[phone] = value
        out = {}
        for phone in wanted:
            if phone not in counts:
                out[phone] = CheckOutcome(phone=phone, has_orders=False, order_count=0)
                continue
            value = counts[phone]
            if isinstance(value, bool):
                out[phone] = CheckOutcome(phone=phone, has_orders=value)
            elif isinstance(value, int):
                out[phone] = CheckOutcome(phone=phone, has_orders=value > 0, order_count=value)
            else:
                out[phone] = CheckOutcome(phone=phone, has_orders=True)
        return out

    # -- error translation -----------------------------------------------------------------

    def _clean(self, text: str) -> str:
        text = mask_phone(" ".join(str(text).split()))
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        """Turn asyncpg and socket errors into the lookup error tree (cancellation passes)."""
        try:
            yield
        except OrderApiError:
            raise
        except Exception as exc:
            error = self._error(doing, exc)
            if error is None:
                raise
            raise error from None

    def _error(self, doing: str, exc: BaseException) -> OrderApiError | None:
        """The lookup error for an exception from asyncpg or the socket, or None (not ours)."""
        pg = self._asyncpg
        where = f"PostgreSQL at {self.url}"
        if isinstance(exc, TimeoutError):
            return TransientApiError(
                f"{where}: no answer within {self.statement_timeout:g} s while {doing}",
                kind="timeout",
            )
        if isinstance(exc, pg.PostgresError):
            state = str(getattr(exc, "sqlstate", "") or "")
            message = self._clean(str(exc))
            if state == "57014":
                return TransientApiError(
                    f"{where}: statement timeout ({self.statement_timeout:g} s) while {doing}: "
                    f"{message}",
                    kind="timeout",
                )
            if state[:2] in _TRANSIENT_CLASSES:
                kind: TransientKind = "reset" if state in ("57P01", "57P02", "08003", "08006") else "connect"
                return TransientApiError(f"{where}: {message} ({state})", kind=kind)
            hint = "; check --sql, --sql-table and --sql-column" if state[:2] == "42" else ""
            return FatalApiError(f"{where} refused the query: {message} ({state}){hint}")
        if isinstance(exc, pg.InterfaceError):
            message = self._clean(str(exc))
            if "closed" in message or "connection" in message:
                return TransientApiError(f"{where}: {message} while {doing}", kind="reset")
            return FatalApiError(f"{where}: {message} (check the SQL query)")
        if isinstance(exc, pg.InternalClientError):  # a connection broken mid-operation
            return TransientApiError(f"{where}: {self._clean(str(exc))} while {doing}", kind="reset")
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            return TransientApiError(f"{where}: connection reset while {doing}", kind="reset")
        if isinstance(exc, OSError):
            return TransientApiError(
                f"{where}: cannot connect ({self._clean(exc.strerror or str(exc))}) "
                f"while {doing}",
                kind="connect",
            )
        return None
