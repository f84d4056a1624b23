"""The service's Prometheus metrics, in a registry of its own (one per app).

* ``lookup_http_requests_total{route,status}``: every answer, by route *template*
  (``/v1/segments/{seven}``; ``unmatched`` for a path no route knows) and status.
* ``lookup_lookups_total{status}``, ``lookup_lookup_duration_seconds``,
  ``lookup_lookups_in_progress``: lookups answered ('invalid': input errors).
* ``lookup_checks_total{outcome}``: order-API answers by outcome: ``hit``, ``miss``,
  ``fatal``, ``throttled`` and the transient kinds ``timeout``, ``connect``, ``reset``,
  ``5xx``, ``other``; their sum is every answer the checker saw.
* retries, retry budget, cache, single-flight, breaker counters; checks in flight; the
  breaker state; the checker's state (``lookup_checker_state{state}`` 1 for the current
  one), its effective rate and concurrency limit when the checker reports them.
* the process collector (``process_cpu_seconds_total``, memory, open fds, ...).

No ``_created`` series: the registry leaves them out (they double the series count and
Prometheus does not need them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from lookup.runtime.lookups import SURFACES, Surface

__all__ = ["CHECKER_STATES", "LOOKUP_STATUSES", "ServiceMetrics"]

LOOKUP_STATUSES: Final = ("matched", "not_found", "inconclusive", "api_error", "invalid")
CHECKER_STATES: Final = ("ok", "throttled", "paused", "down", "probing")
_BREAKER_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}
_CHECK_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
)  # fmt: skip
_LOOKUP_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# (label, CheckerCounters field) of the transient kinds; 'other' is the rest of
# transient_errors. Read with getattr: older checkers only count transient_errors.
_TRANSIENT_KINDS: Final = (
    ("timeout", "timeouts"), ("connect", "connect_errors"), ("reset", "resets"),
    ("5xx", "server_errors"),
)  # fmt: skip


class _CheckerLike(Protocol):
    """What the metrics read of a :class:`~lookup.engine.checker.Checker`."""

    @property
    def counters(self) -> object: ...

    @property
    def breaker_state(self) -> str: ...


class _Registry(CollectorRegistry):
    """A registry whose exposition leaves out the ``_created`` samples."""

    def collect(self) -> Iterable[Metric]:
        for metric in super().collect():
            if any(s.name.endswith("_created") for s in metric.samples):
                metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


def _count(counters: object, name: str) -> int:
    value = getattr(counters, name, 0)
    return value if isinstance(value, int) else 0


class ServiceMetrics:
    """The service's own metrics and the checker's counters, read at scrape time."""

    def __init__(self, checker: Callable[[], _CheckerLike | None]) -> None:
        self.registry: CollectorRegistry = _Registry()
        self._checker = checker
        r = self.registry
        ProcessCollector(registry=r)
        self.http_requests = Counter(
            "lookup_http_requests", "HTTP answers by route template and status",
            ["route", "status"], registry=r,
        )  # fmt: skip
        self.lookups = Counter(
            "lookup_lookups", "Lookups answered, by surface and status ('invalid': input errors)",
            ["surface", "status"], registry=r,
        )  # fmt: skip
        for surface in SURFACES:
            for status in LOOKUP_STATUSES:
                self.lookups.labels(surface, status)
        self.lookup_seconds = Histogram(
            "lookup_lookup_duration_seconds", "Wall time of a lookup, by surface", ["surface"],
            registry=r, buckets=_LOOKUP_BUCKETS,
        )  # fmt: skip
        self.in_progress = Gauge("lookup_lookups_in_progress", "Lookups running", registry=r)
        self.check_seconds = Histogram(
            "lookup_check_duration_seconds", "Latency of one order-API request (any outcome)",
            registry=r, buckets=_CHECK_BUCKETS,
        )  # fmt: skip
        self.refused = Counter(
            "lookup_lookups_refused", "Lookups refused with 429: the caller's queue was full",
            ["surface"], registry=r,
        )  # fmt: skip
        r.register(self)  # collect() below

    # -- the one lookup path's sink (lookup.runtime.lookups.LookupMetrics) --

    def lookup_started(self, surface: Surface) -> None:
        self.in_progress.inc()

    def lookup_ended(self, surface: Surface, status: str, seconds: float | None) -> None:
        self.lookups.labels(surface, status).inc()
        if seconds is not None:
            self.in_progress.dec()
            self.lookup_seconds.labels(surface).observe(seconds)

    def lookup_refused(self, surface: Surface) -> None:
        self.refused.labels(surface).inc()

    def worker_info(self, worker: str) -> None:
        """``lookup_service_worker_info{worker}`` 1: which worker of ``--workers N`` this
        exposition is from (each worker counts its own answers and checks)."""
        Gauge(
            "lookup_service_worker_info", "The worker process that answered this scrape",
            ["worker"], registry=self.registry,
        ).labels(worker).set(1)  # fmt: skip

    def on_latency(self, seconds: float, outcome: str) -> None:
        """The checker's latency hook (``on_latency=``)."""
        del outcome  # counted by the checker itself; see collect()
        self.check_seconds.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterable[Metric]:
        checker = self._checker()
        if checker is None:
            return
        c = checker.counters
        checks = CounterMetricFamily(
            "lookup_checks", "Order-API answers by outcome", labels=["outcome"]
        )
        transient = _count(c, "transient_errors")
        throttled = _count(c, "throttled")
        if throttled < _count(c, "rate_limited"):
            # a v1 checker: 429s counted in transient_errors and rate_limited only
            throttled = _count(c, "rate_limited")
            transient -= throttled
        split = 0
        for label, name in _TRANSIENT_KINDS:
            value = _count(c, name)
            split += value
            checks.add_metric([label], value)
        for label, value in (
            ("hit", _count(c, "hits")), ("miss", _count(c, "misses")),
            ("fatal", _count(c, "fatal_errors")), ("throttled", throttled),
            ("other", max(transient - split, 0)),
        ):  # fmt: skip
            checks.add_metric([label], value)
        yield checks
        simple: tuple[tuple[str, str, str], ...] = (
            ("lookup_check_retries", "Retries of transient errors", "retries"),
            ("lookup_check_retries_denied", "Retries refused by the retry budget",
             "retries_denied"),
            ("lookup_rate_limited", "Throttle answers (429 ...) received from the order API",
             "rate_limited"),
            ("lookup_check_cache_hits", "Checks answered from the cache", "cache_hits"),
            ("lookup_checks_deduped", "Checks that joined an identical check in flight",
             "deduped"),
            ("lookup_breaker_opens", "Times the circuit breaker opened", "breaker_opens"),
            ("lookup_checks_short_circuited", "Checks refused by the open breaker",
             "short_circuited"),
        )  # fmt: skip
        for metric, doc, name in simple:
            yield CounterMetricFamily(metric, doc, value=_count(c, name))
        yield GaugeMetricFamily(
            "lookup_checks_in_flight", "Order-API requests in flight (slots held)",
            value=_count(c, "in_flight"),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "lookup_breaker_state", "Circuit breaker: 0 closed, 1 half_open, 2 open",
            value=_BREAKER_VALUES.get(checker.breaker_state, 2),
        )  # fmt: skip
        yield from _status_metrics(checker)


def _status_metrics(checker: object) -> Iterable[Metric]:
    """``Checker.status()`` as gauges, when the checker has it (the v2 engine)."""
    status_of = getattr(checker, "status", None)
    if not callable(status_of):
        return
    status = status_of()
    state = getattr(status, "state", None)
    family = GaugeMetricFamily(
        "lookup_checker_state", "The checker's state: 1 for the current one", labels=["state"]
    )
    for name in CHECKER_STATES:
        family.add_metric([name], 1.0 if name == state else 0.0)
    yield family
    rate = getattr(status, "rate", None)
    if isinstance(rate, int | float):
        yield GaugeMetricFamily(
            "lookup_checker_rate", "Effective checks/s the checker paces to", value=rate
        )
    limit = getattr(status, "limit", None)
    if isinstance(limit, int):
        yield GaugeMetricFamily(
            "lookup_checker_limit", "Checks the checker lets in flight now", value=limit
        )
