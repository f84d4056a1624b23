"""Reading a request's body: a deadline for it, and JSON checked against a model.

Every route that takes a body reads it here: :func:`read_body` bounds the wait (a 408
problem, the connection closed), :func:`json_body` adds the media type, the encoding and
the schema checks (415, 422).
"""

from __future__ import annotations

import asyncio
from typing import Final, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from lookup.domain.i18n import N_
from lookup.service.http import ProblemError
from lookup.service.problems import FieldProblem, field_problems

__all__ = ["json_body", "read_body"]

_DECODED: Final = frozenset({"identity", "gzip", "deflate", "br", "zstd"})
"""Content-Encodings aiohttp decodes (br and zstd when their packages are installed)."""
_M = TypeVar("_M", bound=BaseModel)


async def read_body(request: web.Request, seconds: float) -> bytes:
    """The whole body, or a 408 problem (connection closed) after ``seconds``."""
    if request.content.is_eof():  # all of it arrived with the headers: nothing to wait for
        return await request.read()
    try:
        async with asyncio.timeout(seconds):
            return await request.read()
    except TimeoutError:
        raise ProblemError(
            "request-timeout",
            N_("the request body did not arrive within {seconds} s; send it at once").format(
                seconds=f"{seconds:g}"
            ),
            close=True,
        ) from None


async def json_body(request: web.Request, model: type[_M], read_timeout: float) -> _M:
    """The body validated as ``model``: 415, 422 (encoding, JSON, schema) or 408 problems."""
    declared = request.headers.get("Content-Type")
    if declared is not None:
        mime = request.content_type
        if mime != "application/json" and not mime.endswith("+json"):
            raise ProblemError(
                "unsupported-media-type",
                f"the body is declared as {mime!r}; send JSON with "
                "'Content-Type: application/json'",
            )
    coding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in _DECODED:  # aiohttp passes a coding it does not know through as is
        raise ProblemError(
            "unsupported-media-type",
            "the body's Content-Encoding is not one this service decodes; send it "
            "uncompressed, or as gzip or deflate",
        )
    raw = await read_body(request, read_timeout)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        charset = request.charset
        said = f" (declared charset {charset})" if charset and charset.lower() != "utf-8" else ""
        raise ProblemError(
            "invalid-body",
            f"the body is not UTF-8{said}: byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
            "send JSON encoded as UTF-8",
            errors=[FieldProblem(field="body", message="not UTF-8")],
        ) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        errors = field_problems(exc)
        raise ProblemError(
            "invalid-body",
            "the body does not fit the schema: "
            + "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors=errors,
            kind="ValidationError",
        ) from None
