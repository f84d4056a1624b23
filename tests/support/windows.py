"""Counting requests over sliding windows, for the tests that check a rate held."""

from __future__ import annotations


def most_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` inside any ``window``-long span (``[t - window, t)`` open at
    its start, sliding from each time)."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
