"""A throwaway ``redis-server`` for the tests: a loopback port, a temp folder, no persistence.

Pure helper (no pytest import): :func:`find_redis` says where Debian's ``redis-server`` is
(or ``None``); :class:`RedisServer` starts it on ``127.0.0.1:PORT``, waits until it answers
``PING``, and can be stopped and started again *on the same port* (a test that takes Redis
away for a while in the middle of a run). The ``redis_server`` fixture in ``conftest.py``
skips without the binary on a developer machine and fails when ``CI=true``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_MISSING = (
    "redis-server not found: install Debian's redis-server (apt-get install redis-server) "
    "to run the shared-quota tests"
)


def find_redis() -> str | None:
    """The ``redis-server`` binary, or ``None``."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` in a temp folder: ``start()``, ``url``, ``stop()``, ``cleanup()``."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="lookup-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> RedisServer:
        """Start (again) on the same port; return once it answers ``PING``."""
        if self.running:
            return self
        log = open(self.root / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.root), "--save", "", "--appendonly", "no",
             "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        limit = time.monotonic() + timeout
        while not _ping(self.port):  # polling a readiness condition, bounded
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited: " + self.log_text())
            if time.monotonic() > limit:
                self.stop()
                raise RuntimeError("redis-server did not answer PING: " + self.log_text())
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop now (SIGKILL-free: SIGTERM, then wait); the port is free afterwards."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def log_text(self) -> str:
        try:
            return (self.root / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
