"""Order-API adapters: the ``OrderApi`` protocol, the HTTP adapter, the fake, plug-ins,
PostgreSQL.

``HttpOrderApi``, ``Timeouts``, ``DEFAULT_TIMEOUTS`` and ``PostgresOrderApi`` are imported
on first use, so importing this package does not import aiohttp (CLI start-up stays fast);
asyncpg (the ``[postgres]`` extra) is imported only when a ``PostgresOrderApi`` is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lookup.orders.base import BaseOrderApi, BatchOrderApi, OrderApi, mask_phone, supports_batch
from lookup.orders.fake import FakeOrderApi
from lookup.orders.plugin import ThreadedOrderApi, load_plugin

if TYPE_CHECKING:
    from lookup.orders.http import DEFAULT_TIMEOUTS, HttpOrderApi, Timeouts
    from lookup.orders.postgres import PostgresOrderApi

__all__ = [
    "DEFAULT_TIMEOUTS",
    "BaseOrderApi",
    "BatchOrderApi",
    "FakeOrderApi",
    "HttpOrderApi",
    "OrderApi",
    "PostgresOrderApi",
    "ThreadedOrderApi",
    "Timeouts",
    "load_plugin",
    "mask_phone",
    "supports_batch",
]

_LAZY = {
    "DEFAULT_TIMEOUTS": "lookup.orders.http",
    "HttpOrderApi": "lookup.orders.http",
    "Timeouts": "lookup.orders.http",
    "PostgresOrderApi": "lookup.orders.postgres",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
