"""orjson when the ``[fast]`` extra installed it, the standard library otherwise.

One place decides: :data:`ORJSON` says whether orjson is importable, :func:`dumps` writes
compact JSON on either path. Readers that must refuse what orjson accepts silently (a
repeated key) build on :data:`orjson` themselves (:mod:`lookup.orders.httpbody`).

``dumps`` writes what ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))``
writes, byte for byte, for documents of str keys and str, int, bool, ``None``, list and
dict values (the tool's request bodies). Outside that the two paths differ, so keep such
documents away from it: orjson writes ``1e-05`` as ``0.00001``, refuses integers beyond
64 bits, strings with lone surrogates and non-str keys, and writes NaN as ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

__all__ = ["ORJSON", "dumps", "dumps_stdlib", "orjson"]

orjson: ModuleType | None
try:
    import orjson
except ImportError:  # without the [fast] extra
    orjson = None

ORJSON: Final = orjson is not None
"""Whether orjson is importable (the ``[fast]`` extra)."""

_compact: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps_stdlib(obj: Any) -> str:
    """Compact JSON through the standard library (what :func:`dumps` is without orjson)."""
    return _compact(obj)


def _dumps_orjson(obj: Any) -> str:
    assert orjson is not None
    return orjson.dumps(obj).decode()  # type: ignore[no-any-return]


dumps: Callable[[Any], str] = _dumps_orjson if ORJSON else dumps_stdlib
"""Compact JSON text (``,`` and ``:``, UTF-8 characters as they are, keys as given)."""
