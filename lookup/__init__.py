"""lookup: find the order behind a masked Chinese mobile number, tier by tier.

The public surface is listed in ``__all__``; names are imported on first use so that
``import lookup`` (and the CLI) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookup.batch import BatchRow, BatchSummary, RowResult, run_batch
    from lookup.candidates import Tier, TierPlan, plan
    from lookup.checker import Checker
    from lookup.errors import (
        CircuitOpenError,
        ConfigError,
        DataError,
        FatalApiError,
        InputError,
        InvalidMaskError,
        LookupFailure,
        OrderApiError,
        ThrottledApiError,
        TooManyCandidatesError,
        TransientApiError,
        UnknownRegionError,
    )
    from lookup.masks import Mask, parse_mask
    from lookup.matcher import find
    from lookup.models import (
        DEFAULT_LIMITS,
        CheckOutcome,
        Hit,
        Limits,
        LookupResult,
        TierReport,
    )
    from lookup.orders import FakeOrderApi, HttpOrderApi, OrderApi, Timeouts, load_plugin
    from lookup.segments import Region, SegmentDB, SegmentInfo
    from lookup.sync import LookupClient, find_sync

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "run_batch": "lookup.batch",
    "BatchRow": "lookup.batch",
    "BatchSummary": "lookup.batch",
    "RowResult": "lookup.batch",
    "find": "lookup.matcher",
    "find_sync": "lookup.sync",
    "LookupClient": "lookup.sync",
    "LookupResult": "lookup.models",
    "Limits": "lookup.models",
    "DEFAULT_LIMITS": "lookup.models",
    "CheckOutcome": "lookup.models",
    "Hit": "lookup.models",
    "TierReport": "lookup.models",
    "OrderApi": "lookup.orders",
    "HttpOrderApi": "lookup.orders",
    "FakeOrderApi": "lookup.orders",
    "Timeouts": "lookup.orders",
    "load_plugin": "lookup.orders",
    "Checker": "lookup.checker",
    "parse_mask": "lookup.masks",
    "Mask": "lookup.masks",
    "SegmentDB": "lookup.segments",
    "Region": "lookup.segments",
    "SegmentInfo": "lookup.segments",
    "plan": "lookup.candidates",
    "Tier": "lookup.candidates",
    "TierPlan": "lookup.candidates",
    "CircuitOpenError": "lookup.errors",
    "ConfigError": "lookup.errors",
    "DataError": "lookup.errors",
    "FatalApiError": "lookup.errors",
    "InputError": "lookup.errors",
    "InvalidMaskError": "lookup.errors",
    "LookupFailure": "lookup.errors",
    "OrderApiError": "lookup.errors",
    "ThrottledApiError": "lookup.errors",
    "TooManyCandidatesError": "lookup.errors",
    "TransientApiError": "lookup.errors",
    "UnknownRegionError": "lookup.errors",
}

__all__ = [
    "DEFAULT_LIMITS",
    "BatchRow",
    "BatchSummary",
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
    "ThrottledApiError",
    "Tier",
    "TierPlan",
    "TierReport",
    "Timeouts",
    "TooManyCandidatesError",
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
