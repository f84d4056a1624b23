"""The service's Prometheus metrics, in a registry of its own (one per app).

Two words, used the same way everywhere: a *number checked* is one candidate answered;
a *request* is one call to the order API (one number, or a chunk of numbers through a
batch endpoint or one SQL query).

* ``lookup_http_requests_total{route,status}`` and
  ``lookup_http_request_duration_seconds{route}``: every answer, by route *template*
  (``/v1/segments/{seven}``; ``unmatched`` for a path no route knows).
* ``lookup_lookups_total{surface,status}``, ``lookup_lookup_duration_seconds{surface}``,
  ``lookup_lookups_in_progress``, ``lookup_lookups_refused_total{surface}``: lookups by
  the surface they came from ('invalid': input errors).
* ``lookup_numbers_checked_total{outcome}``: numbers answered: ``hit``, ``miss`` (by the
  order API) and ``cached``.
* ``lookup_api_requests_total{outcome}``: requests by outcome: ``answered``, ``fatal``,
  ``throttled``, the transient kinds ``timeout``, ``connect``, ``reset``, ``5xx``,
  ``other``, and ``unfinished`` (in flight, or cancelled once the lookup was over); their
  sum is every request sent. ``lookup_api_request_duration_seconds{outcome}``: their
  latency (``answered``, ``throttled``, ``transient``, ``fatal``).
* retries, retry budget, joined numbers, breaker counters; requests in flight; the
  breaker state; the checker's state (``lookup_checker_state{state}`` 1 for the current
  one), its paced rate (requests/s) and concurrency limit when the checker reports them.
* ``lookup_build_info{version,data_version,loop}`` 1; the process, platform
  (``python_info``) and GC (``python_gc_*``) collectors.

``Accept: application/openmetrics-text`` gets the OpenMetrics exposition
(:meth:`ServiceMetrics.exposition`). No ``_created`` series: the registry leaves them
out (they double the series count and Prometheus does not need them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import exposition as text_format
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics

from lookup import __version__
from lookup.runtime.lookups import SURFACES, Surface

__all__ = ["CHECKER_STATES", "LOOKUP_STATUSES", "OPENMETRICS", "TEXT_FORMAT", "ServiceMetrics"]

OPENMETRICS: Final = openmetrics.CONTENT_TYPE_LATEST
TEXT_FORMAT: Final = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes

LOOKUP_STATUSES: Final = ("matched", "not_found", "inconclusive", "api_error", "invalid")
CHECKER_STATES: Final = ("ok", "throttled", "paused", "down", "probing")
_BREAKER_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}
_CHECK_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
)  # fmt: skip
_LOOKUP_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_HTTP_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 300.0)
_LATENCY_OUTCOME: Final = {"hit": "answered", "miss": "answered", "batch": "answered"}
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

    def __init__(
        self, checker: Callable[[], _CheckerLike | None], data_version: Callable[[], str]
    ) -> None:
        self.registry: CollectorRegistry = _Registry()
        self._checker = checker
        self._data_version = data_version
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)  # python_info
        GCCollector(registry=r)  # python_gc_*
        self.http_requests = Counter(
            "lookup_http_requests", "HTTP answers by route template and status",
            ["route", "status"], registry=r,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "lookup_http_request_duration_seconds",
            "Time to answer an HTTP request (a stream: until its end), by route template",
            ["route"], registry=r, buckets=_HTTP_BUCKETS,
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
        self.request_seconds = Histogram(
            "lookup_api_request_duration_seconds",
            "Latency of one request to the order API, by outcome",
            ["outcome"], registry=r, buckets=_CHECK_BUCKETS,
        )  # fmt: skip
        self.refused = Counter(
            "lookup_lookups_refused", "Lookups refused with 429: the caller's queue was full",
            ["surface"], registry=r,
        )  # fmt: skip
        r.register(self)  # collect() below
        self._http_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._lookup_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def http_answered(self, route: str, status: int, seconds: float) -> None:
        """One HTTP answer: ``lookup_http_requests_total`` and its duration. The labelled
        children are kept here (``labels()`` takes a lock and builds a key every time)."""
        children = self._http_children.get((route, status))
        if children is None:
            children = self._http_children[route, status] = (
                self.http_requests.labels(route, str(status)), self.http_seconds.labels(route)
            )  # fmt: skip
        children[0].inc()
        children[1].observe(seconds)

    # -- the one lookup path's sink (lookup.runtime.lookups.LookupMetrics) --

    def lookup_started(self, surface: Surface) -> None:
        self.in_progress.inc()

    def lookup_ended(self, surface: Surface, status: str, seconds: float | None) -> None:
        children = self._lookup_children.get((surface, status))
        if children is None:
            children = self._lookup_children[surface, status] = (
                self.lookups.labels(surface, status), self.lookup_seconds.labels(surface)
            )  # fmt: skip
        children[0].inc()
        if seconds is not None:
            self.in_progress.dec()
            children[1].observe(seconds)

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
        """The checker's latency hook (``on_latency=``): one request's latency."""
        self.request_seconds.labels(_LATENCY_OUTCOME.get(outcome, outcome)).observe(seconds)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape's body and its Content-Type: OpenMetrics when ``accept`` (the
        scrape's ``Accept`` header) names it, else the Prometheus text format."""
        if "application/openmetrics-text" in accept:
            body: bytes = openmetrics.generate_latest(self.registry)  # type: ignore[no-untyped-call]
            return body, OPENMETRICS
        return text_format.generate_latest(self.registry), TEXT_FORMAT

    def collect(self) -> Iterable[Metric]:
        build = InfoMetricFamily("lookup_build", "The running lookup: version, data, event loop")
        build.add_metric([], {"version": __version__, "data_version": self._data_version(),
                              "loop": _loop()})  # fmt: skip
        yield build
        checker = self._checker()
        if checker is None:
            return
        c = checker.counters
        yield from _requests(c)
        numbers = CounterMetricFamily(
            "lookup_numbers_checked", "Numbers answered, by the order API or the cache",
            labels=["outcome"],
        )  # fmt: skip
        for label, name in (("hit", "hits"), ("miss", "misses"), ("cached", "cache_hits")):
            numbers.add_metric([label], _count(c, name))
        yield numbers
        simple: tuple[tuple[str, str, str], ...] = (
            ("lookup_api_retries",
             "Requests sent again after a transient failure or a throttle", "retries"),
            ("lookup_api_retries_denied", "Retries refused by the retry budget",
             "retries_denied"),
            ("lookup_numbers_joined",
             "Numbers answered by joining an identical request in flight", "deduped"),
            ("lookup_breaker_opens", "Times the circuit breaker opened", "breaker_opens"),
            ("lookup_api_requests_short_circuited",
             "Requests not sent: the breaker stayed open until the deadline", "short_circuited"),
        )  # fmt: skip
        for metric, doc, name in simple:
            yield CounterMetricFamily(metric, doc, value=_count(c, name))
        yield GaugeMetricFamily(
            "lookup_api_requests_in_flight", "Requests to the order API in flight (slots held)",
            value=_count(c, "in_flight"),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "lookup_breaker_state", "Circuit breaker: 0 closed, 1 half_open, 2 open",
            value=_BREAKER_VALUES.get(checker.breaker_state, 2),
        )  # fmt: skip
        yield from _status_metrics(checker)


def _loop() -> str:
    """``uvloop`` or ``asyncio``: the loop this scrape runs on."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return "none"
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def _requests(c: object) -> Iterable[Metric]:
    """``lookup_api_requests_total{outcome}``: every request sent, by what became of it."""
    family = CounterMetricFamily(
        "lookup_api_requests", "Requests to the order API by outcome (a batch request "
        "counts once)", labels=["outcome"],
    )  # fmt: skip
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
        family.add_metric([label], value)
    answered, fatal = _count(c, "answered"), _count(c, "fatal_errors")
    ended = answered + fatal + throttled + max(transient, split)
    for label, value in (
        ("answered", answered), ("fatal", fatal), ("throttled", throttled),
        ("other", max(transient - split, 0)),
        ("unfinished", max(_count(c, "requests") - ended, 0)),
    ):  # fmt: skip
        family.add_metric([label], value)
    yield family


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
            "lookup_checker_rate", "Requests/s the checker paces to now", value=rate
        )
    limit = getattr(status, "limit", None)
    if isinstance(limit, int):
        yield GaugeMetricFamily(
            "lookup_checker_limit", "Requests the checker lets in flight now", value=limit
        )
