"""``lookup batch IN --out OUT ...``: a thin command over :func:`lookup.files.run.run_file`.

Exit codes: 0 every row got an answer (matched, not_found or invalid), 2 bad usage or
input file (before any lookup), 3 some rows ended inconclusive or api_error (run again
with ``--resume --retry-failed``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from lookup.cli.common import ExitStatus, settings_from_args
from lookup.cli.conventions import audit_off_terminal
from lookup.cli.terminal import BatchProgress, Terminal
from lookup.runtime.logs import configure_logging

if TYPE_CHECKING:
    from lookup.domain.models import Limits, Mode
    from lookup.engine.batch import BatchRow, RowResult
    from lookup.engine.checker import Checker
    from lookup.engine.checkstate import HasStatus
    from lookup.files.run import FileRun
    from lookup.runtime.engine import Engine
    from lookup.runtime.lookups import LookupPath
    from lookup.runtime.settings import Settings
    from lookup.scale.ray.batch import RayQuota, RayRunner

__all__ = ["audit_path", "cmd_batch"]


def cmd_batch(args: argparse.Namespace, out: TextIO) -> int:
    """Run the batch; the summary goes to ``out`` (to stderr when the results go to stdout)."""
    from lookup.domain.errors import ConfigError
    from lookup.domain.privacy import Redactor
    from lookup.domain.segments import SegmentDB
    from lookup.files.journaled import CheckerRunner
    from lookup.files.run import run_file
    from lookup.runtime.engine import open_engine
    from lookup.runtime.lookups import LookupPath
    from lookup.runtime.regions import region_sink

    ray = args.engine == "ray"
    if not ray and (args.ray_address or args.ray_actors is not None):
        raise ConfigError("--ray-address and --ray-actors go with --engine ray")
    if ray:
        from lookup.scale.ray.batch import import_ray

        import_ray()  # without the [ray] extra: say so before reading anything
        if args.ray_actors is not None and args.ray_actors < 1:
            raise ConfigError("--ray-actors must be at least 1")
    settings = settings_from_args(args)
    _check_audit_file(settings.audit_file, args)
    term = Terminal(sys.stderr, live=False if args.quiet else None)
    audit = settings.audit_file or audit_path(args)
    # the driver's log only: Ray actors keep logging to their own log files
    configure_logging(settings.model_copy(update={"audit_file": audit}), stream=term)
    if not audit:
        audit_off_terminal()
    if args.lookups_in_flight < 1:
        raise ConfigError("--lookups-in-flight must be at least 1")
    if not settings.api_url and not settings.api_plugin:
        raise ConfigError("no order API configured: pass --api URL (a template with {phone}), "
                          "--api demo or --api-plugin package.module:attr; or set "
                          "LOOKUP_API_URL")  # fmt: skip
    out_lock: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if args.out != "-":
        from lookup.files.locks import OutputLock
        from lookup.files.run import check_output_path

        check_output_path(Path(args.out))  # and its folder writable: before any lookup
        out_lock = OutputLock(Path(args.out))
    progress: BatchProgress | None = None
    checker: HasStatus | None = None

    def on_start(total: int, done: dict[str, int]) -> None:
        nonlocal progress
        if not args.quiet:
            progress = BatchProgress(term, total, sum(done.values()), counts=done,
                                     checker=checker)  # fmt: skip

    async def run() -> FileRun:
        nonlocal checker
        go = partial(
            run_file, args.input, args.out, settings=settings, resume=args.resume,
            retry_failed=args.retry_failed, journal=args.journal, out_format=args.format,
            encoding=args.encoding, csv_bom=args.csv_bom, mode=args.mode,
            lookups_in_flight=args.lookups_in_flight, on_start=on_start,
            on_result=lambda r: progress.update(r) if progress else None,
            redact=Redactor(settings.secret_values()),
        )  # fmt: skip
        ticker = asyncio.create_task(tick())
        try:
            if ray:
                async with _ray_runner(settings, args) as runner:
                    return await go(runner=runner)
            async with open_engine(settings) as engine:
                checker = engine.checker
                path = LookupPath(engine.checker, SegmentDB.default(),
                                  max_candidates=settings.max_candidates,
                                  secrets=settings.secret_values(),
                                  regions=region_sink(settings, engine.checker))  # fmt: skip
                lookup = partial(path.row, caller="batch", surface="batch", mode=args.mode,
                                 max_candidates=settings.max_candidates)  # fmt: skip
                local = CheckerRunner(engine.checker, args.lookups_in_flight,
                                       description=engine.description, lookup=lookup)  # fmt: skip
                return await go(runner=local)
        finally:
            ticker.cancel()

    async def tick() -> None:
        while True:  # a slow row, or rows ended just after a redraw, still show
            await asyncio.sleep(1.0)
            if progress is not None:
                progress.tick()

    from lookup.runtime.loop import run as run_loop

    try:
        with out_lock:
            done = run_loop(run())
    except KeyboardInterrupt:
        term.clear()
        journal = args.journal or (f"{args.out}.journal" if args.out != "-" else None)
        where = f"the rows done are in {journal}: run the same command with --resume" if journal else "no journal was kept (--out - without --journal)"  # fmt: skip
        term.write(f"lookup batch: interrupted; {where}\n")
        raise
    finally:
        term.clear()
    report = out if done.out is not None else sys.stderr
    report.write(_summary(done, args.out, audit))
    report.flush()
    return ExitStatus.FAILED if done.undecided else ExitStatus.OK


def _check_audit_file(audit_file: str | None, args: argparse.Namespace) -> None:
    """The audit file must be a regular file (or new) and none of the batch's own files:
    a FIFO would hang before any check, the input would be "changed" for --resume."""
    from lookup.domain.errors import ConfigError

    if not audit_file:
        return
    try:
        st = os.stat(audit_file)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"cannot use the audit file {audit_file}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO or device?)"
        raise ConfigError(f"the audit file {audit_file} is {kind}: name a regular file (--audit-file)")
    journal = args.journal or (f"{args.out}.journal" if args.out != "-" else None)
    for what, path in (("the input file", args.input), ("--out", args.out), ("--journal", journal)):
        if path and path != "-":
            try:
                same = os.path.samefile(audit_file, path)
            except OSError:
                continue
            if same:
                raise ConfigError(f"--audit-file is {what}: pick another file for the audit lines")


def audit_path(args: argparse.Namespace) -> str | None:
    """Where a batch's audit lines go without ``--audit-file``: beside the output
    (``OUT.audit.log``), beside the journal with ``--out -``, else nowhere."""
    if args.out != "-":
        return f"{args.out}.audit.log"
    return f"{args.journal}.audit.log" if args.journal else None


def _summary(done: FileRun, out_name: str, audit: str | None = None) -> str:
    lines = [f"lookup batch: {done.total:,} rows -> {out_name} ({done.fmt})",
             "  " + ", ".join(f"{s} {n:,}" for s, n in done.by_status.items())]  # fmt: skip
    before = f" ({done.resumed:,} done before, from the journal)" if done.resumed else ""
    s = done.summary
    lines.append(f"  this run: {s.rows:,} rows looked up{before}, {s.numbers_checked:,} "
                 f"numbers checked in {s.requests:,} requests, {s.elapsed_s:.2f} s")  # fmt: skip
    if done.undecided and done.journal is not None:
        lines.append(f"  {done.undecided:,} rows got no definite answer: run again with "
                     f"--resume --retry-failed (journal {done.journal})")  # fmt: skip
    elif done.undecided:  # --out - without --journal: nothing to resume from
        lines.append(f"  {done.undecided:,} rows got no definite answer: to re-run only "
                     "those, run again with --journal PATH, then --resume --retry-failed")  # fmt: skip
    lines.append(f"  audit lines: {audit}" if audit else
                 "  audit lines: not kept (--out - without --journal or --audit-file)")  # fmt: skip
    return "\n".join(lines) + "\n"


def _ray_runner(settings: Settings, args: argparse.Namespace) -> AbstractAsyncContextManager[RayRunner]:  # fmt: skip
    from lookup.domain.privacy import redact_url
    from lookup.scale.ray.batch import open_ray_runner

    identity = settings.api_plugin or redact_url(settings.api_url or "")
    return open_ray_runner(
        partial(actor_engine, settings), address=args.ray_address, actors=args.ray_actors,
        lookups_in_flight=args.lookups_in_flight, shared_quota=bool(settings.shared_url), identity=identity,
    )  # fmt: skip


@dataclass(frozen=True)
class ActorEngine:
    """A Ray actor's engine and its one lookup path (rows run through ``row``)."""

    engine: Engine
    path: LookupPath

    @property
    def checker(self) -> Checker:
        return self.engine.checker

    @property
    def limits(self) -> Limits:
        return self.engine.checker.limits

    @property
    def description(self) -> str:
        return self.engine.description

    async def row(self, row: BatchRow, *, caller: str, surface: Literal["ray"], mode: Mode,
                  max_candidates: int | None = None) -> RowResult:  # fmt: skip
        return await self.path.row(row, caller=caller, surface=surface, mode=mode,
                                   max_candidates=max_candidates)  # fmt: skip


@asynccontextmanager
async def actor_engine(settings: Settings, quota: RayQuota | None) -> AsyncIterator[ActorEngine]:
    """One Ray lookup actor's engine (run in the actor) and its lookup path: its log lines
    go through :mod:`lookup.domain.privacy` like the driver's (to the actor's Ray log file,
    not the terminal). ``quota``: the token actor's client (``None``: the settings' Redis
    quota).
    """
    from lookup.domain.segments import SegmentDB
    from lookup.runtime.engine import open_engine
    from lookup.runtime.lookups import LookupPath
    from lookup.runtime.regions import region_sink

    configure_logging(settings)
    async with open_engine(settings, quota=quota) as engine:
        path = LookupPath(engine.checker, SegmentDB.default(),
                          max_candidates=settings.max_candidates,
                          secrets=settings.secret_values(),
                          regions=region_sink(settings, engine.checker))  # fmt: skip
        yield ActorEngine(engine, path)
