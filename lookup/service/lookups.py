"""``POST /v1/lookups``: one handler, JSON or the live event stream by ``Accept``.

Both answers run the lookup through the one lookup path
(:class:`~lookup.runtime.lookups.LookupPath`: admission, fairness, deadline, audit, metrics,
privacy) and read the body through the same checks (415, 408, UTF-8, schema: 422).
``POST /v1/lookups/stream`` is an alias that always streams (the desk page's route).

The stream (``text/event-stream``) sends ``plan`` (the tiers and their counts), ``progress``
every :data:`PROGRESS_EVERY` seconds, and ``result``: the result with numbers masked and a
``reveal`` id, with which the same caller may fetch the number from ``POST /v1/reveal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from lookup.domain.errors import (
    CandidateCapError,
    InputError,
    SightingsDisagreeError,
    TooManyQueuedError,
    UnknownRegionError,
)
from lookup.domain.i18n import _, translate
from lookup.domain.models import HINT_FIELDS, LookupRequest, LookupResult
from lookup.domain.privacy import mask_phone
from lookup.domain.tiers import TierPlan
from lookup.runtime.lookups import LookupPath, Surface
from lookup.service.body import json_body
from lookup.service.desk import checker_state
from lookup.service.http import ProblemError, caller_var, request_id_var
from lookup.service.problems import FieldProblem

__all__ = ["LOOKUPS", "PROGRESS_EVERY", "Lookups", "input_problem", "post_lookup", "post_stream"]

log = logging.getLogger("lookup.service")

PROGRESS_EVERY: Final = 0.5
"""Seconds between two ``progress`` events of the stream."""


@dataclass
class Lookups:
    """What the lookup routes need: the path (once the engine is open), the body deadline,
    and where a streamed result's number waits to be revealed."""

    path: Callable[[], LookupPath | None]
    read_timeout: float
    reveal: Callable[[str, LookupResult], str | None]

    def ready(self) -> LookupPath:
        found = self.path()
        if found is None:  # pragma: no cover - routes run only after startup
            raise ProblemError("unavailable", "the service is starting", headers={"Retry-After": "1"})
        return found


LOOKUPS: Final = web.AppKey("lookup_lookups", Lookups)


def caller_of(request: web.Request) -> str:
    """The caller: the token's stable name, or the peer address without tokens."""
    return caller_var.get() or request.remote or "-"


def audit_caller(caller: str) -> str:
    """The caller as the audit line shows it: the request id rides along."""
    return f"{caller} request_id={request_id_var.get()}"


def input_problem(exc: InputError, request: LookupRequest | None = None) -> ProblemError:
    """A 422 problem for bad input, naming the field at fault."""
    # kind names the public class: a cap error is the ConfigError it always was
    kind = "ConfigError" if isinstance(exc, CandidateCapError) else type(exc).__name__
    return ProblemError(
        "invalid-input", str(exc), kind=kind,
        errors=[FieldProblem(field=_field_of(exc, request), message=str(exc))],
    )  # fmt: skip


def too_many(exc: TooManyQueuedError) -> ProblemError:
    return ProblemError(
        "too-many-queued", str(exc), headers={"Retry-After": str(exc.retry_after)}
    )


def _field_of(exc: InputError, request: LookupRequest | None) -> str:
    if isinstance(exc, CandidateCapError):
        return "max_candidates"
    if isinstance(exc, SightingsDisagreeError):
        return "also"
    given = {h: getattr(request, h) for h in HINT_FIELDS} if request is not None else {}
    given = {k: v for k, v in given.items() if v}
    if isinstance(exc, UnknownRegionError):
        text = str(exc)
        for name, value in given.items():
            if str(value) in text or name.replace("_", " ") in text:
                return name
        return next(iter(given), "city")
    if given.get("carrier") and "other carriers" in str(exc):
        return "carrier"  # the mask's segments exist, none of them with this carrier
    return "mask"


_URL: Final = re.compile(r"\b(?:https?|postgres(?:ql)?|redis)://")
_CLASS_NAME: Final = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z0-9]*)+(?:Error|Exception)\b")


