"""The one exception tree of ``lookup``.

::

    LookupFailure                      base of everything lookup raises on purpose
    ├── InputError (ValueError)        bad input; raised before any request is sent
    │   ├── InvalidMaskError           the mask cannot be parsed or is not resolvable
    │   │   ├── TooManyCandidatesError more candidates than the cap allows
    │   │   └── SightingsDisagreeError several sightings of one number that no number fits
    │   ├── UnknownRegionError         a city / province / area code / zip hint is unknown or ambiguous
    │   └── ConfigError                a setting or option is invalid
    │       └── CandidateCapError      a request asked for more candidates than the cap
    ├── TooManyQueuedError             a caller has too many lookups running or queued (429)
    ├── DataError                      the segment database is missing or corrupt
    └── OrderApiError                  the order API could not give a definite answer
        ├── TransientApiError          timeouts, resets, 5xx: worth retrying (``kind`` says which)
        │   └── ThrottledApiError      429, 503 + Retry-After, a throttle signal in a 200 body:
        │                              backpressure, never a failure of the API
        ├── FatalApiError              401/403/400/other 4xx, an unexpected body: retrying will not help
        └── CircuitOpenError           the breaker stayed open until the deadline (callers wait for one probe)

Messages say what was wrong and what to do; they never contain a credential.
"""

from __future__ import annotations

from typing import Literal

TransientKind = Literal["timeout", "connect", "reset", "5xx", "throttled", "other"]
"""What kind of transient failure a :class:`TransientApiError` is (the metrics split them)."""

__all__ = [
    "CandidateCapError",
    "CircuitOpenError",
    "ConfigError",
    "DataError",
    "FatalApiError",
    "InputError",
    "InvalidMaskError",
    "LookupFailure",
    "OrderApiError",
    "SightingsDisagreeError",
    "ThrottledApiError",
    "TooManyCandidatesError",
    "TooManyQueuedError",
    "TransientApiError",
    "TransientKind",
    "UnknownRegionError",
]


class LookupFailure(Exception):
    """Base class of every exception ``lookup`` raises on purpose."""


class InputError(LookupFailure, ValueError):
    """The caller's input is wrong; nothing was sent to any API."""


class InvalidMaskError(InputError):
    """The mask text cannot be turned into a resolvable set of numbers."""


class TooManyCandidatesError(InvalidMaskError):
    """The mask and hints leave more candidates than ``max_candidates`` allows."""

    def __init__(self, message: str, *, count: int, cap: int) -> None:
        super().__init__(message)
        self.count = count
        self.cap = cap


class SightingsDisagreeError(InvalidMaskError):
    """Several sightings of one number show different digits at one position."""

    def __init__(self, message: str, *, position: int) -> None:
        super().__init__(message)
        self.position = position


class UnknownRegionError(InputError):
    """A region hint matched nothing, or more than one region."""

    def __init__(self, message: str, *, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.suggestions = suggestions


class ConfigError(InputError):
    """A setting or command-line option is invalid."""


class CandidateCapError(ConfigError):
    """A request asked for a candidate cap above the one this tool or service allows."""


class TooManyQueuedError(LookupFailure):
    """A caller has as many lookups running or queued as it may; ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DataError(LookupFailure):
    """The segment database cannot be found or read."""


class OrderApiError(LookupFailure):
    """The order API did not give a definite answer for a check."""


class TransientApiError(OrderApiError):
    """A failure that may pass: timeout, connection error or reset, 5xx.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one;
    ``kind`` is ``timeout``, ``connect``, ``reset``, ``5xx``, ``throttled`` or ``other``.
    """

    kind: TransientKind = "other"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        kind: TransientKind | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        if kind is not None:
            self.kind = kind
        elif status is not None and 500 <= status < 600:
            self.kind = "5xx"


class ThrottledApiError(TransientApiError):
    """The API asked us to slow down: 429, 503 with ``Retry-After``, or a configured
    throttle signal in a 200 body. Backpressure, not a failure: it never counts toward
    the breaker; the checker lowers its rate (and pauses for ``retry_after``) and resends.
    """

    kind: TransientKind = "throttled"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after, kind="throttled")


class FatalApiError(OrderApiError):
    """A failure that retrying will not fix: 400, 401, 403, other 4xx, an unexpected body."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CircuitOpenError(OrderApiError):
    """The circuit breaker is open after repeated failures: callers wait for its one probe,
    and a check raises this only when the deadline comes first."""
