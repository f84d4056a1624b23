"""The service's wire models and its operations: one :class:`Operation` per route.

The routes are added from these operations (:func:`lookup.service.openapi.add_operation`),
and ``/openapi.json`` is built from the routes, so a route cannot exist without its entry.
Enumerations are named types (``LookupStatus``, ``Mode``, ``JobState`` ...): client
generators make one enum of each instead of ``Status1``, ``Status2`` ...
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from typing_extensions import TypeAliasType

from lookup.domain.models import MAX_SIGHTINGS, Hints, LookupRequest, LookupResult, Mode
from lookup.domain.segments import SegmentInfo
from lookup.engine.batch import BatchSummary, RowResult
from lookup.service.openapi import Operation
from lookup.service.problems import FieldProblem

__all__ = [
    "OPERATIONS",
    "BatchItem",
    "BatchRequest",
    "BatchResponse",
    "BatchResult",
    "Health",
    "JobInfo",
    "JobList",
    "LookupRequest",
    "Reveal",
    "RevealRequest",
]

HealthStatus = TypeAliasType("HealthStatus", Literal["ok", "stopping"])
JobState = TypeAliasType("JobState", Literal["queued", "running", "done", "cancelled", "failed"])
InputFormat = TypeAliasType("InputFormat", Literal["csv", "jsonl"])
AssetName = TypeAliasType("AssetName", Literal["app.js", "app.css", "favicon.svg"])
StreamEventName = TypeAliasType("StreamEventName", Literal["plan", "progress", "result"])


class BatchItem(Hints):
    """One lookup of a batch: a mask, its hints (the one declaration of the five,
    :class:`~lookup.domain.models.Hints`) and an optional id of the caller's."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True,
        json_schema_extra={"examples": [{"id": "a", "mask": "138****2046", "city": "杭州"}]},
    )  # fmt: skip

    id: str | StrictInt | None = Field(
        None, description="echoed in the result (default: position)"
    )
    mask: str = Field(min_length=1, max_length=64, description="e.g. 138****1234")
    also: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=MAX_SIGHTINGS,
        description="other sightings of the same number, intersected with mask",
    )  # fmt: skip


class BatchRequest(BaseModel):
    """The body of ``POST /v1/lookups/batch``.

    Each item is validated on its own: an item that breaks :class:`BatchItem` is answered
    as an ``invalid`` result naming its fields (``errors``), and the others still run.
    """

    model_config = ConfigDict(extra="forbid")

    lookups: list[BatchItem] = Field(
        description="the lookups (at most the service's batch limit, service_max_batch)"
    )
    mode: Mode = "first"
    max_candidates: StrictInt | None = Field(
        None, ge=1, description="for every item (at most the service's cap)"
    )


class BatchBody(BaseModel):
    """:class:`BatchRequest` as it is read: the items are validated one by one after."""

    model_config = ConfigDict(extra="forbid")

    lookups: list[Any]
    mode: Mode = "first"
    max_candidates: StrictInt | None = Field(None, ge=1)


class BatchResult(RowResult):
    """The answer for one item; ``errors`` names the fields of an item that breaks the schema."""

    errors: list[FieldProblem] | None = None


class BatchResponse(BaseModel):
    """The answer of ``POST /v1/lookups/batch``: results in request order, and totals."""

    results: list[BatchResult]
    summary: BatchSummary


class Health(BaseModel):
    """The answer of ``GET /healthz``."""

    status: HealthStatus
    data_version: str
    breaker: str
    checker: str | None = Field(None, description="the checker's state, e.g. 'throttled, 82/s'")


