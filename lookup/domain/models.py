"""Pydantic models that cross module boundaries: hints, requests, limits, outcomes, results."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lookup.domain.hints import HINT_FIELDS, HINT_MAX_LENGTH, HintArgs, hint_text
from lookup.domain.privacy import redact_text
from lookup.domain.segments import SegmentInfo
from lookup.domain.tiers import TierName

__all__ = [
    "DEFAULT_LIMITS",
    "HINT_FIELDS",
    "MAX_SIGHTINGS",
    "CheckOutcome",
    "HintArgs",
    "Hints",
    "Hit",
    "Limits",
    "LookupRequest",
    "LookupResult",
    "SegmentInfo",
    "Status",
    "TierName",
    "TierReport",
]

Status = Literal["matched", "not_found", "inconclusive", "api_error"]
Mode = Literal["first", "all"]

MAX_SIGHTINGS: Final = 8
"""At most this many other sightings (``also``) of one number per lookup."""


class Hints(BaseModel):
    """Where the customer is and which carrier they use: all optional, several must agree.

    The one declaration of the five hints (CLI options, batch rows, service requests).
    Values are stripped, blanks become ``None`` and numbers (``"area_code": 571`` in
    JSON, a zip read as a number) become text. Whether a hint is known is decided later
    (:meth:`lookup.domain.segments.SegmentDB.resolve`, :func:`lookup.domain.tiers.plan`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    city: str | None = Field(None, max_length=HINT_MAX_LENGTH["city"],
                             description="city name: 杭州, 杭州市 ...")  # fmt: skip
    province: str | None = Field(None, max_length=HINT_MAX_LENGTH["province"],
                                 description="province name: 浙江 ...")  # fmt: skip
    area_code: str | None = Field(None, max_length=HINT_MAX_LENGTH["area_code"],
                                  description="area code: 0571")  # fmt: skip
    zip: str | None = Field(None, max_length=HINT_MAX_LENGTH["zip"],
                            description="zip code: 310000 (6 digits)")  # fmt: skip
    carrier: str | None = Field(None, max_length=HINT_MAX_LENGTH["carrier"],
                                description="移动 / 联通 / 电信 / 广电")  # fmt: skip

    @field_validator(*HINT_FIELDS, mode="before")
    @classmethod
    def _hint_text(cls, value: object) -> object:
        return hint_text(value)

    def hints(self) -> HintArgs:
        """The five hints as keyword arguments of :func:`~lookup.domain.tiers.plan`."""
        return HintArgs(city=self.city, province=self.province, area_code=self.area_code,
                        zip=self.zip, carrier=self.carrier)  # fmt: skip

    def given(self) -> dict[str, str]:
        """Only the hints that are set (for messages and reports)."""
        return {k: v for k, v in self.hints().items() if isinstance(v, str)}


class LookupRequest(Hints):
    """One lookup asked for: a mask, its hints, the mode and an optional candidate cap.

    The body of the service's ``POST /v1/lookups`` (and each item of a batch); the CLI's
    ``find`` builds one from its options.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    mask: str = Field(min_length=1, max_length=64, description="e.g. 138****1234")
    also: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=MAX_SIGHTINGS,
        description="other sightings of the same number, e.g. ['1385715****']: intersected "
        "with mask before planning",
    )
    mode: Mode = "first"
    max_candidates: int | None = Field(
        None, ge=1, description="refuse masks with more candidates (at most the service's cap)"
    )


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
    ceiling; the checker then starts at ``start_rate`` and probes upward."""
    start_rate: float | None = Field(50.0, gt=0)
    """With no ceiling: pacing starts here and doubles while answers come back clean, until
    the first throttle signal (a paced slow start). ``None``: unpaced until then, for an
    API you own (the bundled demo mock)."""
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
    """Numbers per batch request, when the order API has a batch endpoint: where the chunk
    size starts (it follows the source's answer times, 50-1000)."""
    adapt_batch_size: bool = True
    """``False``: every chunk is ``batch_size`` numbers (a source with a fixed limit)."""
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

    @field_validator("reason")
    @classmethod
    def _safe_reason(cls, value: str | None) -> str | None:
        # the reason may quote a source's own error text: a plug-in's token, a number,
        # an ANSI escape; every surface shows it, so it is cleaned once, here
        return None if value is None else redact_text(value)
