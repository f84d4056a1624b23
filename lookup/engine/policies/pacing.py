"""Pacing: evenly spaced request starts (GCRA), a whole-checker pause, and AIMD on throttling.

The configured rate is a *ceiling*. The effective rate starts at the ceiling, or, with no
ceiling, at a modest :data:`START_RATE` that doubles each time :data:`SLOW_START_ANSWERS`
requests sent at the current rate came back clean while the pacer held callers back
(TCP's slow start, but paced: the overshoot when the server starts refusing is a few
requests, not a whole window on the wire). A throttle signal lowers the effective rate
multiplicatively (from what was really being sent, as the AWS SDKs' adaptive mode does);
every clean interval in which the pacer held callers back raises it by a fixed step (a
twentieth of the rate reached before the last decrease), up to the ceiling: additive
increase, multiplicative decrease, as TCP and gradient limiters do.

Only a throttle of a request *sent after* the last decrease, and at least a reaction
window (0.1 s, or two request gaps at the new rate) after it, lowers the rate again: the
answers to requests already on the wire say nothing about the new rate (TCP's
one-decrease-per-window rule). On loopback a round trip is shorter than a request gap, so
"sent after" alone let one burst cut 300/s to 2/s in 70 ms. When more of the answers since
the last decrease were refused than accepted, the rate is far above what the API allows:
every new signal cuts, and by the accepted share of those answers (the API's rate over
ours), so 300/s against a 100/s limit lands near 100/s in one step.

A decrease never goes below nine tenths of the rate the API *accepted* (answers not
throttled) since it began refusing, over at most the last second: that rate is what the
server allows, so the sawtooth stays near it (as BBR keeps to the delivery rate). Counting
from the first refusal, not from the start, keeps a server's burst allowance (nginx's
``burst=20``, accepted all at once) out of the estimate.
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
"""Decrease when the first throttle ends the slow start (TCP's slow-start exit)."""
DEEPEST_CUT = 0.25
"""A share-based cut (far above the accepted rate) keeps at least this share of the rate."""
START_RATE = 50.0
"""With no ceiling, pacing starts here (the polite default rate) and probes upward."""
SLOW_START_ANSWERS = 4
"""Clean answers to requests sent at the current rate before the slow start doubles it."""
SLOW_START_NAP = 0.02
"""Longest sleep of a queued caller in the slow start, so doublings reach it promptly."""
MAX_RATE = 1_000_000.0
"""The slow start stops doubling here (a pacing interval of one microsecond)."""
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
_MIN_SPAN = 0.05  # seconds of accepted answers before their rate means anything
_FAR_SIGNALS = 4  # throttles since the last decrease before "far above" is believed


class Pacer:
    """Spaces request starts ``1 / rate`` apart, with no burst after idle time.

    :param ceiling: requests per second never exceeded (``None``: no ceiling; the pacer then
        starts at ``start``, :data:`START_RATE` by default, and probes upward; a ``start``
        of ``None`` sends unpaced until the first throttle).
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
        start: float | None = START_RATE,
        on_change: Callable[[float | None, str], None] | None = None,
    ) -> None:
        self.ceiling = ceiling
        self._clock = clock
        self._sleep = sleep
        self._headroom = headroom
        self._on_change = on_change
        self._rate: float | None = None
        self._interval = 0.0
        self.slow_start = ceiling is None
        """Doubling from the start rate until the first throttle (no ceiling only)."""
        self._set(ceiling if ceiling is not None else start)
        self._next_slot = float("-inf")
        self.paused_until = float("-inf")
        self.last_throttle = float("-inf")
        self._last_decrease = float("-inf")
        self._first_throttle = float("inf")
        self._since_decrease = [0, 0]  # answers accepted / throttled since the last decrease
        self._clean_at_rate = 0  # slow start: clean answers to requests sent at this rate
        self._last_change = clock()
        self._held_back = False  # a caller waited for its slot since the last change
        self._step = 0.0
        self._sent: deque[float] = deque(maxlen=256)
        self._accepted: deque[float] = deque(maxlen=256)
        self.decreases = 0
        self._changes = 0  # rate changes that re-space queued callers (see wait())

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
        """Answers that were not throttled, per second, since the API began throttling (over
        at most the last second); ``None`` before its first refusal or with too few samples."""
        now = self._clock()
        times = self._accepted
        while times and now - times[0] > _WINDOW:
            times.popleft()
        since = max(now - _WINDOW, self._first_throttle)
        span = now - since
        if span < _MIN_SPAN:
            return None
        count = (
            sum(1 for t in reversed(times) if t > since) if since > now - _WINDOW else len(times)
        )
        if count < _MIN_SAMPLES:
            return None
        return count / span

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

    def reserve(self, max_wait: float = math.inf) -> float | None:
        """Reserve the next start slot without sleeping: the seconds until it, or ``None``
        (nothing reserved) when it would come more than ``max_wait`` seconds from now. For
        a budget that hands slots to callers elsewhere (the Ray token actor)."""
        now = self._clock()
        slot = max(now, self.paused_until, self._next_slot)
        if slot - now > max_wait:
            return None
        self._next_slot = slot + self._interval
        if slot > now:
            self._held_back = True
        self._sent.append(slot)
        return slot - now

    def note_starts(self, count: int) -> None:
        """``count`` requests started now without a reservation (unpaced, elsewhere)."""
        now = self._clock()
        self._sent.extend([now] * count)

    def set_ceiling(self, ceiling: float | None) -> None:
        """A new ceiling; the rate restarts at it (and a slow start ends: it is for no
        ceiling only)."""
        self.ceiling = ceiling
        if ceiling is not None:
            self.slow_start = False
        self._set(ceiling)

    async def wait(self, deadline: float = math.inf) -> bool:
        """Wait for this caller's start slot; ``False`` when it would fall after ``deadline``.

        A rate change while the caller sleeps re-spaces it at the new rate: slots reserved
        at the old rate would all be sent (and refused) before a cut showed, or hold the
        slow start to its old pace. In the slow start, sleeps are cut into naps of at most
        :data:`SLOW_START_NAP` so a doubling reaches callers queued far ahead."""
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
                if not await self._sleep_until(slot, now):
                    continue  # the rate changed meanwhile: queue again at the new spacing
            if self.paused_until <= slot:
                self._sent.append(slot)
                return True
            # A pause began while we waited and our slot fell inside it: queue again behind
            # it (the lost slot only spaces starts more).

    async def _sleep_until(self, slot: float, now: float) -> bool:
        """Sleep to ``slot``; ``False`` (early) when the rate changed meanwhile."""
        changes = self._changes
        while True:
            nap = slot - now
            short = self.slow_start and nap > SLOW_START_NAP
            await self._sleep(SLOW_START_NAP if short else nap)
            if self._changes != changes:
                return False
            if not short:
                return True  # trust the sleep (a fake clock may not move)
            now = self._clock()
            if now >= slot:
                return True

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
        self._first_throttle = min(self._first_throttle, now)
        if sent_at < self._last_decrease:
            return False
        tally = self._since_decrease
        tally[1] += 1
        accepted_n, throttled_n = tally
        far_above = throttled_n >= _FAR_SIGNALS and throttled_n > accepted_n
        rate = self._rate
        if (
            rate is not None
            and not self.slow_start
            and not far_above  # far above what the API accepts: keep cutting quickly
            and now - self._last_decrease < max(REACTION, 2.0 / rate)
        ):
            return False
        measured = self.measured_rate()
        if rate is None:  # unpaced until now
            base = measured if measured is not None else 10.0
        else:
            base = min(rate, measured) if measured is not None else rate
        accepted = self.accepted_rate()
        share = accepted_n / (accepted_n + throttled_n)
        if self.slow_start:
            new = base * SLOW_START_DECREASE
            if accepted is not None:
                new = min(new, accepted)
        elif far_above:
            new = base * max(DEEPEST_CUT, share)
        else:
            new = base * DECREASE
        if accepted is not None:
            new = max(new, min(base, accepted * ACCEPTED_FLOOR))
        new = max(new, MIN_RATE)
        was_slow = self.slow_start
        self.slow_start = False
        self._set(new)
        self._last_decrease = self._last_change = now
        if self._next_slot > now:  # callers queued at the old spacing: re-spaced, see wait()
            self._next_slot = now + self._interval
        self._changes += 1
        self._held_back = False
        self._since_decrease = [0, 0]
        self._step = max(MIN_RATE, base / 20.0)
        self.decreases += 1
        shown = "slow start" if was_slow or rate is None else f"{rate:.0f}/s"
        log.info("order API throttled: rate %s -> %.0f/s", shown, new)
        if self._on_change is not None:
            self._on_change(self._rate, "throttled")
        return True

    def on_clean(self, sent_at: float | None = None) -> None:
        """An answer that was not throttled (to a request sent at ``sent_at``): in the slow
        start, enough of them at the current rate double it; after it, a clean interval in
        which the rate held callers back raises it by one step (never above the ceiling)."""
        now = self._clock()
        self._accepted.append(now)
        self._since_decrease[0] += 1
        rate = self._rate
        if rate is None or not self._held_back:
            return
        if self.slow_start:
            if sent_at is not None and sent_at < self._last_change:
                return  # sent at the old rate: says nothing about this one
            self._clean_at_rate += 1
            if self._clean_at_rate < SLOW_START_ANSWERS or rate >= MAX_RATE:
                return
            self._raise(min(rate * 2.0, MAX_RATE), rate, "slow start")
            return
        if self._step == 0.0 or now - self._last_change < max(CLEAN_INTERVAL, 2.0 / rate):
            return
        if self.last_throttle > self._last_change:
            self._last_change = now
            return
        if self.ceiling is not None and rate >= self.ceiling:
            return
        self._raise(rate + self._step, rate, "no throttling for a while")

    def _raise(self, new: float, old: float, why: str) -> None:
        self._set(new)
        now = self._last_change = self._clock()
        if self.slow_start:  # a doubling: callers queued at the old spacing re-queue
            self._next_slot = min(self._next_slot, now + self._interval)
            self._changes += 1
        self._held_back = False
        self._clean_at_rate = 0
        log.debug("%s: rate %.0f/s -> %.0f/s", why, old, self._rate or 0)
        if self._on_change is not None:
            self._on_change(self._rate, "clean")
