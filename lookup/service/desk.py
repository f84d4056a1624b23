"""The desk page of ``lookup serve``: ``GET /``, its assets, live lookups, reveals and jobs.

Routes added to the service by :func:`setup_web`:

* ``GET /`` the page (Chinese, or English when ``Accept-Language`` prefers it; the page
  has a toggle too), ``GET /assets/{name}`` its bundled script, style and icon, and
  ``GET /favicon.ico`` (the icon). These need no token; everything else does, like the
  rest of the API. Each is gzipped once, when the app is built, and sent gzipped to a
  client that accepts it (``Vary: Accept-Encoding``), with an ``ETag`` for a ``304``.
* ``POST /v1/lookups/stream``: the body of ``POST /v1/lookups``; the answer is a stream of
  server-sent events: ``plan`` (tiers and their candidates), ``progress`` (per tier
  answered, the rate, the checker's state) about every :data:`PROGRESS_EVERY` seconds,
  then ``result`` (the lookup result with every number masked, plus a ``reveal`` id).
  Input errors are a ``422`` JSON answer before the stream starts, with ``field``
  naming the form field at fault.
* ``POST /v1/reveal`` ``{"id": ...}``: the full number of a streamed result, for the
  caller that ran it, for :data:`REVEAL_TTL` seconds. Every reveal writes an audit line.
* ``/v1/jobs``: server-side batch jobs, see :mod:`lookup.service.jobroutes` and :mod:`lookup.service.jobs`.

Every answer carries a strict Content-Security-Policy (no inline script or style),
``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``; there are no
CORS headers, and an API request from another origin (``Sec-Fetch-Site`` other than
``same-origin``, or a foreign ``Origin``) is refused with 403; so is one to a service
without tokens under a name that is not a loopback one (DNS rebinding).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, ConfigDict, Field

from lookup.domain.models import LookupResult
from lookup.domain.net import is_loopback
from lookup.domain.privacy import mask_phone
from lookup.domain.segments import SegmentDB
from lookup.engine.checker import Checker
from lookup.runtime.lookups import LookupPath
from lookup.runtime.settings import Settings
from lookup.service import schemas as ops
from lookup.service.body import json_body
from lookup.service.http import unknown_path
from lookup.service.jobroutes import JobRoutes, answer, error_answer, guard
from lookup.service.jobs import JobCaps, JobStore
from lookup.service.jobshare import SharedJobStore
from lookup.service.listen import ON_DRAINING
from lookup.service.openapi import add_operation

__all__ = [
    "CSP",
    "PROGRESS_EVERY",
    "REVEAL_TTL",
    "checker_state",
    "default_jobs_dir",
    "is_open_path",
    "job_store",
    "setup_web",
]

log = logging.getLogger("lookup.webui")
audit_log = logging.getLogger("lookup.audit")

CSP: Final = ("default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
              "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")  # fmt: skip
_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
PROGRESS_EVERY: Final = 0.2
"""Seconds between ``progress`` events of a streamed lookup."""
REVEAL_TTL: Final = 900.0
"""Seconds a streamed result's number can be revealed."""
_REVEALS_KEPT: Final = 10_000
_ASSETS: Final = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
                  "favicon.svg": "image/svg+xml"}  # fmt: skip
_WEB_DIR: Final = Path(__file__).with_name("static")


def is_open_path(path: str) -> bool:
    """The page and its assets need no token (they hold no data); the API does."""
    return path in ("/", "/favicon.ico") or path.startswith("/assets/")


@dataclass(frozen=True)
class _Asset:
    """A static answer, kept whole and gzipped (compressed once, at start-up)."""

    body: bytes
    gzipped: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> _Asset:
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(body, gzip.compress(body, 9, mtime=0), content_type, digest)

    def answer(self, request: web.Request, headers: dict[str, str] | None = None) -> web.Response:
        zipped = _accepts_gzip(request.headers.get("Accept-Encoding", ""))
        etag = f'"{self.etag}{"-gz" if zipped else ""}"'
        vary = "Accept-Encoding" if not headers or "Vary" not in headers else \
            f"{headers['Vary']}, Accept-Encoding"
        common = {**(headers or {}), "Cache-Control": "no-cache", "ETag": etag, "Vary": vary}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=common)
        if zipped:
            common["Content-Encoding"] = "gzip"
        return web.Response(body=self.gzipped if zipped else self.body,
                            headers={**common, "Content-Type": self.content_type})  # fmt: skip


def _accepts_gzip(accept: str) -> bool:
    """``Accept-Encoding`` names gzip (or ``*``) without ``q=0``."""
    for item in accept.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            m = re.search(r"q=([0-9.]+)", params)
            with contextlib.suppress(ValueError):
                return m is None or float(m.group(1)) > 0
    return False


def _assets() -> dict[str, _Asset]:
    return {name: _Asset.of((_WEB_DIR / name).read_bytes(), kind) for name, kind in _ASSETS.items()}



