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
import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Final, Protocol, Self, TypeGuard, runtime_checkable

from pydantic import ValidationError

from lookup.domain.errors import FatalApiError, OrderApiError, TransientApiError
from lookup.domain.models import MAX_ORDER_COUNT, CheckOutcome
from lookup.domain.privacy import mask_phone  # re-exported: the old home of the helper

__all__ = [
    "ANSWER_RULE",
    "MAX_ORDER_COUNT",
    "BaseOrderApi",
    "BatchOrderApi",
    "OrderApi",
    "check_failure",
    "is_own_cancellation",
    "mask_phone",
    "outcome_from",
    "outcomes_from",
    "plausible_count",
    "safe_text",
    "supports_batch",
    "unexpected_answer",
]

ANSWER_RULE: Final = (
    f"expected a whole number from 0 to {MAX_ORDER_COUNT:,} (order count) or a boolean (has orders)"
)
"""What every source must answer per number; anything else is an unexpected answer."""


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


# -- the one rule for answers --------------------------------------------------------------


def plausible_count(value: object) -> int | None:
    """``value`` as an order count when it is one, else ``None``.

    A count is a whole number from 0 to :data:`MAX_ORDER_COUNT`: an ``int`` (not a
    ``bool``) or an integral finite ``float`` (``2.0`` from JSON). ``-1``, ``1.5``,
    ``1e308``, ``nan``, ``True`` are not counts.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        return None
    count = int(value)
    return count if 0 <= count <= MAX_ORDER_COUNT else None


def _shown(value: object) -> str:
    """What an unexpected value was, short and masked (a number may be a phone number)."""
    if type(value) in (int, float, bool):
        text = repr(value)
        return mask_phone(text if len(text) <= 24 else text[:20] + "...")
    return type(value).__name__


def unexpected_answer(source: str, phone: str, value: object, what: str = "") -> FatalApiError:
    """The error for an answer that is not a plausible count or boolean for ``phone``."""
    field = f" ({what})" if what else ""
    return FatalApiError(
        f"unexpected answer: {source} answered {_shown(value)}{field} for {mask_phone(phone)}; "
        f"{ANSWER_RULE}"
    )


def _checked(phone: str, outcome: CheckOutcome, source: str) -> CheckOutcome:
    """A ready ``CheckOutcome`` kept to the rule: for the number asked, a plausible and
    consistent count (``has_orders`` is ``order_count > 0`` when there is a count)."""
    if outcome.phone != phone:
        raise FatalApiError(
            f"unexpected answer: {source} answered for {mask_phone(str(outcome.phone))} when "
            f"asked about {mask_phone(phone)}; expected an answer for the number asked"
        )
    if type(outcome.has_orders) is not bool:
        raise unexpected_answer(source, phone, outcome.has_orders, "has_orders")
    count = outcome.order_count
    if count is not None:
        if plausible_count(count) is None or type(count) is not int:
            raise unexpected_answer(source, phone, count, "order_count")
        if outcome.has_orders != (count > 0):
            raise FatalApiError(
                f"unexpected answer: {source} answered has_orders={outcome.has_orders} with "
                f"order_count={count} for {mask_phone(phone)}; has_orders must be "
                "order_count > 0"
            )
    return outcome


def outcome_from(phone: str, value: object, source: str = "the order API") -> CheckOutcome:
    """Turn what a handler or plug-in returned into a :class:`CheckOutcome`.

    ``bool`` -> ``has_orders``; a plausible count (:func:`plausible_count`) ->
    ``order_count`` (``has_orders = n > 0``); a ``CheckOutcome`` for ``phone`` with a
    consistent count passes through. Anything else (a negative count, ``1.5``, an answer
    about another number) is a :class:`FatalApiError` ("unexpected answer"), never "no
    orders".
    """
    if isinstance(value, CheckOutcome):
        return _checked(phone, value, source)
    if type(value) is bool:
        return CheckOutcome(phone=phone, has_orders=value)
    count = plausible_count(value)
    if count is None:
        raise unexpected_answer(source, phone, value)
    return CheckOutcome(phone=phone, has_orders=count > 0, order_count=count)


def outcomes_from(
    phones: Iterable[str], values: object, source: str = "the order API"
) -> dict[str, CheckOutcome]:
    """Turn a batch answer ``{phone: bool | int | CheckOutcome}`` into outcomes.

    Every number of ``phones`` must be in the answer, and nothing else, else
    :class:`FatalApiError`.
    """
    if not isinstance(values, Mapping):
        raise FatalApiError(
            f"{source} returned {type(values).__name__} for a batch; "
            "expected a mapping {phone: bool | int | CheckOutcome}"
        )
    wanted = dict.fromkeys(phones)
    missing = [p for p in wanted if p not in values]
    if missing:
        raise FatalApiError(
            f"the batch answer lacks {len(missing)} of {len(wanted)} numbers "
            f"(first: {mask_phone(missing[0])}); expected one entry per number"
        )
    if len(values) > len(wanted):
        extra = next(str(p) for p in values if p not in wanted)
        raise FatalApiError(
            f"unexpected answer: the batch answer of {source} has numbers that were not asked "
            f"(first: {mask_phone(extra)}); expected one entry per number asked"
        )
    return {p: outcome_from(p, values[p], source) for p in wanted}


# -- failures of a source ------------------------------------------------------------------


def safe_text(exc: BaseException, limit: int = 200) -> str:
    """``str(exc)``, masked and cut to ``limit`` characters, even when ``__str__`` raises."""
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a plug-in's broken __str__ must not end the lookup
        return "(its message cannot be shown: __str__ failed)"
    if not isinstance(text, str):
        return "(its message cannot be shown)"
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return mask_phone(text)


def is_own_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is the current task being cancelled (by the lookup, a timeout, the
    shell), as opposed to a ``CancelledError`` a source raised on its own."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def check_failure(exc: BaseException, source: str = "the order API") -> OrderApiError:
    """What a check that raised ``exc`` (anything but the lookup's own cancellation) is.

    The ``OrderApiError`` tree passes (with a message that can be shown); a refused
    :class:`CheckOutcome` is an unexpected answer (fatal); anything else a source raises
    (a bug, ``SystemExit``, ``KeyboardInterrupt``, ``GeneratorExit``, a ``CancelledError``
    of its own, a custom ``BaseException``) is a failed check: :class:`TransientApiError`,
    never "no orders".
    """
    if isinstance(exc, OrderApiError):
        try:
            str(exc)
        except BaseException:  # noqa: BLE001 - an unprintable error is still this failure
            error: OrderApiError = (
                FatalApiError if isinstance(exc, FatalApiError) else TransientApiError
            )(f"{source} raised {type(exc).__name__} (its message cannot be shown)")
            return error
        return exc
    name = type(exc).__name__
    if isinstance(exc, ValidationError) and exc.title == "CheckOutcome":
        return FatalApiError(
            f"unexpected answer: {source} made an invalid CheckOutcome ({safe_text(exc, 120)}); "
            f"{ANSWER_RULE}"
        )
    return TransientApiError(f"{source} raised {name}: {safe_text(exc)}", kind="other")
