"""The ``OrderApi`` protocol every order-API adapter keeps, and small shared helpers.

An adapter answers one question per phone number: does it have orders? It answers
with a :class:`~lookup.domain.models.CheckOutcome`, or raises from the ``OrderApiError``
tree of :mod:`lookup.domain.errors` (transient: worth retrying; fatal: not). It owns its
resources for the lifetime of an ``async with`` block::

    async with HttpOrderApi("https://api.example/orders?phone={phone}") as api:
        outcome = await api.check("13812341234")
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self, TypeGuard, runtime_checkable

from lookup.domain.errors import FatalApiError
from lookup.domain.models import CheckOutcome
from lookup.domain.privacy import mask_phone  # re-exported: the old home of the helper

__all__ = [
    "BaseOrderApi",
    "BatchOrderApi",
    "OrderApi",
    "mask_phone",
    "outcome_from",
    "outcomes_from",
    "supports_batch",
]


@runtime_checkable
class OrderApi(Protocol):
    """What the checker needs from an order API.

    ``check`` returns a definite answer or raises ``TransientApiError`` /
    ``FatalApiError``; it never turns an error into "no orders". ``aclose`` is
    idempotent. Use the object as an async context manager.
    """

    async def check(self, phone: str) -> CheckOutcome:
        """Ask whether ``phone`` (11 digits) has orders."""
        ...

    async def aclose(self) -> None:
        """Release every resource; safe to call more than once."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class BatchOrderApi(OrderApi, Protocol):
    """An order API with a batch endpoint: many numbers in one request."""

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        """Check every number of ``phones``; the answer has one outcome per distinct number."""
        ...


class BaseOrderApi(abc.ABC):
    """Convenience base for adapters: ``async with`` calls :meth:`aclose` on exit.

    Subclasses implement :meth:`check` and, when they hold resources, :meth:`aclose`.
    """

    @abc.abstractmethod
    async def check(self, phone: str) -> CheckOutcome:
        """Ask whether ``phone`` has orders."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release resources. The default holds none."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def supports_batch(api: OrderApi) -> TypeGuard[BatchOrderApi]:
    """Whether ``api.check_many`` can be called.

    An adapter whose class defines ``check_many`` but whose configuration lacks a
    batch endpoint (``HttpOrderApi`` without ``batch_url``) says so with a false
    ``batch_supported`` attribute.
    """
    if not callable(getattr(api, "check_many", None)):
        return False
    return bool(getattr(api, "batch_supported", True))


def outcome_from(phone: str, value: object) -> CheckOutcome:
    """Turn what a handler or plug-in returned into a :class:`CheckOutcome`.

    ``bool`` -> ``has_orders``; ``int >= 0`` -> ``order_count`` (``has_orders = n > 0``);
    a ``CheckOutcome`` passes through. Anything else (a negative count too) is a
    :class:`FatalApiError` ("unexpected answer"), never "no orders".
    """
    if isinstance(value, CheckOutcome):
        return value
    if isinstance(value, bool):
        return CheckOutcome(phone=phone, has_orders=value)
    if isinstance(value, int) and value >= 0:
        return CheckOutcome(phone=phone, has_orders=value > 0, order_count=value)
    shown = f"the count {value}" if isinstance(value, int) else type(value).__name__
    raise FatalApiError(
        f"unexpected answer: the order API returned {shown} for {mask_phone(phone)}; "
        "expected bool (has orders), int >= 0 (order count) or CheckOutcome"
    )


def outcomes_from(phones: Iterable[str], values: object) -> dict[str, CheckOutcome]:
    """Turn a batch answer ``{phone: bool | int | CheckOutcome}`` into outcomes.

    Every number of ``phones`` must be in the answer, else :class:`FatalApiError`.
    """
    if not isinstance(values, Mapping):
        raise FatalApiError(
            f"the order API returned {type(values).__name__} for a batch; "
            "expected a mapping {phone: bool | int | CheckOutcome}"
        )
    wanted = dict.fromkeys(phones)
    missing = [p for p in wanted if p not in values]
    if missing:
        raise FatalApiError(
            f"the batch answer lacks {len(missing)} of {len(wanted)} numbers "
            f"(first: {mask_phone(missing[0])}); expected one entry per number"
        )
    return {p: outcome_from(p, values[p]) for p in wanted}
