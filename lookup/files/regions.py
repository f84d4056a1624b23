"""The operator's hits per region, in a small local file (the learned order's counts).

Opt-in (``LOOKUP_LEARN_REGIONS`` / ``--learn-regions``). After each matched lookup,
:meth:`RegionCounts.record` adds one to the count of the hit's region (its city label).
The file holds counts per region only, never a number or a mask::

    {"version": 1, "counts": {"杭州": 12, "乌鲁木齐": 3}}

It is written 0600, atomically (a temporary file replaced under a lock), never through a
symlink. Deleting it resets the counts.

:class:`RegionSink` is what the one lookup path is handed: the counts of the file here, or
of Redis with ``--shared`` (:mod:`lookup.scale.redis.regions`), read again at most every
``ttl`` seconds and counted once per matched lookup.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lookup.domain.order import DEFAULT_LEARN_THRESHOLD, RegionOrder
from lookup.files.private import open_private, write_private

if TYPE_CHECKING:
    from lookup.domain.models import LookupResult

__all__ = [
    "MAX_LABEL",
    "REFRESH_EVERY",
    "RegionCounts",
    "RegionSink",
    "default_regions_file",
    "hit_label",
    "is_label",
]

log = logging.getLogger("lookup.regions")

MAX_LABEL: Final = 32
"""A region label is a short city name; anything else read from the file is dropped."""
REFRESH_EVERY: Final = 5.0
"""Seconds a sink keeps the counts it read before reading them again (others count too)."""


def default_regions_file() -> Path:
    """``$XDG_STATE_HOME/lookup/regions.json`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lookup" / "regions.json"


def is_label(label: object) -> bool:
    """A short, digit-free text: a region's city label, never a number or a mask."""
    return (isinstance(label, str) and 0 < len(label) <= MAX_LABEL
            and not any(c.isdigit() for c in label))  # fmt: skip


def _clean(data: object) -> dict[str, int]:
    """Only ``label -> count`` pairs that cannot be a number: a digit-free short label."""
    counts = data.get("counts") if isinstance(data, dict) else None
    if not isinstance(counts, dict):
        return {}
    return {k: v for k, v in counts.items()
            if is_label(k) and isinstance(v, int) and not isinstance(v, bool) and v > 0}  # fmt: skip


def hit_label(result: LookupResult) -> str | None:
    """The region label a lookup counts for: its hit's city when ``matched``, else ``None``."""
    city = result.region.city if result.region is not None else None
    if result.status != "matched" or not city or not is_label(city):
        return None
    return city


class RegionSink(abc.ABC):
    """Where matched lookups are counted per region, and the order those counts give.

    The one lookup path calls :meth:`refresh` before planning (cheap: a read at most every
    ``ttl`` seconds), plans with :meth:`current`, and calls :meth:`count` once per finished
    lookup. ``version`` changes whenever the counts it knows change, so that a cache of
    plans can key by it.
    """

    def __init__(self, *, threshold: int, ttl: float = REFRESH_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.threshold = threshold
        self.ttl = ttl
        self._clock = clock
        self._known: dict[str, int] = {}
        self._read_at = -math.inf
        self.version = 0

    def current(self) -> RegionOrder:
        """The order from the counts as last read (no I/O)."""
        return RegionOrder(self._known, threshold=self.threshold)

    async def refresh(self, *, force: bool = False) -> RegionOrder:
        """Read the counts again when the last read is older than ``ttl`` seconds."""
        now = self._clock()
        if force or now - self._read_at >= self.ttl:
            self._read_at = now
            self._learn(await self._read())
        return self.current()

    async def count(self, result: LookupResult) -> bool:
        """Count ``result``'s region if it matched (once per lookup). True if counted."""
        label = hit_label(result)
        if label is None:
            return False
        if not await self._add(label):
            return False
        known = dict(self._known)
        known[label] = known.get(label, 0) + 1
        self._learn(known)
        return True

    def _learn(self, counts: dict[str, int]) -> None:
        if counts != self._known:
            self._known = counts
            self.version += 1

    @abc.abstractmethod
    async def _read(self) -> dict[str, int]:
        """Every count in the store now."""

    @abc.abstractmethod
    async def _add(self, label: str) -> bool:
        """Add one to ``label``'s count in the store; ``False`` if it could not be."""


class RegionCounts(RegionSink):
    """Hits per region in a local file; :meth:`order` turns them into a plan's order."""

    def __init__(self, path: str | Path | None = None, *,
                 threshold: int = DEFAULT_LEARN_THRESHOLD, ttl: float = REFRESH_EVERY,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__(threshold=threshold, ttl=ttl, clock=clock)
        self.path = Path(path) if path is not None else default_regions_file()

    def counts(self) -> dict[str, int]:
        """The counts now (empty when there is no file yet; a damaged file reads as empty)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read the region counts at %s: %s", self.path, exc.strerror)
            return {}
        with os.fdopen(fd, "rb") as f:
            raw = f.read(1 << 20)
        try:
            return _clean(json.loads(raw))
        except ValueError:
            log.warning("the region counts at %s are damaged: ignored (delete the file to "
                        "reset them)", self.path)  # fmt: skip
            return {}

    def order(self) -> RegionOrder:
        """The order a plan should use: learned once ``threshold`` hits are known."""
        return RegionOrder(self.counts(), threshold=self.threshold)

    def record(self, result: LookupResult) -> bool:
        """Count a matched lookup's region once; anything else is ignored. True if counted.

        Call it once per finished lookup, from where the lookup ends.
        """
        label = hit_label(result)
        if label is None:
            return False
        self.add({label: 1})
        return True

    def add(self, more: Mapping[str, int]) -> None:
        """Add ``more`` to the counts in the file, under the file's lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            counts = self.counts()
            for label, n in more.items():
                counts[label] = counts.get(label, 0) + n
            text = json.dumps({"version": 1, "counts": _clean({"counts": counts})},
                              ensure_ascii=False, sort_keys=True)  # fmt: skip
            write_private(self.path, (text + "\n").encode("utf-8"))

    async def _read(self) -> dict[str, int]:
        return await asyncio.to_thread(self.counts)

    async def _add(self, label: str) -> bool:
        try:
            await asyncio.to_thread(self.add, {label: 1})
        except OSError as exc:
            log.warning("cannot count a hit in %s: %s", self.path, exc.strerror or exc)
            return False
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = open_private(lock, os.O_WRONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
