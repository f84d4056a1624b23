"""The service's wire models and its operations (the source of ``/openapi.json``)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from lookup.domain.models import MAX_SIGHTINGS, LookupRequest, LookupResult
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
    "LookupRequest",
]


class BatchItem(BaseModel):
    """One lookup of a batch: a mask, its hints and an optional id of the caller's."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | int | None = Field(None, description="echoed in the result (default: position)")
    mask: str = Field(min_length=1, max_length=64, description="e.g. 138****1234")
    also: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=MAX_SIGHTINGS,
        description="other sightings of the same number, intersected with mask",
    )  # fmt: skip
    city: str | None = Field(None, max_length=64)
    province: str | None = Field(None, max_length=64)
    area_code: str | None = Field(None, max_length=16)
    zip: str | None = Field(None, max_length=16)
    carrier: str | None = Field(None, max_length=32)


class BatchRequest(BaseModel):
    """The body of ``POST /v1/lookups/batch``; each item is validated on its own."""

    model_config = ConfigDict(extra="forbid")

    lookups: list[Any] = Field(description="BatchItem objects (at most service_max_batch)")
    mode: Literal["first", "all"] = "first"
    max_candidates: int | None = Field(None, ge=1, description="for every item")


class BatchResult(RowResult):
    """The answer for one item; ``errors`` names the fields of an item that breaks the schema."""

    errors: list[FieldProblem] | None = None


class BatchResponse(BaseModel):
    """The answer of ``POST /v1/lookups/batch``: results in request order, and totals."""

    results: list[BatchResult]
    summary: BatchSummary


class Health(BaseModel):
    """The answer of ``GET /healthz``."""

    status: Literal["ok", "stopping"]
    data_version: str
    breaker: str
    checker: str | None = Field(None, description="the checker's state, e.g. 'throttled, 82/s'")


_SEVEN: Final = {
    "name": "seven", "in": "path", "required": True, "description": "e.g. 1380571",
    "schema": {"type": "string", "pattern": "^[0-9]{7}$"},
}  # fmt: skip
OPERATIONS: Final = (
    Operation("POST", "/v1/lookups", "Find the number behind a mask",
              "Every outcome is a 200 whose status says what happened.",
              request=LookupRequest, response=LookupResult,
              problems=(408, 413, 415, 422, 429, 503)),
    Operation("POST", "/v1/lookups/batch", "Many lookups at once, answered in request order",
              "Bad items become 'invalid' results; the rest run over the same checker.",
              request=BatchRequest, response=BatchResponse,
              problems=(408, 413, 415, 422, 429, 503)),
    Operation("GET", "/v1/segments/{seven}", "What the numbering plan says of a segment",
              response=dict[str, Any], problems=(404, 422), parameters=(_SEVEN,)),
    Operation("GET", "/healthz", "Liveness, data version and the checker's state",
              response=Health, public=True),
    Operation("GET", "/metrics", "Prometheus metrics", response_type="text/plain"),
    Operation("GET", "/openapi.json", "This document", response=dict[str, Any], public=True),
    Operation("GET", "/docs", "This document as a page", response_type="text/html",
              public=True),
)  # fmt: skip
