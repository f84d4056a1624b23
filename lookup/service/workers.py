"""``lookup serve --workers N``: N worker processes behind one port, on gunicorn.

The master (gunicorn's arbiter) binds the port, forks N workers of ``aiohttp``'s
``GunicornWebWorker`` (``GunicornUVLoopWebWorker`` when uvloop is installed) and keeps
them running. Each worker builds the service app *after* the fork, in its own event loop:
its own order-API session and checker, opened by the app's cleanup context like the
single-process service. Nothing with a loop or a socket crosses the fork; the segment
database is loaded once in the master so the workers share its pages.

Decisions:

* ``--workers`` > 1 needs ``--shared`` (``LOOKUP_SHARED_URL``): the workers' checkers
  then draw from one quota in Redis. Without it each worker would bring its own
  ``--rate``, N times the limit the operator set, so it is refused (exit 2).
* ``--api demo`` starts ONE bundled mock (a subprocess of the master, on loopback) that
  every worker uses; it stops with the master.
* ``--port 0``: the master binds a free port; the start-up line names the real one.
* Signals, to the master: ``SIGHUP`` starts N new workers, then stops the old ones
  gracefully (gunicorn's reload: the socket stays open, so no connection is refused;
  requests in flight on an old worker finish within :data:`~lookup.service.app.SHUTDOWN_GRACE`);
  ``SIGTERM`` / ``SIGINT`` stop every worker the same way, then the master exits 0.
* Per worker: the callers' queue caps (``service_max_queued`` is per caller *per worker*),
  ``/metrics`` (each scrape reads the worker that answered it, named by
  ``lookup_service_worker_info{worker}``), and the desk page's reveals (a reveal that
  reaches another worker than its lookup is a 404: run the lookup again).
* Server-side batch jobs share one jobs folder: any worker accepts an upload and answers
  for a job; the one worker holding the folder's lock runs them all, with the same
  ownership, caps and fair turns as one process (:mod:`lookup.service.jobshare`); after a
  reload another worker takes the lock and resumes them from their journals.
* Every log line of a worker is tagged ``[worker PID]``; gunicorn's own lines go through
  the same redacting handler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TextIO

from lookup.domain.errors import ConfigError
from lookup.domain.privacy import redact_url
from lookup.orders.postgres import is_postgres_url
from lookup.runtime.engine import DEMO, DEMO_MAX_IN_FLIGHT
from lookup.runtime.settings import Settings
from lookup.service.app import SHUTDOWN_GRACE, create_app

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["DRAIN", "INSTALL_HINT", "WORKER_GRACE", "check_workers", "serve_workers"]

INSTALL_HINT: Final = "pip install '.[workers]'"
_MOCK_START: Final = 30.0
"""Seconds the bundled demo mock may take to print its listening line."""

log = logging.getLogger("lookup.service")

DRAIN: Final = 2.0
"""Seconds a stopping worker keeps serving its open keep-alive connections (each answer
then closes its connection) before closing the idle ones: a reload resets no client."""
WORKER_GRACE: Final = int(SHUTDOWN_GRACE + DRAIN) + 5
"""Seconds gunicorn gives a stopping worker before it kills it: the service's own grace
for requests in flight, then time to close the order-API session and the jobs."""


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse what ``--workers N`` cannot do (before anything starts).

    :raises ConfigError: ``workers`` < 1; > 1 without ``shared_url``; > 1 without gunicorn.
    """
    if workers < 1:
        raise ConfigError(f"--workers takes a whole number >= 1, got {workers}")
    if workers == 1:
        return
    if settings.shared_url is None:
        raise ConfigError(
            f"--workers {workers} needs a shared quota: pass --shared redis://HOST:PORT/DB "
            "(or set LOOKUP_SHARED_URL); without it each worker would bring its own --rate, "
            f"{workers} times the limit you set"
        )
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"--workers {workers} runs on gunicorn, which is not installed: {INSTALL_HINT}"
        ) from None


def _describe(settings: Settings) -> str:
    """How the workers reach the order API (for the start-up line; nothing is opened)."""
    if settings.api_plugin:
        return f"plug-in {settings.api_plugin}"
    url = settings.api_url or ""
    if is_postgres_url(url):
        return f"PostgreSQL orders at {redact_url(url)}"
    return "order API " + redact_url(url.split("?")[0])


@contextlib.contextmanager
def _demo_mock(settings: Settings) -> Iterator[tuple[Settings, str | None]]:
    """With ``--api demo``: one bundled mock for every worker, and the settings pointing
    at it (limits lifted as :func:`lookup.runtime.engine.open_api` lifts them); else as is."""
    if settings.api_url != DEMO or settings.api_plugin:
        yield settings, None
        return
    # A subprocess, not a thread of the master: nothing of it may cross the fork.
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookup.mockapi", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        url = _mock_url(proc)
        lifted: dict[str, Any] = {"api_url": f"{url}/orders?phone={{phone}}",
                                  "batch_url": f"{url}/orders/batch"}  # fmt: skip
        if "max_in_flight" not in settings.model_fields_set:
            lifted["max_in_flight"] = DEMO_MAX_IN_FLIGHT
        if "rate" not in settings.model_fields_set:
            lifted["rate"] = None
        yield settings.model_copy(update=lifted), url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a mock that hangs on exit
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _mock_url(proc: subprocess.Popen[str]) -> str:
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], _MOCK_START)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening on http://"):
        raise ConfigError(
            "the bundled demo order API did not start (python -m lookup.mockapi): run "
            "`lookup mock-api --port 0` to see why"
        )
    return line.split()[2]