class RevealRequest(BaseModel):
    """The body of ``POST /v1/reveal``: the ``reveal`` id of a streamed result."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=64)


class Reveal(BaseModel):
    """The full number of a streamed result (for the caller that ran it)."""

    mask: str
    phone: str
    hits: list[str] = Field(description="every number with orders (mode 'all')")


class JobInfo(BaseModel):
    """A server-side batch job: its file, state, counts by status, rate and ETA."""

    id: str
    filename: str
    format: InputFormat
    mode: Mode
    state: JobState
    total: int
    done: int
    counts: dict[str, int] = Field(description="rows done by status")
    rows_per_second: float | None = None
    eta_s: float | None = None
    created: str = Field(description="when the job was submitted (ISO 8601, UTC)",
                         examples=["2025-03-01T08:30:00+00:00"])
    started: str | None = Field(None, description="when it first got a slot (ISO 8601, UTC)")
    finished: str | None = Field(None, description="when it ended (ISO 8601, UTC)")
    error: str | None = None


class JobList(BaseModel):
    """The answer of ``GET /v1/jobs``: the caller's jobs."""

    jobs: list[JobInfo]


_SEVEN: Final = {
    "name": "seven", "in": "path", "required": True, "description": "e.g. 1380571",
    "schema": {"type": "string", "pattern": "^[0-9]{7}$"},
}  # fmt: skip
_JOB_ID: Final = {
    "name": "id", "in": "path", "required": True, "description": "the job's id",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16}$"},
}  # fmt: skip
class StreamEvent(BaseModel):
    """One server-sent event of a streamed lookup: ``plan`` (the tiers and their
    candidates), ``progress`` (numbers checked per tier, the rate, the checker's state)
    about every half second, then ``result`` (the :class:`LookupResult` with numbers masked
    and a ``reveal`` id for ``POST /v1/reveal``)."""

    event: StreamEventName
    data: str = Field(description="the event's JSON object", json_schema_extra={
        "contentMediaType": "application/json"})  # fmt: skip


_STREAM: Final = {"text/event-stream": StreamEvent}
_LOOKUP_PROBLEMS: Final = (408, 413, 415, 422, 429, 503)
_JOB_PROBLEMS: Final = (404, 503)
_UPLOAD: Final[dict[str, Any]] = {
    "multipart/form-data": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "contentMediaType": "application/octet-stream",
                     "description": "the CSV or JSONL file"},
            "mode": {"$ref": "#/components/schemas/Mode"},
        },
        "required": ["file"],
        "additionalProperties": False,
    },
    # the file itself (its name and the mode in the query): bytes, which OpenAPI 3.1
    # describes by the media type alone
    "text/csv": {},
    "application/x-ndjson": {},
}  # fmt: skip