def for_page(reason: str) -> str:
    """A result's reason as a desk page shows it: in the page's language, and without
    internal detail. A reason that names an address or an exception class (an API error's
    own text) is said in words instead; the service's log keeps the detail."""
    if _URL.search(reason) or _CLASS_NAME.search(reason):
        log.info("reason shown on the page in words, the detail here: %s", reason)
        return _("the order API failed or could not be reached; the service's log has the "
                 "detail")
    return translate(reason)


def _wants_stream(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


async def post_lookup(request: web.Request) -> web.StreamResponse:
    """``POST /v1/lookups``: JSON, or the event stream for ``Accept: text/event-stream``."""
    return await _lookup(request, stream=_wants_stream(request))


async def post_stream(request: web.Request) -> web.StreamResponse:
    """``POST /v1/lookups/stream``: the same lookup, always as the event stream."""
    return await _lookup(request, stream=True)


async def _lookup(request: web.Request, *, stream: bool) -> web.StreamResponse:
    routes = request.app[LOOKUPS]
    path = routes.ready()
    surface: Surface = "stream" if stream else "service"
    try:
        req = await json_body(request, LookupRequest, routes.read_timeout)
    except ProblemError as exc:
        if exc.slug == "invalid-body" and path.metrics is not None:
            path.metrics.lookup_ended(surface, "invalid", None)
        raise
    caller = caller_of(request)
    try:
        with path.admit(caller, surface=surface):
            try:
                planned = path.plan(req)  # cheap: input errors answer before any stream
            except InputError as exc:
                if path.metrics is not None:
                    path.metrics.lookup_ended(surface, "invalid", None)
                raise input_problem(exc, req) from None
            if not stream:
                result = await path.run(req, caller=caller, surface=surface, admit=False,
                                        audit_caller=audit_caller(caller), planned=planned)  # fmt: skip
                return web.Response(text=result.model_dump_json(), content_type="application/json")
            return await _stream(request, routes, path, req, planned, caller)
    except TooManyQueuedError as exc:
        raise too_many(exc) from None


async def _event(resp: web.StreamResponse, name: str, data: object) -> None:
    text = json.dumps(data, ensure_ascii=False)
    await resp.write(f"event: {name}\ndata: {text}\n\n".encode())


async def _stream(request: web.Request, routes: Lookups, path: LookupPath, req: LookupRequest,
                  planned: TierPlan, caller: str) -> web.StreamResponse:  # fmt: skip
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                       "Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip
    await resp.prepare(request)
    tiers: dict[str, dict[str, Any]] = {t.name: {"name": t.name, "candidates": t.count, "answered": 0,
                      "state": "pending" if t.count else "empty"} for t in planned.tiers}  # fmt: skip
    await _event(resp, "plan", {"mask": str(planned.mask), "tiers": list(tiers.values()),
                                "hint": str(planned.region) if planned.region else None})  # fmt: skip
    current: list[str] = []

    def progress(tier: str, answered: int, count: int) -> None:
        del count
        if current and current[-1] != tier:
            tiers[current[-1]]["state"] = "done"
        if not current or current[-1] != tier:
            current.append(tier)
        tiers[tier].update(answered=answered, state="running")

    started = time.monotonic()
    task = asyncio.create_task(path.run(req, caller=caller, surface="stream", admit=False,
                                        audit_caller=audit_caller(caller), progress=progress,
                                        planned=planned))  # fmt: skip
    try:
        while not (await asyncio.wait({task}, timeout=PROGRESS_EVERY))[0]:
            elapsed = time.monotonic() - started
            answered = sum(int(t["answered"]) for t in tiers.values())
            await _event(resp, "progress", {
                "tier": current[-1] if current else None, "tiers": list(tiers.values()),
                "answered": answered, "elapsed_s": round(elapsed, 2),
                "rate": round(answered / elapsed, 1) if elapsed > 0 else None,
                **checker_state(path.checker),
            })  # fmt: skip
        result = task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    shown: dict[str, Any] = json.loads(mask_phone(result.model_dump_json()))
    # A segment is the first 7 digits: with the mask's last 4 it would be the number.
    for region in [shown.get("region"), *(h.get("region") for h in shown.get("hits", []))]:
        if isinstance(region, dict):
            region["segment"] = None
    if shown.get("reason"):
        shown["reason"] = for_page(shown["reason"])
    shown["reveal"] = routes.reveal(caller, result)
    await _event(resp, "result", shown)
    await resp.write_eof()
    return resp