def _check_bind(host: str, port: int) -> None:
    """Bind once in the master so a busy port or a foreign address is a one-line error
    (gunicorn would retry for 5 s, then exit 1 with its own words)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"cannot listen on {host} port {port}: {reason}; pick a free --port, or a "
            "--host address of this machine (e.g. 127.0.0.1, ::1, 0.0.0.0)"
        ) from None


def _worker_class() -> str:
    from lookup.runtime.loop import loop_name

    uv = loop_name() == "uvloop"
    return "aiohttp.GunicornUVLoopWebWorker" if uv else "aiohttp.GunicornWebWorker"


def _app_factory(settings: Settings) -> Callable[[], Awaitable[web.AppRunner]]:
    """What each worker calls after the fork: the service app on a runner of ours (the
    access log, handler cancellation, header deadline and grace of the single process)."""

    async def service_runner() -> web.AppRunner:
        from lookup.runtime.logs import configure_logging
        from lookup.service.listen import make_runner

        worker = str(os.getpid())
        configure_logging(settings, worker=worker)
        _adopt_gunicorn_logs()
        app = create_app(settings, worker=worker)
        return make_runner(
            app, shutdown_timeout=SHUTDOWN_GRACE, read_timeout=settings.service_read_timeout,
            drain=DRAIN,
        )  # fmt: skip

    return service_runner


def _adopt_gunicorn_logs() -> None:
    """gunicorn's error log through lookup's handler (redaction, format, worker tag)."""
    ours = [h for h in logging.getLogger("lookup").handlers if getattr(h, "_lookup_handler", 0)]
    if not ours:
        return
    glog = logging.getLogger("gunicorn.error")
    for handler in list(glog.handlers):
        glog.removeHandler(handler)
    glog.addHandler(ours[0])
    glog.propagate = False


def _application(settings: Settings, workers: int, on_ready: Callable[[str], None]) -> Any:
    from gunicorn.app.base import BaseApplication
    from gunicorn.glogging import Logger

    class LookupLogger(Logger):  # type: ignore[misc]
        """gunicorn's logger, writing through lookup's handler from its first line on
        (gunicorn rebuilds its logger on every SIGHUP)."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            _adopt_gunicorn_logs()

    host, port = settings.service_host, settings.service_port
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    bind = f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"

    def when_ready(arbiter: Any) -> None:
        sockname = arbiter.LISTENERS[0].sock.getsockname()
        shown = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        on_ready(f"http://{shown}:{sockname[1]}")

    options: dict[str, Any] = {
        "bind": [bind],
        "workers": workers,
        "worker_class": _worker_class(),
        "graceful_timeout": WORKER_GRACE,
        "loglevel": settings.log_level.lower(),
        "accesslog": None,  # lookup's own access log (numbers masked), in each worker
        "errorlog": "-",
        "logger_class": LookupLogger,
        "proc_name": "lookup-serve",
        "when_ready": when_ready,
        "control_socket_disable": True,  # gunicorn >= 24: no socket file, no master thread
    }

    class ServiceApplication(BaseApplication):  # type: ignore[misc]
        """The service app as a gunicorn application (configured here, not from argv)."""

        def load_config(self) -> None:
            for name, value in options.items():
                if name in self.cfg.settings:  # older gunicorns lack some knobs
                    self.cfg.set(name, value)

        def load(self) -> Callable[[], Awaitable[web.AppRunner]]:
            return _app_factory(settings)

    return ServiceApplication()


def serve_workers(settings: Settings, workers: int, out: TextIO) -> int:
    """Run the service on ``workers`` gunicorn workers until SIGTERM/SIGINT; the exit status.

    :raises ConfigError: see :func:`check_workers`; the address cannot be bound; the demo
        mock does not start.
    """
    check_workers(settings, workers)
    _check_bind(settings.service_host, settings.service_port)
    from lookup.domain.segments import SegmentDB

    SegmentDB.default()  # loaded before the fork: the workers share its pages
    shared = f"; shared quota at {redact_url(settings.shared_url or '')}"
    with _demo_mock(settings) as (effective, mock):
        description = (
            f"bundled demo order API at {mock} (synthetic orders, one for all workers)"
            if mock
            else _describe(effective)
        )

        def on_ready(url: str) -> None:
            out.write(
                f"lookup service listening on {url} (order API: {description}{shared}; "
                f"{workers} workers)\n"
            )
            out.flush()

        app = _application(effective, workers, on_ready)
        try:
            app.run()
        except SystemExit as exc:  # the arbiter's halt(): 0 after a graceful stop
            if exc.code in (0, None):
                return 0
            log.error("gunicorn stopped with status %s (a worker failed to boot?)", exc.code)
            return 3
    return 0
