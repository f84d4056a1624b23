"""The checker's policies, one object each, composed by :class:`lookup.engine.checker.Checker`.

Each is small, synchronous where it can be, and takes an injectable clock (and sleep), so
it is tested alone with a fake clock:

* :class:`FifoSlots` (:class:`ConcurrencyLimit`): at most N in flight, FIFO, a limit that
  can shrink and grow; each lookup's fair share is one too;
* :class:`Pacer`: GCRA spacing under a ceiling, a whole-checker pause, AIMD on throttling;
* :class:`RetryPolicy` and :class:`RetryBudget`: full-jitter backoff, a refilling budget;
* :class:`Breaker`: opens on runs of transient failures, one probe, callers wait;
* :class:`SingleFlight`: identical checks share one request;
* :class:`ChunkSizer`: numbers per batch request, following the source's answer times;
* :class:`FairScheduler`: equal shares of the in-flight slots per caller and lookup;
* :class:`Quota` (protocol; :class:`LocalQuota` in process): what the checker paces by,
  its own pacer or one budget for many checkers.

The outcome cache is :class:`OutcomeCache` (TTL + LRU, with the checker's clock; a miss
costs one dict lookup).
"""

from lookup.engine.policies.breaker import Breaker, BreakerState
from lookup.engine.policies.cache import OutcomeCache
from lookup.engine.policies.chunks import ChunkSizer
from lookup.engine.policies.concurrency import ConcurrencyLimit, FifoSlots
from lookup.engine.policies.fair import FairScheduler, Gate
from lookup.engine.policies.flight import SingleFlight
from lookup.engine.policies.pacing import Pacer
from lookup.engine.policies.quota import (
    UNSHARED_BREAKER,
    LocalQuota,
    Quota,
    SharedBreaker,
    SharedOutcomes,
    UnsharedBreaker,
)
from lookup.engine.policies.retry import RetryBudget, RetryPolicy

__all__ = [
    "UNSHARED_BREAKER",
    "Breaker",
    "BreakerState",
    "ChunkSizer",
    "ConcurrencyLimit",
    "FairScheduler",
    "FifoSlots",
    "Gate",
    "LocalQuota",
    "OutcomeCache",
    "Pacer",
    "Quota",
    "RetryBudget",
    "RetryPolicy",
    "SharedBreaker",
    "SharedOutcomes",
    "SingleFlight",
    "UnsharedBreaker",
]
