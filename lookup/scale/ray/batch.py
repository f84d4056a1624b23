"""Batch rows on Ray async actors, the journal on the driver (``lookup batch --engine ray``).

::

    async with open_ray_runner(engine_factory, actors=2) as runner:
        run = await run_file("masks.csv", "out.jsonl", runner=runner, settings=settings)

The driver (this process) reads the rows, journals every result and writes the output,
exactly as a local run does (:func:`lookup.files.run.run_file` with a runner), so
``--resume`` and ``kill -9`` of the driver keep their guarantees. Rows go to ``K`` lookup
actors in small calls; each actor opens **one** engine (one API session and one checker)
from ``engine_factory`` and runs the rows of its calls concurrently. At most
``lookups_in_flight`` rows are in flight per actor (backpressure: rows are read from the
file only as calls finish). A lost actor (``RayActorError``: killed, its node gone) has its
unfinished rows sent again to another actor, and a new actor takes its place (up to
``replacements`` times); a row's result is journaled once, when its call returns.

Rate: with Redis (``settings.shared_url``) the engines share its quota; otherwise a
named token actor (:mod:`lookup.scale.ray.tokens`) hands out start slots, so the K actors
together stay under the ceiling, and adapts the shared rate to throttling.

``ray`` is imported here only when a runner opens (the ``[ray]`` extra); without it,
:class:`~lookup.domain.errors.ConfigError` says what to install.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from lookup.domain.errors import ConfigError, LookupFailure
from lookup.domain.net import is_loopback
from lookup.engine.batch import BatchRow, BatchSummary, ResultCallback, RowResult, run_batch
from lookup.scale.ray.tokens import RateTokens, RayQuota, TokenActor

if TYPE_CHECKING:
    from types import ModuleType

    from lookup.domain.models import Limits
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import Mode

__all__ = [
    "RAY_MISSING",
    "EngineFactory",
    "LookupActor",
    "RateTokens",
    "RayQuota",
    "RayRunner",
    "TokenActor",
    "import_ray",
    "open_ray_runner",
]

log = logging.getLogger("lookup.raybatch")

RAY_MISSING: Final = ("--engine ray needs Ray, which is not installed: "
                      "pip install '.[ray]'")  # fmt: skip
NAMESPACE: Final = "lookup"


class _Engine(Protocol):
    """One actor's engine: its checker, and the one lookup path's ``row`` (admission is the
    driver's; audit, metrics and privacy happen in the actor, on the path)."""

    @property
    def checker(self) -> Checker: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def description(self) -> str: ...

    async def row(self, row: BatchRow, *, caller: str, surface: Literal["ray"], mode: Mode,
                  max_candidates: int | None = None) -> RowResult: ...  # fmt: skip


EngineFactory = Callable[[RayQuota | None], AbstractAsyncContextManager[_Engine]]
"""Opens one actor's engine, given the token actor's client (``None``: the settings'
own quota, Redis). Sent to the actors by pickle: a module-level function, or a
``functools.partial`` of one with picklable arguments (``Settings`` is)."""


def import_ray() -> ModuleType:
    """``ray``, or :class:`ConfigError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's own switch for a one-machine Ray (its default on macOS and Windows): off, the
node's address is loopback and every Ray server listens there only."""


def start_ray(ray: ModuleType, init: Callable[..., Any], address: str | None = None) -> Any:
    """``init(address=…)``; with no address, a Ray for this machine only is started: every
    Ray server (GCS, raylet, workers, agents) on loopback, no dashboard.

    Ray turns ``_node_ip_address="127.0.0.1"`` (and a loopback ``address``) into the host's
    network address; its one-machine switch does not, so for a local start or a loopback
    address it is set (in the environment, which Ray's processes inherit, and in
    ``ray_constants``, read at import) and put back after. A local Ray that still
    advertises another address is shut down: :class:`ConfigError`, never a cluster open
    to the network.
    """
    host = (address or "").rpartition(":")[0]
    if address is not None and not is_loopback(host):
        return init(address=address)
    constants = ray._private.ray_constants
    saved_env = os.environ.get(LOOPBACK_SWITCH)
    saved = getattr(constants, "ENABLE_RAY_CLUSTER", True)
    os.environ[LOOPBACK_SWITCH] = "0"
    constants.ENABLE_RAY_CLUSTER = False
    try:
        info = init(address=address, include_dashboard=False)
    finally:
        constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = saved_env
    node = str(ray.util.get_node_ip_address())
    if address is None and not is_loopback(node):
        ray.shutdown()
        raise ConfigError(f"the local Ray started on {node}, not on loopback: start one "
                          "yourself and give its address with --ray-address")  # fmt: skip
    return info


class LookupActor:
    """A Ray actor (async): one engine, opened on first use, for every row sent to it."""

    def __init__(self, engine_factory: EngineFactory, tokens: Any, actors: int) -> None:
        self._factory = engine_factory
        self._tokens = tokens
        self._actors = actors
        self._stack = AsyncExitStack()
        self._engine: _Engine | None = None
        self._opening: asyncio.Lock | None = None

    async def _open(self) -> _Engine:
        if self._engine is None:
            self._opening = self._opening or asyncio.Lock()
            async with self._opening:
                if self._engine is None:
                    quota = None
                    if self._tokens is not None:
                        quota = RayQuota(self._tokens, fallback_rate=None)
                    engine = await self._stack.enter_async_context(self._factory(quota))
                    ceiling = engine.limits.max_per_second
                    if quota is not None and ceiling is not None:
                        quota.fallback_rate = ceiling / self._actors  # if the token actor is lost
                    self._engine = engine
        return self._engine

    async def ready(self) -> tuple[str, float | None]:
        """Open the engine (errors surface here, before any row): its description and
        rate ceiling (the demo API lifts it: the engine, not the driver, knows it)."""
        engine = await self._open()
        return engine.description, engine.limits.max_per_second

    async def lookup(self, rows: list[BatchRow], mode: Mode, max_candidates: int) -> list[RowResult]:  # fmt: skip
        """Look up ``rows`` concurrently over this actor's one checker."""
        engine = await self._open()
        results: list[RowResult] = []

        async def lookup(row: BatchRow) -> RowResult:
            return await engine.row(row, caller="batch", surface="ray", mode=mode,
                                    max_candidates=max_candidates)  # fmt: skip

        await run_batch(rows, checker=engine.checker, lookups_in_flight=len(rows), mode=mode,
                        max_candidates=max_candidates, on_result=results.append,
                        lookup=lookup)  # fmt: skip
        return results

    async def close(self) -> None:
        await self._stack.aclose()
        self._engine = None


@dataclass
class _Slot:
    """A lookup actor as the driver sees it."""

    handle: Any
    alive: bool = True


def _task_error(ray: ModuleType, exc: BaseException) -> BaseException:
    """The actor's own exception for a failed call (``RayTaskError`` wraps it with the
    actor's traceback in its text: the user sees the one-line cause)."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        if isinstance(cause, LookupFailure):
            return cause
        return LookupFailure(f"a Ray lookup actor failed: {type(cause).__name__}: {cause}")
    return exc


class RayRunner:
    """Runs a file's pending rows on Ray lookup actors (a ``lookup.files.run.RowRunner``).

    Made by :func:`open_ray_runner`. ``actors`` are the live actor handles (tests kill
    one to see its rows taken over).
    """

    def __init__(self, ray: ModuleType, make_actor: Callable[[], Any], slots: list[_Slot], *,
                 lookups_in_flight: int, chunk: int, replacements: int,
                 description: str) -> None:  # fmt: skip
        self._ray = ray
        self._make_actor = make_actor
        self._slots = slots
        self._per_actor = lookups_in_flight
        self._chunk = chunk
        self.replacements_left = replacements
        self._description = description

    @property
    def description(self) -> str:
        return self._description

    @property
    def actors(self) -> list[Any]:
        return [s.handle for s in self._slots if s.alive]

    async def run(self, rows: Iterable[BatchRow] | AsyncIterator[BatchRow], *, mode: Mode,
                  max_candidates: int, on_result: ResultCallback) -> BatchSummary:  # fmt: skip
        """Look up every row on the actors; ``on_result`` is called here, once per row.
        ``rows`` may make the puller wait (the run's reorder window is full)."""
        ray = self._ray
        summary = BatchSummary()
        started = time.perf_counter()
        source = rows if isinstance(rows, AsyncIterator) else _as_async(rows)
        again: deque[list[BatchRow]] = deque()  # the rows of lost calls, sent first
        exhausted = False
        in_flight = 0
        changed = asyncio.Condition()
        calls_per_actor = max(1, math.ceil(self._per_actor / self._chunk))

        async def pull() -> list[BatchRow] | None:
            nonlocal exhausted
            if again:
                return again.popleft()
            if exhausted:
                return None
            chunk: list[BatchRow] = []
            async for row in source:
                chunk.append(row)
                if len(chunk) == self._chunk:
                    break
            exhausted = len(chunk) < self._chunk
            return chunk or None

        async def lost(slot: _Slot, exc: BaseException, tg: asyncio.TaskGroup) -> None:
            if not slot.alive:
                return
            slot.alive = False
            ray.kill(slot.handle, no_restart=True)  # unavailable may mean "back later": not here
            log.warning("a Ray lookup actor was lost (%s); its rows go to another actor",
                        type(exc).__name__)  # fmt: skip
            if self.replacements_left > 0:
                self.replacements_left -= 1
                new = _Slot(self._make_actor())
                await _ready(ray, [new.handle])
                self._slots.append(new)
                for _ in range(calls_per_actor):
                    tg.create_task(worker(new, tg))
            elif not any(s.alive for s in self._slots):
                raise LookupFailure("every Ray lookup actor was lost and no replacement is "
                                    "left; the rows done are in the journal: run again with "
                                    "--resume")  # fmt: skip

        async def worker(slot: _Slot, tg: asyncio.TaskGroup) -> None:
            nonlocal in_flight

            def may_go() -> bool:  # rows to send, or nothing left to wait for
                return bool(again) or not exhausted or in_flight == 0 or not slot.alive

            while slot.alive:
                async with changed:
                    await changed.wait_for(may_go)
                    chunk = await pull() if slot.alive else None
                    if chunk is None:
                        changed.notify_all()
                        if in_flight == 0 or not slot.alive:
                            return
                        continue
                    in_flight += 1
                try:
                    results = await slot.handle.lookup.remote(chunk, mode, max_candidates)
                except ray.exceptions.RayActorError as exc:
                    in_flight -= 1
                    again.append(chunk)
                    await lost(slot, exc, tg)
                    async with changed:
                        changed.notify_all()
                    return
                except ray.exceptions.RayError as exc:
                    in_flight -= 1
                    raise _task_error(ray, exc) from None
                for result in results:
                    summary.add(result)
                    done = on_result(result)
                    if done is not None:
                        await done
                async with changed:
                    in_flight -= 1
                    changed.notify_all()

        try:
            async with asyncio.TaskGroup() as tg:
                for slot in [s for s in self._slots if s.alive]:
                    for _ in range(calls_per_actor):
                        tg.create_task(worker(slot, tg))
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from failures
        summary.elapsed_s = round(time.perf_counter() - started, 3)
        return summary


async def _as_async(rows: Iterable[BatchRow]) -> AsyncIterator[BatchRow]:
    for row in rows:
        yield row


async def _ready(ray: ModuleType, handles: list[Any]) -> list[tuple[str, float | None]]:
    """Wait for the actors' engines to open; their first error, in one line."""
    try:
        return list(await asyncio.gather(*(h.ready.remote() for h in handles)))
    except ray.exceptions.RayError as exc:
        raise _task_error(ray, exc) from None


def quota_name(identity: str) -> str:
    """The token actor's name: a hash of the API identity (never a URL or a secret) and a
    random part (one per run)."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return f"lookup-quota-{digest}-{secrets.token_hex(4)}"


@asynccontextmanager
async def open_ray_runner(
    engine_factory: EngineFactory,
    *,
    address: str | None = None,
    actors: int | None = None,
    lookups_in_flight: int = 8,
    chunk: int = 1,
    shared_quota: bool = False,
    identity: str = "",
    replacements: int | None = None,
) -> AsyncIterator[RayRunner]:
    """Connect to Ray (``address``: ``auto``, ``ray://…``, a GCS address; ``None``: start a
    local one), start ``actors`` lookup actors (default: the cluster's CPUs, at least 1)
    and, unless ``shared_quota`` (the engines share Redis), the token actor for the
    engines' rate ceiling (``max_per_second``). On exit the actors are closed, and a Ray this started is shut
    down. ``replacements``: lost actors replaced (default: ``actors``).
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        # Worker output stays in Ray's log files, not on the user's terminal; the engines
        # log through lookup's privacy formatters anyway (see batch_cli).
        logging.getLogger("ray").setLevel(logging.ERROR)
        init = partial(ray.init, namespace=NAMESPACE, include_dashboard=False,
                       log_to_driver=False, logging_level=logging.ERROR,
                       configure_logging=False)  # fmt: skip
        start_ray(ray, init, address)
        started = True
    try:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        k = actors if actors is not None else max(1, int(cpus))
        if k < 1:
            raise ConfigError("--ray-actors must be at least 1")
        tokens = None
        if not shared_quota:
            # One per run (killed with it): drivers that share a rate share Redis (--shared).
            tokens = ray.remote(TokenActor).options(
                name=quota_name(identity), namespace=NAMESPACE, num_cpus=0, max_concurrency=1000,
            ).remote(None)  # fmt: skip
        remote_actor = ray.remote(LookupActor).options(
            num_cpus=min(1.0, cpus / k), max_concurrency=max(64, 4 * lookups_in_flight),
            max_restarts=0,
        )  # fmt: skip

        def make_actor() -> Any:
            return remote_actor.remote(engine_factory, tokens, k)

        slots = [_Slot(make_actor()) for _ in range(k)]
        try:
            described = await _ready(ray, [s.handle for s in slots])
            if tokens is not None:  # before any row: every start is paced under it
                await tokens.set_ceiling.remote(described[0][1])
            quota = "Redis shared quota" if shared_quota else "a Ray token actor for the rate"
            runner = RayRunner(
                ray, make_actor, slots, lookups_in_flight=lookups_in_flight, chunk=chunk,
                replacements=k if replacements is None else replacements,
                description=f"{described[0][0]} on {k} Ray actors ({quota})",
            )  # fmt: skip
            yield runner
        finally:
            await _close(ray, [s.handle for s in slots if s.alive])
            if tokens is not None:
                ray.kill(tokens, no_restart=True)
    finally:
        if started:
            ray.shutdown()


async def _close(ray: ModuleType, handles: list[Any]) -> None:
    """Close the actors' engines (bounded), then end the actors."""
    if handles:
        done, _ = await asyncio.wait(
            [asyncio.ensure_future(h.close.remote()) for h in handles], timeout=10
        )
        for future in done:
            future.exception()  # a failed close is not the user's problem; retrieve it
    for h in handles:
        ray.kill(h, no_restart=True)
