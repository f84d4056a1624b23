"""Error answers of the HTTP service as ``application/problem+json`` (RFC 9457).

Every error the service sends is a :class:`Problem`: ``type`` (a URI reference to the
problem's entry on the service's ``/docs`` page), ``title`` (the same for every problem of
that type), ``status``, ``detail`` (what was wrong with *this* request and what to do),
``instance`` (the request id, also in the ``X-Request-Id`` header) and, for a body that
breaks the schema, ``errors``: one ``{"field", "message"}`` per offending field. A problem
never echoes the request body or a header value back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from lookup.domain.i18n import translate
from lookup.domain.privacy import escape_controls, mask_phone

__all__ = [
    "PROBLEMS",
    "PROBLEM_JSON",
    "FieldProblem",
    "Problem",
    "ProblemType",
    "field_problems",
    "problem_response",
]

PROBLEM_JSON: Final = "application/problem+json"


class ProblemType(BaseModel, frozen=True):
    """One kind of problem: its slug (in ``type``), status and constant title."""

    slug: str
    status: int
    title: str
    when: str

    @property
    def uri(self) -> str:
        return f"/docs#problem-{self.slug}"


PROBLEMS: Final[dict[str, ProblemType]] = {
    p.slug: p
    for p in (
        ProblemType(slug="bad-request", status=400, title="Malformed request",
                    when="the request could not be read as HTTP (a broken chunked body, an "
                         "over-long header, two Content-Length or Authorization headers)"),
        ProblemType(slug="unauthorized", status=401, title="Authentication required",
                    when="no bearer token, or one this service does not know"),
        ProblemType(slug="forbidden", status=403, title="Forbidden",
                    when="the request is not allowed"),
        ProblemType(slug="not-found", status=404, title="Not found",
                    when="no such route, or no such segment"),
        ProblemType(slug="method-not-allowed", status=405, title="Method not allowed",
                    when="the route exists but not with this method (see Allow)"),
        ProblemType(slug="conflict", status=409, title="Conflict",
                    when="the desk page's job is not in a state that allows this (say, the "
                         "results of a job still running)"),
        ProblemType(slug="request-timeout", status=408, title="Request timeout",
                    when="the request body did not arrive within the read timeout"),
        ProblemType(slug="too-large", status=413, title="Request too large",
                    when="a body over the size limit, or a batch over the batch limit"),
        ProblemType(slug="unsupported-media-type", status=415,
                    title="Unsupported media type",
                    when="a body that is not declared as application/json, or whose "
                         "Content-Encoding this service does not decode"),
        ProblemType(slug="invalid-body", status=422, title="Invalid request body",
                    when="a body that is not UTF-8 JSON, or breaks the schema (see errors)"),
        ProblemType(slug="invalid-input", status=422, title="Invalid lookup input",
                    when="a mask or hint the lookup cannot use (bad mask, unknown region, "
                         "more candidates than the cap)"),
        ProblemType(slug="too-many-queued", status=429, title="Too many lookups queued",
                    when="this caller already has its share of lookups running or queued; "
                         "retry after Retry-After seconds"),
        ProblemType(slug="internal", status=500, title="Internal error",
                    when="a bug of this service (the log has the details)"),
        ProblemType(slug="unavailable", status=503, title="Service unavailable",
                    when="the service is starting or stopping; retry after Retry-After"),
    )
}  # fmt: skip
_BY_STATUS: Final = {p.status: p for p in reversed(PROBLEMS.values())}  # first slug wins


class FieldProblem(BaseModel):
    """What is wrong with one field of the body (``body`` for the body as a whole)."""

    field: str = Field(description="dotted path, e.g. 'mask' or 'lookups.2.city'")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(description="URI reference of the problem type (its entry on /docs)")
    title: str
    status: int
    detail: str
    instance: str = Field(description="the request id (also sent as X-Request-Id)")
    errors: list[FieldProblem] | None = Field(
        None, description="the offending fields of a body that breaks the schema"
    )
    kind: str | None = Field(
        None, description="for invalid-input: the error, e.g. InvalidMaskError"
    )


def _shown(text: str) -> str:
    """A problem's text as it may leave: numbers masked, control characters escaped (a
    validator's message may quote the caller's input, a path its bytes)."""
    return escape_controls(mask_phone(text))


def field_problems(exc: ValidationError, prefix: str = "") -> list[FieldProblem]:
    """One :class:`FieldProblem` per pydantic error, without the input values."""
    out = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        path = ".".join(str(p) for p in err["loc"])
        field = ".".join(p for p in (prefix, path) if p) or "body"
        out.append(FieldProblem(field=_shown(field), message=_shown(err["msg"])))
    return out


def problem_response(
    slug_or_status: str | int,
    detail: str,
    *,
    instance: str,
    errors: list[FieldProblem] | None = None,
    kind: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The response for a problem of the given type (a slug of :data:`PROBLEMS`, or a
    status: its first type, or a generic one for a status not listed)."""
    if isinstance(slug_or_status, str):
        ptype = PROBLEMS[slug_or_status]
    else:
        ptype = _BY_STATUS.get(slug_or_status) or ProblemType(
            slug="http-error", status=slug_or_status, title="HTTP error", when=""
        )
    shown = [
        FieldProblem(field=_shown(e.field), message=_shown(e.message)) for e in errors or ()
    ]
    problem = Problem(
        type=ptype.uri, title=translate(ptype.title), status=ptype.status,
        detail=_shown(translate(detail)),
        instance=_shown(instance), errors=shown if errors is not None else None, kind=kind,
    )  # fmt: skip
    return web.Response(
        status=ptype.status,
        text=json.dumps(problem.model_dump(exclude_none=True), ensure_ascii=False),
        content_type=PROBLEM_JSON,
        headers=headers,
    )
