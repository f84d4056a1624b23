"""A throwaway PostgreSQL server for the tests: initdb into a temp folder, loopback only.

Pure helper (no pytest import): :func:`find_bin_dir` says where Debian's ``postgresql``
put ``initdb``/``postgres`` (or ``None``), :class:`PgServer` creates a cluster with a
password-protected superuser, starts it on ``127.0.0.1:PORT`` (socket in the same temp
folder), waits for its "ready" log line and stops it. PostgreSQL refuses to run as root:
as root the server runs as the ``postgres`` system user (created if missing).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

READY = "database system is ready to accept connections"
USER = "lookup"
PASSWORD = "pg-test-s3cret"


def find_bin_dir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: Debian's versioned one, else PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").is_file() and Path(candidate, "postgres").is_file():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("postgres"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_as() -> dict[str, Any]:
    """Popen keywords that drop root to the ``postgres`` user (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             "postgres"],
            check=True, capture_output=True,
        )  # fmt: skip
        pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class PgServer:
    """One PostgreSQL cluster in a temp folder. ``start()``, ``dsn``, ``stop()``, ``cleanup()``."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="lookup-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self._ready = threading.Event()
        self._drainer: threading.Thread | None = None
        self._as = _run_as()
        try:
            self._initdb()
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {exc.stderr or exc.stdout}") from None
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    @property
    def dsn(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def dsn_without_password(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def _initdb(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as:
            os.chown(self.root, self._as["user"], self._as["group"])
            os.chown(pwfile, self._as["user"], self._as["group"])
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER,
             f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, text=True, cwd=self.root, timeout=120, **self._as,
        )  # fmt: skip
        pwfile.unlink()

    def start(self, timeout: float = 60.0) -> None:
        """Start the server on a free loopback port; return once it accepts connections."""
        self.port = _free_port()
        self._ready.clear()
        self.proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1",
             "-p", str(self.port), "-k", str(self.root), "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=60", "-c", "shared_buffers=32MB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=self.root,
            **self._as,
        )  # fmt: skip
        self._drainer = threading.Thread(target=self._drain, args=(self.proc,), daemon=True)
        self._drainer.start()
        if not self._ready.wait(timeout) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("PostgreSQL did not start:\n" + "\n".join(self.log[-20:]))

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.log.append(line.rstrip())
            if READY in line:
                self._ready.set()
        self._ready.set()  # the server exited: wake the waiter

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: abort sessions, ``immediate``: no clean shutdown)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal({"smart": 15, "fast": 2, "immediate": 3}[mode])
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._drainer is not None:
            self._drainer.join(timeout=10)  # the server's stderr reached EOF
        if proc.stderr is not None:
            proc.stderr.close()

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)
