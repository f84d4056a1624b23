"""``lookup serve``: the HTTP service, in this process or on N gunicorn workers."""

from __future__ import annotations

import argparse
from typing import TextIO

from lookup.cli.common import ExitStatus, settings_from_args
from lookup.runtime.logs import configure_logging
from lookup.service.app import check_exposure, serve

__all__ = ["cmd_serve"]


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    """``lookup serve``: run the service until SIGINT or SIGTERM; exit 0 after a clean stop.

    ``--workers N`` (N > 1) runs N processes on gunicorn: :mod:`lookup.service.workers`.
    """
    more = {
        name: value
        for name in ("service_host", "service_port")
        if (value := getattr(args, name, None)) is not None
    }
    settings = settings_from_args(args, **more)
    check_exposure(settings)  # before anything starts: exit 2 with the message
    workers = getattr(args, "workers", None)
    workers = 1 if workers is None else workers
    if workers != 1:
        from lookup.service.workers import check_workers, serve_workers

        check_workers(settings, workers)  # exit 2 before logging or anything starts
        configure_logging(settings)
        return serve_workers(settings, workers, out)
    configure_logging(settings)
    from lookup.runtime.loop import run as run_loop

    run_loop(serve(settings, out))
    return ExitStatus.OK
