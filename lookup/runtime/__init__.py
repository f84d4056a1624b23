"""Wiring: settings, logging, the event loop, and :func:`open_engine` (an order API, its
checker and the shared quota, from :class:`~lookup.runtime.settings.Settings`).

``open_engine`` is imported on first use: ``lookup.runtime.settings`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lookup.runtime.engine import open_engine

__all__ = ["open_engine"]


def __getattr__(name: str) -> Any:
    if name == "open_engine":
        from lookup.runtime.engine import open_engine

        return open_engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
