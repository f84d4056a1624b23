"""Order-API adapters: the ``OrderApi`` protocol, the HTTP adapter, the fake, plug-ins.

``HttpOrderApi``, ``Timeouts`` and ``DEFAULT_TIMEOUTS`` are imported on first
use, so importing this package does not import aiohttp (CLI start-up stays fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lookup.orders.base import BaseOrderApi, BatchOrderApi, OrderApi, mask_phone, supports_batch
from lookup.orders.fake import FakeOrderApi
from lookup.orders.plugin import ThreadedOrderApi, load_plugin

if TYPE_CHECKING:
    from lookup.orders.http import DEFAULT_TIMEOUTS, HttpOrderApi, Timeouts

__all__ = [
    "DEFAULT_TIMEOUTS",
    "BaseOrderApi",
    "BatchOrderApi",
    "FakeOrderApi",
    "HttpOrderApi",
    "OrderApi",
    "ThreadedOrderApi",
    "Timeouts",
    "load_plugin",
    "mask_phone",
    "supports_batch",
]

_LAZY = frozenset({"DEFAULT_TIMEOUTS", "HttpOrderApi", "Timeouts"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from lookup.orders import http

        value = getattr(http, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
