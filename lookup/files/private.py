"""Private files: the one way the tool creates a file that may hold numbers or secrets.

Created 0600 from the first byte, never through a symlink, a regular file only; replaced
atomically when written whole. Journals, outputs' siblings, uploads, the audit file, region
counts and lock files all come through here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lookup.domain.errors import ConfigError

__all__ = ["open_private", "write_private"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def open_private(path: Path, flags: int, *, what: str | None = None) -> int:
    """Open ``path`` with ``flags`` (created 0600 when missing), never through a symlink;
    :class:`ConfigError` unless it is a regular file. Returns the descriptor."""
    fd = os.open(path, flags | os.O_CREAT | _NOFOLLOW | os.O_CLOEXEC, 0o600)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{what or path} is not a regular file")
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a 0600 sibling renamed over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