class _RevealBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64)


@dataclass
class _Reveals:
    """Full numbers of streamed results, per caller, for a while (never in a response
    until revealed)."""

    clock: Callable[[], float] = time.monotonic
    items: OrderedDict[str, tuple[str, str, list[str], float]] = field(default_factory=OrderedDict)

    def put(self, caller: str, result: LookupResult) -> str | None:
        if result.phone is None:
            return None
        now = self.clock()
        while self.items and (len(self.items) >= _REVEALS_KEPT
                              or next(iter(self.items.values()))[3] <= now):  # fmt: skip
            self.items.popitem(last=False)
        rid = secrets.token_urlsafe(18)
        phones = [h.phone for h in result.hits] or [result.phone]
        self.items[rid] = (caller, result.mask, phones, now + REVEAL_TTL)
        return rid

    def get(self, caller: str, rid: str) -> tuple[str, list[str]] | None:
        item = self.items.get(rid)
        if item is None or item[0] != caller or item[3] <= self.clock():
            return None
        return item[1], item[2]


@dataclass
class _Web:
    settings: Settings
    checker: Callable[[], Checker | None]
    caller: Callable[[web.Request], str]
    db: SegmentDB
    pages: dict[str, _Asset]
    assets: dict[str, _Asset] = field(default_factory=_assets)
    reveals: _Reveals = field(default_factory=_Reveals)
    jobs: JobStore | None = None

    def ready_checker(self) -> Checker:
        checker = self.checker()
        if checker is None:  # pragma: no cover - routes run only after startup
            raise web.HTTPServiceUnavailable(text="the service is starting")
        return checker

    def store(self) -> JobStore:
        if self.jobs is None:  # pragma: no cover - routes run only after startup
            raise web.HTTPServiceUnavailable(text="the service is starting")
        return self.jobs


_WEB: Final = web.AppKey("lookup_webui", _Web)
REVEALS: Final[web.AppKey[Callable[[str, LookupResult], str | None]]] = web.AppKey("lookup_reveals")
"""Keeps a streamed result's number for its caller; returns the reveal id."""


def _language(accept: str) -> str:
    """``en`` when ``Accept-Language`` prefers English to Chinese, else ``zh``."""
    best, best_q = "zh", -1.0
    for item in accept.split(","):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if (m := re.search(r"q=([0-9.]+)", params)) is not None:
            with contextlib.suppress(ValueError):
                q = float(m.group(1))
        lang = tag.strip().lower()[:2]
        if lang in ("zh", "en") and q > best_q:
            best, best_q = lang, q
    return best


# -- the page ------------------------------------------------------------------------------


async def _get_page(request: web.Request) -> web.Response:
    lang = _language(request.headers.get("Accept-Language", ""))
    return request.app[_WEB].pages[lang].answer(request, {"Vary": "Accept-Language"})


async def _get_asset(request: web.Request) -> web.Response:
    asset = request.app[_WEB].assets.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound(text=f"no asset {request.match_info['name'][:40]}")
    return asset.answer(request)


async def _get_favicon(request: web.Request) -> web.Response:
    return request.app[_WEB].assets["favicon.svg"].answer(request)


# -- a lookup with live progress ------------------------------------------------------------


def checker_state(checker: Checker) -> dict[str, str]:
    """``{"state", "text"}``: the checker's status (:meth:`Checker.status`)."""
    st = checker.status()
    return {"state": st.state, "text": st.text}


async def _post_reveal(request: web.Request) -> web.Response:
    ui = request.app[_WEB]
    caller = ui.caller(request)
    body = await json_body(request, _RevealBody, ui.settings.service_read_timeout)
    found = ui.reveals.get(caller, body.id)
    if found is None:
        return error_answer("nothing to reveal: run the lookup again (reveals expire after "
                      f"{REVEAL_TTL / 60:.0f} minutes)", "RevealNotFound", 404)  # fmt: skip
    mask, phones = found
    audit_log.info("reveal mask=%s phone=%s caller=%s", mask_phone(mask), mask_phone(phones[0]),
                   caller, extra={"audit": True, "full_phone": phones[0]})  # fmt: skip
    return answer({"mask": mask, "phone": phones[0], "hits": phones},
                 headers={"Cache-Control": "no-store"})  # fmt: skip


# -- wiring --------------------------------------------------------------------------------


def _loopback_host(request: web.Request) -> bool:
    """The request names this service by a loopback address or ``localhost``."""
    return is_loopback(request.url.host or "")


