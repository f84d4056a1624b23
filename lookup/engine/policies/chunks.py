"""How many numbers go in one batch request: a size that follows the source's latency.

A source that answers many numbers per request (an HTTP batch endpoint, PostgreSQL) is
asked in chunks. :class:`ChunkSizer` starts at ``start`` (``Limits.batch_size``) and, from
the answers of full chunks of the current size, grows by half while they come back in
under ``fast`` seconds and halves when one takes more than ``slow`` seconds or fails with
a timeout, always within ``[floor, ceiling]``. Answers to chunks of another size (sent
before the last change, or a tier's short last chunk) do not move it, so that one slow
moment halves the size once, not once per chunk that was in flight.

A ``start`` below ``floor`` is read as the source's own limit (an API that takes at most
20 numbers): the size then stays fixed.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CHUNK_CEILING", "CHUNK_FAST", "CHUNK_FLOOR", "CHUNK_SLOW", "ChunkSizer"]

CHUNK_FLOOR: Final = 50
CHUNK_CEILING: Final = 1000
CHUNK_FAST: Final = 0.25
"""Seconds under which a full chunk's answer lets the size grow."""
CHUNK_SLOW: Final = 1.0
"""Seconds over which a full chunk's answer halves the size."""
_GROW: Final = 1.5


class ChunkSizer:
    """The chunk size of one source, adapted to its answer times (one per checker)."""

    def __init__(self, start: int, *, floor: int = CHUNK_FLOOR, ceiling: int = CHUNK_CEILING,
                 fast: float = CHUNK_FAST, slow: float = CHUNK_SLOW,
                 adapt: bool = True) -> None:  # fmt: skip
        if not 0 < floor <= ceiling:
            raise ValueError(f"chunk bounds must be 0 < floor <= ceiling, got {floor}, {ceiling}")
        self.fixed = start < floor or not adapt
        self.floor, self.ceiling = floor, ceiling
        self.fast, self.slow = fast, slow
        self.size = start if self.fixed else min(start, ceiling)
        self.largest = self.size  # the largest size reached (for reports and the bench)
        self.changes = 0

    def answered(self, numbers: int, seconds: float) -> None:
        """A chunk of ``numbers`` was answered in ``seconds``."""
        if self.fixed or numbers != self.size:
            return
        if seconds > self.slow:
            self._set(max(self.floor, self.size // 2))
        elif seconds < self.fast:
            self._set(min(self.ceiling, int(self.size * _GROW)))

    def timed_out(self, numbers: int) -> None:
        """A chunk of ``numbers`` got no answer in time: ask less at once."""
        if not self.fixed and numbers == self.size:
            self._set(max(self.floor, self.size // 2))

    def _set(self, size: int) -> None:
        if size != self.size:
            self.size = size
            self.changes += 1
            self.largest = max(self.largest, size)
