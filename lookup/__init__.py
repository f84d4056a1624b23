"""lookup: find the order behind a masked Chinese mobile number, tier by tier.

The public surface is listed in ``__all__``; names are imported on first use so that
``import lookup`` (and the CLI) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookup.candidates import Tier, TierPlan, plan
    from lookup.errors import (
        CircuitOpenError,
        ConfigError,
        DataError,
        FatalApiError,
        InputError,
        InvalidMaskError,
        LookupFailure,
        OrderApiError,
        TooManyCandidatesError,
        TransientApiError,
        UnknownRegionError,
    )
    from lookup.masks import Mask, parse_mask
    from lookup.models import SegmentInfo
    from lookup.segments import Region, SegmentDB

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "parse_mask": "lookup.masks",
    "Mask": "lookup.masks",
    "SegmentDB": "lookup.segments",
    "Region": "lookup.segments",
    "SegmentInfo": "lookup.models",
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
    "TooManyCandidatesError": "lookup.errors",
    "TransientApiError": "lookup.errors",
    "UnknownRegionError": "lookup.errors",
}

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "DataError",
    "FatalApiError",
    "InputError",
    "InvalidMaskError",
    "LookupFailure",
    "Mask",
    "OrderApiError",
    "Region",
    "SegmentDB",
    "SegmentInfo",
    "Tier",
    "TierPlan",
    "TooManyCandidatesError",
    "TransientApiError",
    "UnknownRegionError",
    "parse_mask",
    "plan",
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
