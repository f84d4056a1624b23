"""The checker's value types: per-caller stats, process-wide counters, the status line,
and the small :class:`Checks` protocol the matcher depends on.

Kept apart from :mod:`lookup.engine.checker` so the matcher, the batch runner and the shells can
name them without the policies, and so the checker module stays about composition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

from lookup.domain.models import CheckOutcome

__all__ = [
    "KIND_COUNTER",
    "CheckHalted",
    "CheckStats",
    "CheckerCounters",
    "CheckerStatus",
    "Checks",
    "HasStatus",
    "State",
]

State = Literal["ok", "throttled", "paused", "down", "probing"]


class CheckHalted(Exception):
    """The caller's lookup is over (``stats.halt``): nothing more is sent for it."""


@dataclass(slots=True)
class CheckStats:
    """Counters of one caller (a lookup's worker), and two flags the checker reads."""

    sent: int = 0
    """Requests actually sent to the API, retries included."""
    retries: int = 0
    """Of ``sent``, the resends (after a failure or a throttle)."""
    cache_hits: int = 0
    deduped: int = 0
    """Checks answered by joining an identical check already in flight."""
    on_wire: bool = False
    """A request of this caller is on the wire right now (left to land on a hit)."""
    halt: bool = False
    """Set by the caller's lookup when it is over: the checker sends nothing more."""
    deferred: bool = False
    """This caller retries deferred checks: their first request counts as a retry."""

    def add(self, other: CheckStats) -> None:
        self.sent += other.sent
        self.retries += other.retries
        self.cache_hits += other.cache_hits
        self.deduped += other.deduped


@dataclass(slots=True)
class CheckerCounters:
    """Process-wide counters of a :class:`Checker`, read by the metrics exporter.

    All are monotonic counters except ``in_flight``, a gauge of the concurrency slots
    held right now.
    """

    requests: int = 0
    """Requests sent to the API (a batch request counts once)."""
    numbers: int = 0
    """Numbers those requests asked about (a batch request counts each of its numbers)."""
    answered: int = 0
    """Requests the API answered with outcomes (a batch request counts once)."""
    hits: int = 0
    misses: int = 0
    transient_errors: int = 0
    """Transient failures of every kind, throttling excluded; split below."""
    timeouts: int = 0
    connect_errors: int = 0
    resets: int = 0
    server_errors: int = 0
    """5xx answers (503 with Retry-After is throttling, not this)."""
    fatal_errors: int = 0
    throttled: int = 0
    """Throttle signals: 429, 503 + Retry-After, a throttle code in a 200 body."""
    rate_limited: int = 0
    """Kept for v1 readers: the same as ``throttled``."""
    retries: int = 0
    """Resends actually sent (after a transient failure or a throttle)."""
    retries_denied: int = 0
    cache_hits: int = 0
    deduped: int = 0
    breaker_opens: int = 0
    short_circuited: int = 0
    """Checks given up because the breaker stayed open until their deadline."""
    in_flight: int = 0


KIND_COUNTER: dict[str, str] = {
    "timeout": "timeouts",
    "connect": "connect_errors",
    "reset": "resets",
    "5xx": "server_errors",
}


@dataclass(frozen=True, slots=True)
class CheckerStatus:
    """What the checker is doing, for progress lines and health checks."""

    state: State
    rate: float | None
    """Effective checks per second (``None``: unpaced)."""
    limit: int
    in_flight: int
    probe_in: float | None = None
    paused_for: float | None = None

    @property
    def text(self) -> str:
        """``ok``, ``throttled, 82/s``, ``paused 3 s (Retry-After)``, ``API down, probe in 6 s``."""
        rate = f", {self.rate:.0f}/s" if self.rate is not None else ""
        if self.state == "down":
            return f"API down, probe in {math.ceil(self.probe_in or 0):.0f} s"
        if self.state == "probing":
            return "API down, probing"
        if self.state == "paused":
            return f"paused {math.ceil(self.paused_for or 0):.0f} s (Retry-After){rate}"
        if self.state == "throttled":
            return f"throttled{rate}"
        return f"ok{rate}"


class HasStatus(Protocol):
    """What progress lines and health checks read of a checker: its typed status."""

    def status(self) -> CheckerStatus: ...


class Checks(Protocol):
    """What the matcher needs: one check, counted in ``stats`` (a fake can be 3 lines)."""

    async def check(self, phone: str, stats: CheckStats) -> CheckOutcome: ...