LOOKUP: Final = Operation(
    "POST", "/v1/lookups", "Find the number behind a mask",
    "Every outcome is a 200 whose status says what happened. With 'Accept: "
    "text/event-stream' the answer is the live stream of POST /v1/lookups/stream.",
    request=LookupRequest, response=LookupResult, response_also=_STREAM,
    problems=_LOOKUP_PROBLEMS, operation_id="lookup",
)  # fmt: skip
STREAM: Final = Operation(
    "POST", "/v1/lookups/stream", "Find the number behind a mask, with live progress",
    "Input errors are a 422 before the stream starts.", request=LookupRequest,
    response_type="text/event-stream", response_also=_STREAM,
    problems=_LOOKUP_PROBLEMS, operation_id="lookup_stream",
)  # fmt: skip
BATCH: Final = Operation(
    "POST", "/v1/lookups/batch", "Many lookups at once, answered in request order",
    "Bad items become 'invalid' results; the rest run over the same checker.",
    request=BatchRequest, response=BatchResponse, problems=_LOOKUP_PROBLEMS,
    operation_id="lookup_batch",
)  # fmt: skip
SEGMENT: Final = Operation(
    "GET", "/v1/segments/{seven}", "What the numbering plan says of a segment",
    response=SegmentInfo, problems=(404, 422, 503), parameters=(_SEVEN,),
    operation_id="get_segment",
)  # fmt: skip
REVEAL: Final = Operation(
    "POST", "/v1/reveal", "The full number of a streamed result",
    "For the caller that ran the lookup, for 15 minutes; every reveal writes an audit line.",
    request=RevealRequest, response=Reveal, problems=(404, 413, 422, 503),
    operation_id="reveal",
)  # fmt: skip
JOB_CREATE: Final = Operation(
    "POST", "/v1/jobs", "Start a batch job from a CSV or JSONL file",
    "Multipart (field 'file', optional 'mode') or the raw file with ?name=&mode=. "
    "A caller may have so many jobs, rows and upload bytes queued or running (429 past "
    "that, with Retry-After); the job slots go to callers in turn.",
    request_content=_UPLOAD, response=JobInfo, status=201,
    parameters=(
        {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "the file's name (raw body)"},
        {"name": "mode", "in": "query", "required": False, "schema": Mode},
    ),
    problems=(413, 422, 429, 503), operation_id="create_job",
)  # fmt: skip
JOB_LIST: Final = Operation(
    "GET", "/v1/jobs", "The caller's jobs", response=JobList, problems=(503,),
    operation_id="list_jobs",
)  # fmt: skip
JOB_GET: Final = Operation(
    "GET", "/v1/jobs/{id}", "One job's progress", response=JobInfo, parameters=(_JOB_ID,),
    problems=_JOB_PROBLEMS, operation_id="get_job",
)  # fmt: skip
JOB_DELETE: Final = Operation(
    "DELETE", "/v1/jobs/{id}", "Cancel a job, or remove an ended one",
    "A queued or running job is cancelled (200, its state); an ended one is removed with "
    "its files (204).", response=JobInfo, no_content=(204,), parameters=(_JOB_ID,),
    problems=_JOB_PROBLEMS, operation_id="delete_job",
)  # fmt: skip
JOB_RESULTS: Final = Operation(
    "GET", "/v1/jobs/{id}/results", "A job's results, in input order",
    response_type="application/x-ndjson", response_also={"text/csv": {"type": "string"}},
    parameters=(_JOB_ID, {"name": "format", "in": "query", "required": False,
                          "schema": InputFormat}),
    problems=(*_JOB_PROBLEMS, 409, 422), operation_id="get_job_results",
)  # fmt: skip
HEALTH: Final = Operation(
    "GET", "/healthz", "Liveness, data version and the checker's state", response=Health,
    public=True, operation_id="health",
)  # fmt: skip
METRICS: Final = Operation(
    "GET", "/metrics", "Prometheus metrics (OpenMetrics when the scrape asks for it)",
    response_type="text/plain",
    response_also={"application/openmetrics-text": {"type": "string"}},
    problems=(503,), operation_id="metrics",
)  # fmt: skip
OPENAPI: Final = Operation(
    "GET", "/openapi.json", "This document", response=dict[str, Any], public=True,
    operation_id="openapi",
)  # fmt: skip
DOCS: Final = Operation(
    "GET", "/docs", "This document as a page", response_type="text/html", public=True,
    operation_id="docs",
)  # fmt: skip
PAGE: Final = Operation(
    "GET", "/", "The desk page (Chinese, or English by Accept-Language)",
    response_type="text/html", public=True, operation_id="page",
)  # fmt: skip
ASSET: Final = Operation(
    "GET", "/assets/{name}", "The desk page's script, style and icon",
    "Gzipped when Accept-Encoding allows it (Vary: Accept-Encoding), with an ETag.",
    response_type="text/javascript",
    response_also={"text/css": {"type": "string"}, "image/svg+xml": {"type": "string"}},
    parameters=({"name": "name", "in": "path", "required": True, "schema": AssetName},),
    problems=(404,), public=True, operation_id="asset",
)  # fmt: skip
FAVICON: Final = Operation(
    "GET", "/favicon.ico", "The desk page's icon (SVG, where browsers look for it)",
    response_type="image/svg+xml", public=True, operation_id="favicon",
)  # fmt: skip
OPERATIONS: Final = (
    LOOKUP, STREAM, BATCH, SEGMENT, REVEAL, JOB_CREATE, JOB_LIST, JOB_GET, JOB_DELETE,
    JOB_RESULTS, HEALTH, METRICS, OPENAPI, DOCS, PAGE, ASSET, FAVICON,
)  # fmt: skip
"""Every operation of the service (the routes are added from these)."""
