"""Pacing: evenly spaced request starts (GCRA), a whole-checker pause, and AIMD on throttling.

The configured rate is a *ceiling*. The effective rate starts at the ceiling, or, with no
ceiling, unpaced (the concurrency window then starts small and probes upward, see
:mod:`lookup.checker`). A throttle signal lowers the effective rate multiplicatively
(from what was really being sent, as the AWS SDKs' adaptive mode does); every clean
interval in which the pacer held callers back raises it by a fixed step (a twentieth of
the rate reached after the last decrease), up to the ceiling: additive increase,
multiplicative decrease, as TCP and gradient limiters do.

Only a throttle of a request *sent after* the last decrease, and at least a reaction
window (0.1 s, or two request gaps at the new rate) after it, lowers the rate again
(unless the rate is still over twice what the API accepts: then every such signal cuts): the
answers to requests already on the wire say nothing about the new rate (TCP's
one-decrease-per-window rule). On loopback a round trip is shorter than a request gap, so
"sent after" alone let one burst cut 300/s to 2/s in 70 ms. And a decrease never goes below
nine tenths of the rate the API *accepted* (answers not throttled) over the last second:
that rate is what the server allows, so the sawtooth stays near it (as BBR keeps to the
delivery rate).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["Pacer"]

log = logging.getLogger("lookup.checker")

DECREASE = 0.7
"""Multiplicative decrease on a throttle signal (CUBIC's and the AWS SDKs' beta)."""
SLOW_START_DECREASE = 0.5
"""Decrease when the first throttle ends the unpaced start (TCP's slow-start exit)."""
CLEAN_INTERVAL = 0.25
"""Seconds without a throttle signal that earn an increase (at least two request gaps)."""
MIN_RATE = 0.2
"""Never pace slower than one request per five seconds."""
REACTION = 0.1
"""Seconds after a decrease before another throttle may lower the rate again."""
ACCEPTED_FLOOR = 0.9
"""A decrease keeps at least this share of the rate the API accepted over the last second."""
_WINDOW = 1.0  # seconds of sends the measured rate looks at
_MIN_SAMPLES = 8


class Pacer:
    """Spaces request starts ``1 / rate`` apart, with no burst after idle time.

    :param ceiling: requests per second never exceeded (``None``: no ceiling).
    :param headroom: pace this fraction under the ceiling: a server enforcing N/s over a
        sliding window rejects a client spaced exactly 1/N apart whenever network jitter
        bunches two requests.
    :param on_change: called with the new effective rate (``None``: unpaced) after a change.
    """

    def __init__(
        self,
        ceiling: float | None,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        headroom: float = 0.02,
        on_change: Callable[[float | None, str], None] | None = None,
    ) -> None:
        self.ceiling = ceiling
        self._clock = clock
        self._sleep = sleep
        self._headroom = headroom
        self._on_change = on_change
        self._rate: float | None = None
        self._interval = 0.0
        self._set(ceiling)
        self._next_slot = float("-inf")
        self.paused_until = float("-inf")
        self.last_throttle = float("-inf")
        self._last_decrease = float("-inf")
        self._last_change = clock()
        self._held_back = False  # a caller waited for its slot since the last change
        self._step = 0.0
        self._sent: deque[float] = deque(maxlen=256)
        self._accepted: deque[float] = deque(maxlen=256)
        self.decreases = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The effective rate in requests per second (``None``: unpaced)."""
        return self._rate

    def _set(self, rate: float | None) -> None:
        if rate is not None and self.ceiling is not None:
            rate = min(rate, self.ceiling)
        self._rate = rate
        self._interval = (1.0 + self._headroom) / rate if rate else 0.0

    def measured_rate(self) -> float | None:
        """Request starts per second over the last second, if enough were seen."""
        return self._per_second(self._sent)

    def accepted_rate(self) -> float | None:
        """Answers that were not throttled, per second over the last second."""
        return self._per_second(self._accepted)

    def _per_second(self, times: deque[float]) -> float | None:
        now = self._clock()
        while times and now - times[0] > _WINDOW:
            times.popleft()
        if len(times) < _MIN_SAMPLES:
            return None
        span = max(now - times[0], 1e-3)
        return len(times) / span

    # -- hooks -----------------------------------------------------------------------------

    def try_start(self) -> bool:
        """Start now if neither the pause nor the spacing holds us back (the fast path)."""
        now = self._clock()
        if self.paused_until > now or self._next_slot > now:
            return False
        self._next_slot = now + self._interval
        self._sent.append(now)
        return True

    async def wait(self, deadline: float = math.inf) -> bool:
        """Wait for this caller's start slot; ``False`` when it would fall after ``deadline``."""
        while True:
            now = self._clock()
            if self.paused_until > now:
                if self.paused_until > deadline:
                    return False
                await self._sleep(self.paused_until - now)
                continue
            slot = max(now, self._next_slot)
            if slot > deadline:
                return False
            self._next_slot = slot + self._interval
            if slot > now:
                self._held_back = True
                await self._sleep(slot - now)
            if self.paused_until <= slot:
                self._sent.append(slot)
                return True
            # A pause began while we waited and our slot fell inside it: queue again behind
            # it (the lost slot only spaces starts more).

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (a ``Retry-After``), then resume spaced."""
        until = self._clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            log.info("order API asked to wait: pausing every check for %.1f s (Retry-After)",
                     seconds)  # fmt: skip
        # Resume spaced at the rate after the pause, not with a burst.
        self._next_slot = max(self._next_slot, until)

    def defer(self, until: float) -> None:
        """Start nothing before ``until`` (clock time), then resume spaced: slots granted
        elsewhere (a shared quota's, before this pacer took over) are already taken."""
        self._next_slot = max(self._next_slot, until)

    def on_throttle(self, sent_at: float) -> bool:
        """A request sent at ``sent_at`` was throttled; lower the rate if it says anything
        new. Returns whether the rate was lowered."""
        now = self._clock()
        self.last_throttle = now
        if sent_at < self._last_decrease:
            return False
        accepted = self.accepted_rate()
        far_above = self._rate is not None and accepted is not None and self._rate > 2 * accepted
        if (
            self._rate is not None
            and not far_above  # far above what the API accepts: keep cutting quickly
            and now - self._last_decrease < max(REACTION, 2.0 / self._rate)
        ):
            return False
        measured = self.measured_rate()
        old = self._rate
        if old is None:
            base = measured if measured is not None else 10.0
            new = base * SLOW_START_DECREASE
        else:
            base = min(old, measured) if measured is not None else old
            new = base * DECREASE
        if accepted is not None:
            new = max(new, min(base, accepted * ACCEPTED_FLOOR))
        new = max(new, MIN_RATE)
        self._set(new)
        self._last_decrease = self._last_change = now
        self._held_back = False
        self._step = max(MIN_RATE, base / 20.0)
        self.decreases += 1
        shown = f"{old:.0f}/s" if old is not None else "unpaced"
        log.info("order API throttled: rate %s -> %.0f/s", shown, new)
        if self._on_change is not None:
            self._on_change(self._rate, "throttled")
        return True

    def on_clean(self) -> None:
        """An answer that was not throttled: after a clean interval in which the rate held
        callers back, raise it by one step (never above the ceiling)."""
        now = self._clock()
        self._accepted.append(now)
        rate = self._rate
        if rate is None or not self._held_back or self._step == 0.0:
            return
        if now - self._last_change < max(CLEAN_INTERVAL, 2.0 / rate):
            return
        if self.last_throttle > self._last_change:
            self._last_change = now
            return
        if self.ceiling is not None and rate >= self.ceiling:
            return
        self._set(rate + self._step)
        self._last_change = now
        self._held_back = False
        log.debug("no throttling for a while: rate %.0f/s -> %.0f/s", rate, self._rate or 0)
        if self._on_change is not None:
            self._on_change(self._rate, "clean")
