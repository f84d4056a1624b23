"""One lookup's view of the checker: its fair share of the in-flight slots, its deadline.

:meth:`lookup.engine.checker.Checker.lookup` hands each running lookup a
:class:`LookupChecks` (a :class:`~lookup.engine.checkstate.Checks`): every check waits at the
lookup's :class:`~lookup.engine.policies.Gate` (its fair share, computed when shares change,
not per check) and is bounded by the lookup's deadline. A checker serving one lookup with
nothing to cache or share lets the view run the attempts loop itself, one frame shorter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checkstate import CheckStats
from lookup.engine.policies import Gate
from lookup.engine.sending import Sender

__all__ = ["Direct", "LookupChecks", "Split"]


class _Checker(Protocol):
    """What the view asks of its checker."""

    @property
    def limits(self) -> Limits: ...

    async def check(
        self, phone: str, stats: CheckStats | None = None, *, deadline: float = ...
    ) -> CheckOutcome: ...

    async def check_many(
        self, phones: Sequence[str], stats: CheckStats | None = None, *, deadline: float = ...
    ) -> dict[str, CheckOutcome]: ...


C = TypeVar("C", bound=_Checker)

Direct = tuple[
    Sender, Callable[[str], Awaitable[CheckOutcome]], Callable[[str, CheckOutcome], CheckOutcome]
]
"""A checker's sender, its API's ``check`` and how it records an outcome, for a view that may skip the
checker's own frame (one lookup, no cache, no single flight, no shared outcomes)."""

Split = tuple[
    Callable[[str, CheckStats], CheckOutcome | None],
    Callable[[str, CheckStats, float], Awaitable[CheckOutcome]],
]
"""A shared checker's cache look-up (no await) and its miss (single flight, then the
attempts): a cache hit is answered without the checker's frame."""


class LookupChecks(Generic[C]):
    """One lookup's view of a :class:`~lookup.engine.checker.Checker` (a
    :class:`~lookup.engine.checkstate.Checks`): at most its fair share of the in-flight
    slots, every check bounded by the lookup's deadline."""

    __slots__ = ("_checker", "_direct", "_gate", "_split", "deadline")

    def __init__(
        self, checker: C, gate: Gate, deadline: float, direct: Direct | None = None,
        split: Split | None = None,
    ) -> None:  # fmt: skip
        self._checker = checker
        self._gate = gate
        self._direct = direct
        self._split = split
        self.deadline = deadline

    @property
    def checker(self) -> C:
        return self._checker

    @property
    def share(self) -> int:
        """Checks this lookup may have in flight now."""
        return self._gate.share

    @property
    def fair_width(self) -> int:
        """This lookup's share of ``max_in_flight`` (what it may widen to as the checker's
        window grows): how many workers it is worth running."""
        return self._gate.share_of(self._checker.limits.max_in_flight)

    async def check(self, phone: str, stats: CheckStats) -> CheckOutcome:
        gate = self._gate
        if not gate.try_enter():
            await gate.enter()
        try:
            direct = self._direct
            if direct is not None:  # the attempts loop without the checker's frame
                sender, send, record = direct
                outcome = await sender.attempts(send, phone, 1, stats, self.deadline)
                return record(phone, outcome)
            split = self._split
            if split is not None:  # a shared checker: a cache hit needs no await
                cached, flight = split
                hit = cached(phone, stats)
                if hit is not None:
                    return hit
                return await flight(phone, stats, self.deadline)
            return await self._checker.check(phone, stats, deadline=self.deadline)
        finally:
            gate.leave()

    async def check_many(self, phones: Sequence[str], stats: CheckStats) -> dict[str, CheckOutcome]:
        gate = self._gate
        if not gate.try_enter():
            await gate.enter()
        try:
            return await self._checker.check_many(phones, stats, deadline=self.deadline)
        finally:
            gate.leave()
