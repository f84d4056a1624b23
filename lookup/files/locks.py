"""Locks that keep two ``lookup batch`` runs apart: the journal's own (``flock`` on the
open journal) and :class:`OutputLock` on the output path. POSIX only: nothing is locked on
Windows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO, Self

from lookup.domain.errors import ConfigError
from lookup.files.private import open_private

__all__ = ["OutputLock", "lock_journal"]


def lock_journal(f: IO[bytes], path: Path) -> None:
    """Lock the journal against a second ``lookup batch`` on the same output (POSIX only)."""
    if sys.platform == "win32":  # pragma: no cover - no advisory locks
        return
    import fcntl

    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            f"{path} is in use by another `lookup batch` writing the same output"
        ) from None


class OutputLock:
    """An advisory lock on an output path: ``OUT.lock`` beside it, created 0600, held
    (``flock``) for the whole run and removed at the end.

    The journal's own lock holds one journal; two runs on one output with two journals
    would still write the same file, so the output is locked too. After locking, the
    lock file must still be the one at its path (a run ending removes it): otherwise
    another run got there first. POSIX only (nothing is locked on Windows).
    """

    def __init__(self, out: Path) -> None:
        self.path = out.with_name(out.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> Self:
        if sys.platform == "win32":  # pragma: no cover - no advisory locks
            return self
        import fcntl

        busy = ConfigError(
            f"{self.path.with_suffix('')} is being written by another `lookup batch` "
            f"({self.path.name} is held): wait for it, or pick another --out"
        )
        try:
            fd = open_private(self.path, os.O_RDWR)
        except OSError as exc:
            raise ConfigError(f"cannot create the lock file {self.path}: "
                              f"{exc.strerror or exc}") from None  # fmt: skip
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            now = os.lstat(self.path)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            raise busy from None
        mine = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            os.close(fd)
            raise busy
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # still locked: no one else holds this file
            os.close(self._fd)
            self._fd = None
