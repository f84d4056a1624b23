"""Circuit breaker: opens on a run of transient failures, one half-open probe, callers wait.

Throttling never counts: a 429 means the API is up and asking us to slow down, which the
pacer handles. Fatal answers do not count either: the API answered.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Literal

from lookup.domain.errors import CircuitOpenError

__all__ = ["Breaker", "BreakerState"]

BreakerState = Literal["closed", "open", "half_open"]
log = logging.getLogger("lookup.checker")

FIRST_CONTACT_COOLDOWN = 2.0
"""The cooldown after connect failures while the API has never answered: a wrong address
is then found by the next probe within seconds (the HTTP source calls connect failures of
an API never seen for 3 s a wrong address), not after a full ``cooldown``; one probe
every 2 s is still polite to an API that is starting."""


class Breaker:
    """``closed`` -> (``threshold`` transient failures in a row) -> ``open`` for
    ``cooldown`` seconds (:data:`FIRST_CONTACT_COOLDOWN` at most when it cannot connect
    to an API that has never answered) -> ``half_open``: one probe request; success
    closes, failure re-opens.

    :meth:`admit` makes callers *wait* while open or while the probe runs, until their
    deadline, instead of failing at once; only then it raises :class:`CircuitOpenError`.
    """

    def __init__(
        self,
        threshold: int,
        cooldown: float,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._sleep = sleep
        self._state: BreakerState = "closed"
        self.failures = 0
        self.open_until = 0.0
        self.last_error = ""
        self.opens = 0
        self._answered_once = False
        self._probe: asyncio.Future[None] | None = None  # set while a probe runs

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._clock() >= self.open_until:
            return "half_open"
        return self._state

    @property
    def closed(self) -> bool:
        """Whether checks pass without asking (the fast path's test)."""
        return self._state == "closed"

    @property
    def probing(self) -> bool:
        return self._probe is not None

    def probe_in(self) -> float | None:
        """Seconds until the next probe may go, while open."""
        if self._state != "open":
            return None
        return max(0.0, self.open_until - self._clock())

    async def admit(self, deadline: float = math.inf) -> bool:
        """Let an attempt through; ``True`` when it is the half-open probe.

        Waits while the breaker is open or a probe is running; raises
        :class:`CircuitOpenError` when ``deadline`` (clock time) comes first.
        """
        while self._state != "closed":
            now = self._clock()
            if self._state == "open" and now < self.open_until:
                if self.open_until > deadline:
                    if deadline > now:
                        await self._sleep(deadline - now)
                    raise self._error()
                await self._sleep(self.open_until - now)
                continue
            if self._probe is None:
                if self._state == "open":
                    self._state = "half_open"
                    log.info("circuit breaker half-open: sending one probe request")
                self._probe = asyncio.get_running_loop().create_future()
                return True
            remaining = deadline - now
            if remaining <= 0:
                raise self._error()
            try:
                await asyncio.wait_for(asyncio.shield(self._probe), min(remaining, 3600.0))
            except TimeoutError:
                raise self._error() from None
        return False

    def _end_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None and not probe.done():
            probe.set_result(None)

    def on_success(self, probe: bool) -> None:
        """The API answered (a definite answer, a throttle or a fatal refusal)."""
        self.failures = 0
        self._answered_once = True
        if probe:
            if self._state != "closed":
                log.info("circuit breaker closed: the order API answers again")
            self._state = "closed"
            self._end_probe()

    def on_failure(self, probe: bool, error: str, *, connect: bool = False) -> None:
        """A transient failure (``connect``: the connection itself failed)."""
        self.failures += 1
        self.last_error = error
        if probe or (self._state == "closed" and self.failures >= self.threshold):
            wait = self.cooldown
            if connect and not self._answered_once:
                wait = min(wait, FIRST_CONTACT_COOLDOWN)
            if self._state == "closed":
                log.warning(
                    "circuit breaker open: the order API failed %d times in a row (last: %s); "
                    "checks wait, next probe in %.0f s", self.failures, error, wait,
                )  # fmt: skip
            else:
                log.info("circuit breaker probe failed (%s); next probe in %.0f s",
                         error, wait)  # fmt: skip
            self._state = "open"
            self.open_until = self._clock() + wait
            self.opens += 1
        if probe:
            self._end_probe()

    def hold(self, seconds: float) -> None:
        """Another process's breaker is open (a shared quota said so): be open here too for
        ``seconds``, without counting a failure; callers wait as for an own open."""
        if seconds <= 0:
            return
        if self._state == "closed":
            log.warning("circuit breaker open in another process sharing the quota: "
                        "checks wait, next probe in %.0f s", seconds)  # fmt: skip
        self._state = "open"
        self.open_until = max(self.open_until, self._clock() + seconds)

    def probe_cancelled(self) -> None:
        """The probe was cancelled before an answer: let another caller probe."""
        self._end_probe()

    def _error(self) -> CircuitOpenError:
        last = f" (last error: {self.last_error})" if self.last_error else ""
        if self._state == "open":
            wait = max(0.0, self.open_until - self._clock())
            detail = f"; the next probe is allowed in {wait:.1f}s"
        else:
            detail = "; a probe request is testing the API"
        return CircuitOpenError(
            f"circuit breaker open: the order API failed {self.failures} times in a row{last}, "
            f"and it did not recover before the lookup's deadline{detail}"
        )
