"""Pydantic models that cross module boundaries: limits, check outcomes, lookup results."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from lookup.candidates import TierName
from lookup.segments import SegmentInfo

__all__ = [
    "DEFAULT_LIMITS",
    "CheckOutcome",
    "Hit",
    "Limits",
    "LookupResult",
    "SegmentInfo",
    "Status",
    "TierName",
    "TierReport",
]

Status = Literal["matched", "not_found", "inconclusive", "api_error"]


class CheckOutcome(BaseModel):
    """A definite answer of the order API for one phone number."""

    model_config = ConfigDict(frozen=True)

    phone: str
    has_orders: bool
    order_count: int | None = None
    details: dict[str, Any] | None = None


class Limits(BaseModel):
    """How hard a process may lean on the order API. Shared by every lookup of a checker.

    The defaults are polite: a handful of requests in flight, a modest rate, a few
    retries with jittered backoff, ``Retry-After`` honoured, a breaker that stops a
    failing API from being hammered.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_in_flight: int = Field(16, ge=1, le=10_000)
    max_per_second: float | None = Field(50.0, gt=0)
    """A ceiling: throttle signals lower the effective rate below it (AIMD). ``None``: no
    ceiling; the checker then starts with a small window and probes upward."""
    max_attempts: int = Field(4, ge=1, le=20)
    backoff_base: float = Field(0.1, ge=0)
    backoff_cap: float = Field(5.0, ge=0)
    retry_after_cap: float = Field(30.0, ge=0)
    retry_budget_ratio: float = Field(0.5, ge=0)
    """Retry tokens a successful check puts back in the budget."""
    retry_budget_min: int = Field(50, ge=0)
    """The retry budget's capacity (and its initial tokens)."""
    retry_budget_rate: float = Field(10.0, ge=0)
    """Retry tokens the budget regains per second, successes or not: under failure,
    retries slow down to this pace instead of stopping."""
    breaker_threshold: int = Field(25, ge=1)
    breaker_cooldown: float = Field(10.0, ge=0)
    adaptive: bool = False
    """Accepted for v1 settings and ignored: since v2 the rate and the concurrency window
    adapt to throttle signals in every mode."""
    cache_ttl: float = Field(300.0, ge=0)
    cache_size: int = Field(100_000, ge=0)
    batch_size: int = Field(100, ge=1, le=10_000)
    """Numbers per batch request, when the order API has a batch endpoint."""
    deadline: float = Field(300.0, gt=0)
    """Seconds a lookup may take: failing checks are deferred and retried until then."""


DEFAULT_LIMITS: Final = Limits()


class Hit(BaseModel):
    """A number the order API said has orders."""

    phone: str
    tier: TierName
    region: SegmentInfo | None = None
    order_count: int | None = None


class TierReport(BaseModel):
    """What happened in one tier of a lookup."""

    name: TierName
    candidates: int
    checked: int = 0
    hits: int = 0
    errors: int = 0
    unresolved: int = 0
    elapsed_ms: float = 0.0
    status: Literal["skipped", "negative", "hit", "inconclusive", "aborted", "empty"] = "skipped"


class LookupResult(BaseModel):
    """The typed answer of one lookup. ``inconclusive`` is never ``not_found``."""

    status: Status
    complete: bool = True
    """False when the answer came after tiers whose candidates were not all answered
    (``tiers[...].unresolved``): an earlier, unchecked candidate may also have orders."""
    mask: str
    hint: str | None = None
    mode: Literal["first", "all"] = "first"
    phone: str | None = None
    tier: TierName | None = None
    region: SegmentInfo | None = None
    hits: list[Hit] = Field(default_factory=list)
    tiers: list[TierReport] = Field(default_factory=list)
    checks_sent: int = 0
    retries: int = 0
    cache_hits: int = 0
    elapsed_ms: float = 0.0
    reason: str | None = None
    data_version: str = ""
