"""The operator's hits per region, in a small local file (the learned order's counts).

Opt-in (``LOOKUP_LEARN_REGIONS`` / ``--learn-regions``). After each matched lookup,
:meth:`RegionCounts.record` adds one to the count of the hit's region (its city label).
The file holds counts per region only, never a number or a mask::

    {"version": 1, "counts": {"杭州": 12, "乌鲁木齐": 3}}

It is written 0600, atomically (a temporary file replaced under a lock), never through a
symlink. Deleting it resets the counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lookup.domain.order import DEFAULT_LEARN_THRESHOLD, RegionOrder
from lookup.files.private import open_private, write_private

if TYPE_CHECKING:
    from lookup.domain.models import LookupResult

__all__ = ["MAX_LABEL", "RegionCounts", "default_regions_file"]

log = logging.getLogger("lookup.regions")

MAX_LABEL: Final = 32
"""A region label is a short city name; anything else read from the file is dropped."""


def default_regions_file() -> Path:
    """``$XDG_STATE_HOME/lookup/regions.json`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lookup" / "regions.json"


def _clean(data: object) -> dict[str, int]:
    """Only ``label -> count`` pairs that cannot be a number: a digit-free short label."""
    counts = data.get("counts") if isinstance(data, dict) else None
    if not isinstance(counts, dict):
        return {}
    return {k: v for k, v in counts.items()
            if isinstance(k, str) and 0 < len(k) <= MAX_LABEL and not any(c.isdigit() for c in k)
            and isinstance(v, int) and not isinstance(v, bool) and v > 0}  # fmt: skip


class RegionCounts:
    """Hits per region in a local file; :meth:`order` turns them into a plan's order."""

    def __init__(self, path: str | Path | None = None, *,
                 threshold: int = DEFAULT_LEARN_THRESHOLD) -> None:  # fmt: skip
        self.path = Path(path) if path is not None else default_regions_file()
        self.threshold = threshold

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
        city = result.region.city if result.region is not None else None
        if result.status != "matched" or not city:
            return False
        self.add({city: 1})
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(f".{self.path.name}.lock")
        fd = open_private(lock, os.O_WRONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