def _same_origin(tokenless: bool) -> Middleware:
    """No cross-origin use of the API (no CORS); without tokens, no use by another name.

    A browser's ``Sec-Fetch-Site`` (scripts cannot set it) decides when present: only
    ``same-origin`` (and ``none``, typed by the user) pass, which also holds behind a
    TLS-terminating proxy where ``Origin`` says ``https`` and the service sees ``http``.
    Without it, an ``Origin`` must be this service's. A service without tokens answers
    its API only under a loopback name: a page of another site that re-points its own
    name at 127.0.0.1 (DNS rebinding) sends that name as ``Host`` and is refused.
    """

    @web.middleware
    async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (is_open_path(request.path) or unknown_path(request)):
            site = request.headers.get("Sec-Fetch-Site")
            origin = request.headers.get("Origin")
            if (site is not None and site not in ("same-origin", "none")) or (
                site is None and origin is not None
                and origin != f"{request.scheme}://{request.host}"
            ):  # fmt: skip
                return error_answer("cross-origin requests are refused: use the page this "
                                    "service serves", "CrossOrigin", 403)  # fmt: skip
            if tokenless and not _loopback_host(request):
                return error_answer(
                    f"this service runs without tokens and answers only on a loopback name: "
                    f"open http://127.0.0.1:{request.url.port or 80}/ (or configure "
                    "service_tokens)", "CrossOrigin", 403)  # fmt: skip
        return await handler(request)

    return same_origin


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    del request
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def job_store(app: web.Application) -> JobStore | None:
    """The running app's job store (``None`` before startup and after cleanup)."""
    return app[_WEB].jobs


def default_jobs_dir(settings: Settings) -> Path:
    """Where jobs live unless ``service_jobs_dir`` says otherwise: a folder of this
    service's address (``jobs/127.0.0.1-8000``). Two services cannot listen on one address
    at once, so they never share a folder by accident, and a restart on the same address
    finds its jobs again."""
    where = f"{settings.service_host}-{settings.service_port}".replace(":", "_").replace("/", "_")
    return Path.home() / ".local" / "state" / "lookup" / "jobs" / where


def setup_web(
    app: web.Application,
    settings: Settings,
    *,
    checker: Callable[[], Checker | None],
    caller: Callable[[web.Request], str],
    db: SegmentDB,
    path: Callable[[], LookupPath | None],
    shared_jobs: bool = False,
) -> None:
    """Add the desk page, reveals and ``/v1/jobs`` to the service app (the page's lookups
    are ``POST /v1/lookups/stream``, :mod:`lookup.service.lookups`).

    ``checker`` returns the service's checker once it started; ``caller`` names who is
    asking (``token:`` and a keyed hash of the token, :func:`lookup.service.http.caller_name`). Call it after the service's own startup hooks: the job store
    starts once the checker exists, and stops before it closes. ``shared_jobs`` (a worker
    of ``serve --workers N``): the jobs folder is shared with the other workers, one of
    which runs the jobs (:class:`lookup.service.jobshare.SharedJobStore`).
    """
    html = (_WEB_DIR / "index.html").read_text("utf-8")
    kind = "text/html; charset=utf-8"
    pages = {"zh": _Asset.of(html.encode(), kind),
             "en": _Asset.of(html.replace('lang="zh-CN"', 'lang="en"', 1).encode(), kind)}  # fmt: skip
    ui = _Web(settings=settings, checker=checker, caller=caller, db=db, pages=pages)
    app[_WEB] = ui
    app[REVEALS] = ui.reveals.put
    app.middlewares.append(_same_origin(tokenless=not settings.service_tokens))
    app.on_response_prepare.append(_security_headers)

    async def start_jobs(app: web.Application) -> AsyncIterator[None]:
        kind = SharedJobStore if shared_jobs else JobStore
        store = kind(settings.service_jobs_dir or default_jobs_dir(settings),
                         checker=ui.ready_checker(), settings=settings, path=path,
                         retention_s=settings.service_job_retention, db=db,
                         caps=JobCaps(settings.service_jobs_per_caller,
                                      settings.service_job_rows_per_caller,
                                      settings.service_job_bytes_per_caller))  # fmt: skip
        await store.start()
        if isinstance(store, SharedJobStore):  # a stopping worker leaves the jobs to the others
            app[ON_DRAINING].append(store.resign)
        ui.jobs = store
        yield
        ui.jobs = None
        await store.close()

    app[ON_DRAINING] = []
    app.cleanup_ctx.append(start_jobs)
    add_operation(app, ops.PAGE, _get_page)
    add_operation(app, ops.ASSET, _get_asset)
    add_operation(app, ops.FAVICON, _get_favicon)
    add_operation(app, ops.REVEAL, _post_reveal)
    routes = JobRoutes(ui.store, caller, settings.service_read_timeout)
    for op, handler in (
        (ops.JOB_LIST, routes.list_jobs), (ops.JOB_CREATE, routes.create),
        (ops.JOB_GET, routes.get), (ops.JOB_DELETE, routes.cancel),
        (ops.JOB_RESULTS, routes.results),
    ):  # fmt: skip
        add_operation(app, op, guard(handler))
