"""lookup: find the order behind a masked Chinese mobile number, tier by tier.

The public surface is listed in ``__all__``; names are imported on first use so that
``import lookup`` (and the CLI) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookup.domain.errors import (
        CandidateCapError,
        CircuitOpenError,
        ConfigError,
        DataError,
        FatalApiError,
        InputError,
        InvalidMaskError,
        LookupFailure,
        OrderApiError,
        SightingsDisagreeError,
        ThrottledApiError,
        TooManyCandidatesError,
        TooManyQueuedError,
        TransientApiError,
        UnknownRegionError,
    )
    from lookup.domain.masks import Mask, parse_mask
    from lookup.domain.models import (
        DEFAULT_LIMITS,
        CheckOutcome,
        Hit,
        Limits,
        LookupResult,
        TierReport,
    )
    from lookup.domain.segments import Region, SegmentDB, SegmentInfo
    from lookup.domain.tiers import Tier, TierPlan, plan
    from lookup.engine.batch import BatchRow, BatchSummary, RowResult, run_batch
    from lookup.engine.checker import Checker
    from lookup.engine.matcher import find
    from lookup.engine.threads import LookupClient, find_sync
    from lookup.orders import FakeOrderApi, HttpOrderApi, OrderApi, Timeouts, load_plugin

__version__ = "0.2.0"

_EXPORTS: dict[str, str] = {
    "run_batch": "lookup.engine.batch",
    "BatchRow": "lookup.engine.batch",
    "BatchSummary": "lookup.engine.batch",
    "RowResult": "lookup.engine.batch",
    "find": "lookup.engine.matcher",
    "find_sync": "lookup.engine.threads",
    "LookupClient": "lookup.engine.threads",
    "LookupResult": "lookup.domain.models",
    "Limits": "lookup.domain.models",
    "DEFAULT_LIMITS": "lookup.domain.models",
    "CheckOutcome": "lookup.domain.models",
    "Hit": "lookup.domain.models",
    "TierReport": "lookup.domain.models",
    "OrderApi": "lookup.orders",
    "HttpOrderApi": "lookup.orders",
    "FakeOrderApi": "lookup.orders",
    "Timeouts": "lookup.orders",
    "load_plugin": "lookup.orders",
    "Checker": "lookup.engine.checker",
    "parse_mask": "lookup.domain.masks",
    "Mask": "lookup.domain.masks",
    "SegmentDB": "lookup.domain.segments",
    "Region": "lookup.domain.segments",
    "SegmentInfo": "lookup.domain.segments",
    "plan": "lookup.domain.tiers",
    "Tier": "lookup.domain.tiers",
    "TierPlan": "lookup.domain.tiers",
    "CandidateCapError": "lookup.domain.errors",
    "CircuitOpenError": "lookup.domain.errors",
    "TooManyQueuedError": "lookup.domain.errors",
    "ConfigError": "lookup.domain.errors",
    "DataError": "lookup.domain.errors",
    "FatalApiError": "lookup.domain.errors",
    "InputError": "lookup.domain.errors",
    "InvalidMaskError": "lookup.domain.errors",
    "LookupFailure": "lookup.domain.errors",
    "OrderApiError": "lookup.domain.errors",
    "SightingsDisagreeError": "lookup.domain.errors",
    "ThrottledApiError": "lookup.domain.errors",
    "TooManyCandidatesError": "lookup.domain.errors",
    "TransientApiError": "lookup.domain.errors",
    "UnknownRegionError": "lookup.domain.errors",
}

__all__ = [
    "DEFAULT_LIMITS",
    "BatchRow",
    "BatchSummary",
    "CandidateCapError",
    "CheckOutcome",
    "Checker",
    "CircuitOpenError",
    "ConfigError",
    "DataError",
    "FakeOrderApi",
    "FatalApiError",
    "Hit",
    "HttpOrderApi",
    "InputError",
    "InvalidMaskError",
    "Limits",
    "LookupClient",
    "LookupFailure",
    "LookupResult",
    "Mask",
    "OrderApi",
    "OrderApiError",
    "Region",
    "RowResult",
    "SegmentDB",
    "SegmentInfo",
    "SightingsDisagreeError",
    "ThrottledApiError",
    "Tier",
    "TierPlan",
    "TierReport",
    "Timeouts",
    "TooManyCandidatesError",
    "TooManyQueuedError",
    "TransientApiError",
    "UnknownRegionError",
    "find",
    "find_sync",
    "load_plugin",
    "parse_mask",
    "plan",
    "run_batch",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lookup' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
