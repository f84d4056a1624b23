"""``/v1/jobs`` over HTTP: uploads become :mod:`lookup.service.jobs` jobs of the caller.

* ``GET /v1/jobs``: ``{"jobs": [progress, ...]}``, the caller's, newest first.
* ``POST /v1/jobs``: a CSV or JSONL file as the multipart field ``file`` (``mode`` as a
  field), or as the raw body (``?name=rows.csv&mode=first``); at most
  :data:`JOB_MAX_UPLOAD` bytes. ``201`` with the job's progress and a ``Location``;
  a ``422`` problem (``errors[0].field`` is ``file``) for a file that cannot become a job;
  a ``429`` (``Retry-After``) when the caller already has as many jobs, rows or bytes
  queued or running as it may (:class:`lookup.service.turns.JobCaps`).
* ``GET /v1/jobs/{id}``: progress (state, done/total, counts by status, rows/s, ETA).
* ``GET /v1/jobs/{id}/results?format=csv|jsonl``: the results file of an ended job
  (``409`` while it runs); every download writes an audit line.
* ``DELETE /v1/jobs/{id}``: cancel a queued or running job (the rows done so far stay in
  its results); remove an ended one with its files (204).

Another caller's job is ``404`` like one that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Final
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from lookup.service.http import ProblemError, request_id_var
from lookup.service.jobs import (
    BadUploadError,
    JobNotFoundError,
    JobQuotaError,
    JobStateError,
    JobStore,
)
from lookup.service.problems import FieldProblem, problem_response

__all__ = ["JOB_MAX_UPLOAD", "JobRoutes", "answer", "error_answer", "guard"]

JOB_MAX_UPLOAD: Final = 32 * 2**20
"""Bytes an upload may have (the service's ``service_max_body`` is for JSON bodies)."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answer(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:  # fmt: skip
    """A JSON answer (UTF-8, not ASCII-escaped)."""
    return web.Response(status=status, text=json.dumps(payload, ensure_ascii=False),
                        content_type="application/json", headers=headers)  # fmt: skip


def error_answer(message: str, kind: str, status: int, fld: str | None = None, *,
                 errors: list[FieldProblem] | None = None) -> web.Response:  # fmt: skip
    """A problem+json answer like the rest of the service's (:mod:`lookup.service.problems`):
    ``detail`` is ``message``, ``kind`` names the error, ``errors`` the form field at fault
    (``fld``, the page shows the message next to it)."""
    slug: str | int = status
    if status == 422:
        slug = "invalid-body" if kind == "ValidationError" else "invalid-input"
    if errors is None and fld is not None:
        errors = [FieldProblem(field=fld, message=message)]
    return problem_response(slug, message, instance=request_id_var.get(), errors=errors,
                            kind=kind)  # fmt: skip


async def _read_limited(read: Callable[[int], Awaitable[bytes]], limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await read(1 << 16):
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(
                max_size=limit, actual_size=size,
                text=f"an upload is at most {limit >> 20} MiB: split the file",
            )  # fmt: skip
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_upload(request: web.Request) -> tuple[bytes, str | None, str]:
    """The file, its name and the mode of ``POST /v1/jobs`` (multipart or raw body)."""
    mode = request.query.get("mode", "first")
    if request.content_type != "multipart/form-data":
        raw = await _read_limited(request.content.read, JOB_MAX_UPLOAD)
        return raw, request.query.get("name"), mode
    try:
        reader = await request.multipart()
    except ValueError:  # aiohttp: no boundary in the Content-Type
        raise ProblemError(
            "bad-request", "a multipart/form-data body needs its boundary in the Content-Type; "
            "let the HTTP client build the form (curl -F file=@rows.csv)",
        ) from None
    data: bytes | None = None
    name: str | None = None
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == "file":
            if data is not None:
                raise BadUploadError("two files in one upload: send one file per job")
            # aiohttp's client percent-encodes non-ASCII names; browsers send them raw.
            name = unquote(part.filename) if part.filename else None
            data = await _read_limited(part.read_chunk, JOB_MAX_UPLOAD)
        elif isinstance(part, BodyPartReader) and part.name == "mode":
            mode = (await part.text()).strip() or mode
        else:
            name_ = part.name if isinstance(part, BodyPartReader) else None
            shown = (name_ or "")[:20].encode("ascii", "backslashreplace").decode()
            raise BadUploadError(f"unknown form field {shown!r}: send 'file' and, optionally, 'mode'")
    if data is None:
        raise BadUploadError("no file: send the CSV or JSONL as the multipart field 'file'")
    return data, name, mode


def guard(handler: _Handler) -> _Handler:
    """``handler`` answering a missing job with 404 and a wrong state with 409."""

    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except JobNotFoundError as exc:
            return error_answer(str(exc), "JobNotFound", 404)
        except JobStateError as exc:
            return error_answer(str(exc), "JobState", 409)
        except JobQuotaError as exc:
            response = error_answer(str(exc), "JobQuota", 429)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response

    return guarded


class JobRoutes:
    """The ``/v1/jobs`` handlers over the store ``store()`` returns, for ``caller(request)``."""

    def __init__(self, store: Callable[[], JobStore], caller: Callable[[web.Request], str],
                 read_timeout: float = 15.0) -> None:  # fmt: skip
        self._store = store
        self._caller = caller
        self._read_timeout = read_timeout

    async def create(self, request: web.Request) -> web.Response:
        try:
            try:  # the same body deadline as every route: a trickled upload is a 408
                async with asyncio.timeout(self._read_timeout):
                    data, name, mode = await _read_upload(request)
            except TimeoutError:
                raise ProblemError(
                    "request-timeout",
                    f"the upload did not arrive within {self._read_timeout:g} s; send it at "
                    "once (or raise LOOKUP_SERVICE_READ_TIMEOUT for slow links)",
                    close=True,
                ) from None
            if mode not in ("first", "all"):
                raise BadUploadError(f"mode must be 'first' or 'all', got {mode[:20]!r}")
            job = await self._store().create_async(self._caller(request), data, name,
                                                   mode="all" if mode == "all" else "first")  # fmt: skip
        except BadUploadError as exc:
            return error_answer(str(exc), type(exc).__name__, 422, "file")
        return answer(job.progress(), 201, {"Location": f"/v1/jobs/{job.id}"})

    async def list_jobs(self, request: web.Request) -> web.Response:
        jobs = self._store().jobs_of(self._caller(request))
        return answer({"jobs": [j.progress() for j in jobs]})

    async def get(self, request: web.Request) -> web.Response:
        job = self._store().get(self._caller(request), request.match_info["id"])
        return answer(job.progress())

    async def cancel(self, request: web.Request) -> web.Response:
        job = await self._store().delete(self._caller(request), request.match_info["id"])
        return answer(job.progress()) if job is not None else web.Response(status=204)

    async def results(self, request: web.Request) -> web.StreamResponse:
        fmt = request.query.get("format", "jsonl")
        if fmt not in ("csv", "jsonl"):
            return error_answer(f"format must be csv or jsonl, got {fmt[:20]!r}",
                                "ValidationError", 422, "format")  # fmt: skip
        caller, job_id = self._caller(request), request.match_info["id"]
        store = self._store()
        path = store.results(caller, job_id, "csv" if fmt == "csv" else "jsonl")
        stem = Path(store.get(caller, job_id).filename).stem.encode("ascii", "ignore").decode()
        download = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', stem) or 'job'}-results.{fmt}"
        kind = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return web.FileResponse(path, headers={
            "Content-Type": f"{kind}; charset=utf-8", "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{download}"'})  # fmt: skip
