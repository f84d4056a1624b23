"""A real nginx ``limit_req`` in front of an order API, for tests and benchmarks.

``NginxLimiter(upstream=(host, port), rate=100, burst=20)`` writes an ``nginx.conf`` into a
temporary folder (pid file, logs and every temp path live there), starts
``nginx -p TMP -c TMP/nginx.conf`` in the foreground (``daemon off``, one process by default)
on a free loopback port, waits until the port answers and proxies ``/`` to the upstream over
pooled HTTP/1.1 connections (``keepalive 64``). Above the rate nginx answers 429 with no
``Retry-After`` (``limit_req_status 429``): the bare-429 case a client has to pace itself for.
Leaving the block sends SIGQUIT (graceful stop), kills nginx if it lingers, keeps the access
log's records in memory and deletes the folder.

The access log has one line per request, ``$status $upstream_status $msec``: no URI, so no
phone number ever reaches a file; ``$upstream_status`` is ``-`` when nginx answered by itself
(a ``limit_req`` rejection) and the upstream's status when the request was passed on. The
error log is kept at ``crit``: nginx's ``error``-level lines quote the request line (with the
phone number), and start-up failures (``emerg``) are still shown.

Free of pytest so that ``scripts/`` benchmarks can import it; the fixtures that skip or fail
when nginx is missing live in ``tests/conftest.py``. Sync (``with``) and async (``async with``,
which starts and stops nginx in a thread) use the same object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Final, NamedTuple, Self

__all__ = [
    "NGINX_MISSING",
    "AccessLog",
    "LogRecord",
    "NginxError",
    "NginxLimiter",
    "find_nginx",
    "parse_access_log",
]

NGINX_MISSING: Final = "nginx not installed (apt-get install nginx-light)"
_FALLBACK_BINARY: Final = "/usr/sbin/nginx"
_LOG_FORMAT: Final = "$status $upstream_status $msec"
_BIND_ATTEMPTS: Final = 3


def find_nginx() -> str | None:
    """The nginx binary: on ``PATH`` or ``/usr/sbin/nginx`` (root's PATH only); else None."""
    found = shutil.which("nginx")
    if found is not None:
        return found
    return _FALLBACK_BINARY if os.access(_FALLBACK_BINARY, os.X_OK) else None


class NginxError(RuntimeError):
    """nginx did not start or did not stop; the message carries its error log's tail."""


class LogRecord(NamedTuple):
    """One access log line."""

    status: int
    """The status nginx sent to the client."""
    passed: bool
    """True when nginx passed the request to the upstream (``$upstream_status`` was set)."""
    at: float
    """When nginx logged it (``$msec``: epoch seconds, millisecond resolution)."""


def parse_access_log(lines: Iterable[str]) -> list[LogRecord]:
    """Records of ``$status $upstream_status $msec`` lines; blank or torn lines are skipped."""
    records: list[LogRecord] = []
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue  # blank, or the line nginx is writing right now
        try:
            records.append(LogRecord(int(parts[0]), parts[1] != "-", float(parts[-1])))
        except ValueError:
            continue
    return records


class AccessLog:
    """Summaries of access log records: counts, rejections, goodput."""

    def __init__(self, records: Iterable[LogRecord]) -> None:
        self.records = list(records)

    def counts(self) -> dict[int, int]:
        """Requests by the status nginx sent: ``{200: n, 429: m, ...}``."""
        return dict(Counter(r.status for r in self.records))

    def passed(self) -> int:
        """Requests passed to the upstream (whatever the upstream answered)."""
        return sum(1 for r in self.records if r.passed)

    def rejected(self) -> int:
        """Requests nginx answered 429 by itself (``limit_req``)."""
        return sum(1 for r in self.records if r.status == 429 and not r.passed)

    def throttled_share(self) -> float:
        """Of all requests, the share nginx rejected (0.0 when there were none)."""
        return self.rejected() / len(self.records) if self.records else 0.0

    def passed_per_second(self, since: float | None = None, until: float | None = None) -> float:
        """Goodput: requests passed per second between ``since`` and ``until`` (inclusive).

        Both are epoch seconds (``time.time()``); by default the first and the last logged
        request. Pass ``since`` after the opening burst to measure the sustained rate.
        """
        if not self.records:
            return 0.0
        start = self.records[0].at if since is None else since
        end = self.records[-1].at if until is None else until
        span = end - start
        if span <= 0:
            raise ValueError("passed_per_second needs a span longer than nginx's 1 ms clock")
        return sum(1 for r in self.records if r.passed and start <= r.at <= end) / span


def _rate_spec(rate: float) -> str:
    """nginx takes whole requests per second or per minute."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if float(rate).is_integer():
        return f"{int(rate)}r/s"
    per_minute = rate * 60
    if abs(per_minute - round(per_minute)) < 1e-9:
        return f"{round(per_minute)}r/m"
    raise ValueError(f"nginx rates are whole requests per second or minute, not {rate}/s")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxLimiter:
    """nginx with ``limit_req`` (``rate`` r/s, ``burst``, ``nodelay``) proxying to ``upstream``.

    >>> with NginxLimiter(("127.0.0.1", mock_port), rate=100, burst=20) as nginx:
    ...     get(nginx.orders_url.format(phone=...))
    ...     nginx.counts()  # {200: 21, 429: 279}
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        rate: float = 100,
        burst: int = 20,
        nodelay: bool = True,
        binary: str | None = None,
        master_process: bool = False,
        read_timeout: float = 60.0,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
    ) -> None:
        host, port = upstream
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError(f"the upstream must be on loopback, not {host!r}")
        if burst < 0:
            raise ValueError("burst must be >= 0")
        self.upstream = (host, int(port))
        self.rate = rate
        self.burst = burst
        self.nodelay = nodelay
        self.master_process = master_process
        self._rate = _rate_spec(rate)
        self._read_timeout = read_timeout
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._port: int | None = None
        self._final: list[LogRecord] | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("nginx is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def orders_url(self) -> str:
        return f"{self.url}/orders?phone={{phone}}"

    @property
    def batch_url(self) -> str:
        return f"{self.url}/orders/batch"

    # -- counts ----------------------------------------------------------------------------

    def records(self) -> list[LogRecord]:
        """Every logged request so far; final once nginx has stopped.

        While it runs, a request whose answer the client already has may not be logged yet
        (nginx writes the line right after sending): compare counts after the block.
        """
        if self._final is not None:
            return list(self._final)
        if self._dir is None:
            return []
        try:
            text = (self._dir / "access.log").read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        return parse_access_log(text.splitlines())

    def log(self) -> AccessLog:
        """The access log so far (final once nginx has stopped), with its summaries."""
        return AccessLog(self.records())

    def counts(self) -> dict[int, int]:
        """Requests by the status nginx sent: ``{200: n, 429: m, ...}``."""
        return self.log().counts()

    def passed(self) -> int:
        """Requests nginx let through to the upstream (whatever the upstream answered)."""
        return self.log().passed()

    def rejected(self) -> int:
        """Requests nginx answered 429 by itself (``limit_req``)."""
        return self.log().rejected()

    def throttled_share(self) -> float:
        """Of all requests, the share nginx rejected (0.0 when there were none)."""
        return self.log().throttled_share()

    def passed_per_second(self, since: float | None = None, until: float | None = None) -> float:
        """Goodput: requests let through per second; see :meth:`AccessLog.passed_per_second`."""
        return self.log().passed_per_second(since, until)

    # -- lifecycle -------------------------------------------------------------------------

    def render_config(self, folder: Path, port: int) -> str:
        """The nginx.conf for nginx listening on ``port`` with its files in ``folder``."""
        up_host, up_port = self.upstream
        up_host = f"[{up_host}]" if ":" in up_host else up_host
        nodelay = " nodelay" if self.nodelay else ""
        return f"""\
daemon off;
master_process {"on" if self.master_process else "off"};
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log crit;

events {{
    worker_connections 1024;
}}

http {{
    log_format limiter '{_LOG_FORMAT}';
    access_log {folder}/access.log limiter;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    keepalive_requests 1000000;

    limit_req_zone $server_name zone=api:1m rate={self._rate};
    limit_req_status 429;
    limit_req_log_level info;

    upstream order_api {{
        server {up_host}:{up_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name limiter;  # the limit_req key: one shared quota for every client

        location / {{
            limit_req zone=api burst={self.burst}{nodelay};
            proxy_pass http://order_api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;  # never resend a request the client sent once
            proxy_read_timeout {max(1, round(self._read_timeout * 1000))}ms;
        }}
    }}
}}
"""

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("nginx is already running")
        binary = self._binary or find_nginx()
        if binary is None:
            raise NginxError(NGINX_MISSING)
        folder = Path(tempfile.mkdtemp(prefix="lookup-nginx-"))
        self._dir, self._final = folder, None
        try:
            for attempt in range(_BIND_ATTEMPTS):
                port = _free_port()
                conf = folder / "nginx.conf"
                for stale in ("error.log", "stderr.log", "access.log"):
                    (folder / stale).unlink(missing_ok=True)
                conf.write_text(self.render_config(folder, port), encoding="ascii")
                with open(folder / "stderr.log", "wb") as stderr:
                    proc = subprocess.Popen(
                        [
                            binary,
                            "-p",
                            f"{folder}/",
                            "-c",
                            str(conf),
                            "-e",
                            str(folder / "error.log"),
                        ],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=stderr,
                    )
                if self._wait_ready(proc, port):
                    self._proc, self._port = proc, port
                    return self
                why = self._tail(folder)
                if "in use" not in why or attempt == _BIND_ATTEMPTS - 1:
                    raise NginxError(f"nginx did not start: {why}")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            self._dir = None
            raise
        raise AssertionError("unreachable")

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        """True once the port accepts connections; False when nginx exited first."""
        deadline = time.monotonic() + self._start_timeout
        pause = 0.005
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
            time.sleep(pause)  # a readiness probe of another process, not test synchronisation
            pause = min(pause * 2, 0.1)
        self._kill(proc)
        raise NginxError(f"nginx did not listen on 127.0.0.1:{port} within {self._start_timeout} s")

    @staticmethod
    def _tail(folder: Path) -> str:
        lines: list[str] = []
        for name in ("error.log", "stderr.log"):
            with contextlib.suppress(FileNotFoundError):
                lines += (folder / name).read_text(errors="replace").splitlines()
        return " | ".join(lines[-3:]) or "no error output"

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def stop(self) -> None:
        """SIGQUIT (finish the requests in progress, then exit); SIGKILL after ``stop_timeout``."""
        proc, self._proc = self._proc, None
        folder = self._dir
        if proc is None or folder is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(timeout=self._stop_timeout)
                except subprocess.TimeoutExpired:
                    self._kill(proc)
                    raise NginxError(f"nginx ignored SIGQUIT for {self._stop_timeout} s") from None
        finally:
            self._final = self.records()
            shutil.rmtree(folder, ignore_errors=True)
            self._dir = None
            self._port = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)
