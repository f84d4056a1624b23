"""The event loop of the shells: uvloop when it is installed (the ``[fast]`` extra).

The CLI, batch runs and the service start their loop with :func:`run`. The library never
picks a loop: ``await lookup.find(...)`` runs on whatever loop its caller runs, so an
application that wants uvloop starts it itself (``uvloop.run(main())``, or
``asyncio.Runner(loop_factory=uvloop.new_event_loop)``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["loop_factory", "loop_name", "run"]

T = TypeVar("T")


def loop_factory(use_uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when wanted (``None``: when importable), else ``None``.

    ``use_uvloop=True`` without uvloop installed raises ``ImportError``.
    """
    if use_uvloop is False:
        return None
    try:
        import uvloop
    except ImportError:
        if use_uvloop:
            raise
        return None
    return uvloop.new_event_loop


def loop_name(use_uvloop: bool | None = None) -> str:
    """``"uvloop"`` or ``"asyncio"``: what :func:`run` would use (imports neither: the
    commands that send nothing, like ``--version``, start fast)."""
    if use_uvloop is None:
        use_uvloop = importlib.util.find_spec("uvloop") is not None
    return "uvloop" if use_uvloop else "asyncio"


def run(coro: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """``asyncio.run(coro)``, on uvloop when it is installed (or as ``use_uvloop`` says)."""
    import asyncio

    try:
        factory = loop_factory(use_uvloop)
    except ImportError:
        coro.close()  # never started: no "was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)
