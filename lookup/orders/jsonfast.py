"""JSON on the hot paths: orjson when it is installed (the ``[fast]`` extra), else the
standard library, with the same results for what the order APIs, the journal and the
service exchange.

Both raise a :class:`ValueError` on text that is not JSON. Where orjson is stricter than
the standard library (``NaN``, ``1e400``), :func:`loads` lets the standard library decide.
One difference remains: orjson reads an integer beyond 64 bits as a float (no order count
comes near).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["FAST", "dumps", "loads"]

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the [fast] extra
    orjson = None  # type: ignore[assignment]

FAST = orjson is not None
"""Whether orjson does the work."""


def loads(raw: bytes | str) -> Any:
    """Parse ``raw`` (bytes as UTF-8); :class:`ValueError` when it is not JSON."""
    if orjson is not None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the standard library decides: same results for NaN, 1e400, big integers
    return json.loads(raw)


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (no spaces, non-ASCII kept as is)."""
    if orjson is not None:
        return orjson.dumps(value).decode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
