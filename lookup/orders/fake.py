"""An in-memory order API for tests and demos, with a spy on concurrency.

::

    api = FakeOrderApi.from_orders({"13812341234": 2}, latency=0.01)
    async with api:
        assert (await api.check("13812341234")).has_orders
    assert api.calls == ["13812341234"] and api.closed
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Self, TypeAlias

from lookup.domain.models import CheckOutcome
from lookup.orders.base import BaseOrderApi, outcome_from

__all__ = ["FakeOrderApi", "Handler", "HandlerResult"]

HandlerResult: TypeAlias = bool | int | CheckOutcome
Handler: TypeAlias = Callable[[str], HandlerResult | Awaitable[HandlerResult]]


class FakeOrderApi(BaseOrderApi):
    """An order API answered by ``handler(phone)``, sync or async.

    The handler returns ``bool`` (has orders), ``int`` (order count; has orders
    when > 0) or a :class:`CheckOutcome`, and may raise ``TransientApiError`` /
    ``FatalApiError`` to simulate failures. Every check sleeps ``latency``
    seconds (``0`` still yields to the event loop once, like real I/O).

    Spy attributes: ``calls`` (numbers checked, in order, batch members
    included), ``batches`` (the numbers of each ``check_many``), ``in_flight`` and
    ``max_in_flight`` (concurrent checks), ``closed``. Like the HTTP adapter, a
    closed fake refuses checks; unlike it, no ``async with`` is needed first.

    ``batch=True`` offers :meth:`check_many` to the matcher (``batch_supported``), as an
    API with a batch endpoint does; by default the matcher checks one number at a time.
    """

    def __init__(self, handler: Handler, *, latency: float = 0.0, batch: bool = False) -> None:
        self.batch_supported = batch
        self._handler = handler
        self._latency = latency
        self.calls: list[str] = []
        self.batches: list[list[str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    @classmethod
    def from_orders(
        cls,
        orders: Mapping[str, int] | AbstractSet[str],
        *,
        latency: float = 0.0,
        batch: bool = False,
    ) -> Self:
        """A fake knowing which numbers have orders.

        ``orders`` is ``{phone: order_count}`` (absent numbers have 0) or a set of
        numbers with orders. The data is copied.
        """
        if isinstance(orders, Mapping):
            counts = dict(orders)
            return cls(lambda phone: counts.get(phone, 0), latency=latency, batch=batch)
        known = frozenset(orders)
        return cls(lambda phone: phone in known, latency=latency, batch=batch)

    def __repr__(self) -> str:
        return f"FakeOrderApi(calls={len(self.calls)}, closed={self.closed})"

    async def check(self, phone: str) -> CheckOutcome:
        """Answer from the handler, after ``latency`` seconds."""
        if self.closed:
            raise RuntimeError("this FakeOrderApi is closed; create a new one")
        self.calls.append(phone)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self._latency)
            result = self._handler(phone)
            if inspect.isawaitable(result):
                result = await result
            return outcome_from(phone, result)
        finally:
            self.in_flight -= 1

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        """Check each distinct number in turn with :meth:`check`."""
        wanted = list(dict.fromkeys(phones))
        self.batches.append(wanted)
        return {phone: await self.check(phone) for phone in wanted}

    async def aclose(self) -> None:
        """Mark the fake closed. Idempotent."""
        self.closed = True
