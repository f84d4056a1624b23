"""The ``OrderApi`` protocol every order-API adapter keeps, and small shared helpers.

An adapter answers one question per phone number: does it have orders? It answers
with a :class:`~lookup.models.CheckOutcome`, or raises from the ``OrderApiError``
tree of :mod:`lookup.errors` (transient: worth retrying; fatal: not). It owns its
resources for the lifetime of an ``async with`` block::

    async with HttpOrderApi("https://api.example/orders?phone={phone}") as api:
        outcome = await api.check("13812341234")
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Protocol, Self, TypeGuard, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from lookup.errors import FatalApiError
from lookup.models import CheckOutcome

__all__ = [
    "BaseOrderApi",
    "BatchOrderApi",
    "OrderApi",
    "mask_phone",
    "outcome_from",
    "outcomes_from",
    "redact_url",
    "supports_batch",
    "url_password",
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


# An 11-digit run not embedded in a longer run of digits.
_PHONE_RE = re.compile(r"(?<![0-9])([0-9]{3})[0-9]{4}([0-9]{4})(?![0-9])")


def mask_phone(s: str) -> str:
    """Hide the middle four digits of every 11-digit number in ``s``.

    >>> mask_phone("13812341234")
    '138****1234'
    >>> mask_phone("phone 13812341234 has no orders")
    'phone 138****1234 has no orders'

    Text without an 11-digit number comes back unchanged.
    """
    return _PHONE_RE.sub(r"\1****\2", s)


_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@?#]*):[^@/?#]*@")


def redact_url(url: str) -> str:
    """``url`` with its password (if any) as ``***``: safe for messages and ``lookup config``.

    >>> redact_url("postgresql://shop:s3cret@db.internal:5432/orders")
    'postgresql://shop:***@db.internal:5432/orders'
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. a bad port: fall back to the text form
        return _USERINFO_RE.sub(r"\1:***@", url)
    if not password:
        return url
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***{at}{hostport}"))


def url_password(url: str | None) -> str | None:
    """The password in ``url`` (``scheme://user:PASSWORD@host``), if any: a secret to redact."""
    if not url:
        return None
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None


def outcome_from(phone: str, value: object) -> CheckOutcome:
    """Turn what a handler or plug-in returned into a :class:`CheckOutcome`.

    ``bool`` -> ``has_orders``; ``int`` -> ``order_count`` (``has_orders = n > 0``);
    a ``CheckOutcome`` passes through. Anything else is a :class:`FatalApiError`.
    """
    if isinstance(value, CheckOutcome):
        return value
    if isinstance(value, bool):
        return CheckOutcome(phone=phone, has_orders=value)
    if isinstance(value, int):
        return CheckOutcome(phone=phone, has_orders=value > 0, order_count=value)
    raise FatalApiError(
        f"the order API returned {type(value).__name__} for {mask_phone(phone)}; "
        "expected bool (has orders), int (order count) or CheckOutcome"
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
