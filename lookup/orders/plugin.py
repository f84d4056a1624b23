"""Loading an order-API plug-in by ``package.module:attr``, and running sync plug-ins in threads.

A plug-in is any object with a ``check(phone)`` method. An async one that also
has ``aclose``, ``__aenter__`` and ``__aexit__`` is used as is; any other is
wrapped so the rest of ``lookup`` sees an :class:`~lookup.orders.base.OrderApi`::

    class MyApi:
        def check(self, phone: str) -> bool:   # sync: runs in a worker thread
            return my_sdk.has_orders(phone)

    api = load_plugin("my_package.orders:MyApi")
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from lookup.domain.errors import ConfigError
from lookup.domain.models import CheckOutcome
from lookup.domain.privacy import mask_phone
from lookup.orders.base import BaseOrderApi, OrderApi, outcome_from, outcomes_from

__all__ = ["ThreadedOrderApi", "load_plugin"]

_FORM = "expected the form 'package.module:attr'"


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )


async def _close(target: object) -> None:
    """Call ``target.aclose()`` or ``target.close()``, awaiting async ones, threading sync ones."""
    for name in ("aclose", "close"):
        close = getattr(target, name, None)
        if callable(close):
            if _is_async(close):
                await close()
            else:
                await asyncio.to_thread(close)
            return


class _Wrapped(BaseOrderApi):
    """Shared lifecycle of the plug-in wrappers: refuse checks once closed, close once."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self._target).__qualname__})"

    @property
    def batch_supported(self) -> bool:
        """Whether the plug-in has a ``check_many``."""
        return callable(getattr(self._target, "check_many", None))

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; load the plug-in again")

    async def aclose(self) -> None:
        """Close the plug-in (its ``aclose`` or ``close``, if any). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await _close(self._target)


class ThreadedOrderApi(_Wrapped):
    """Runs a plug-in with a synchronous ``check(phone)`` in worker threads.

    ``check`` runs via :func:`asyncio.to_thread` and may return ``bool`` (has
    orders), ``int`` (order count) or a :class:`CheckOutcome`; it should raise
    from ``lookup.domain.errors`` on failure. A sync ``check_many(phones)`` returning
    ``{phone: bool | int | CheckOutcome}`` is used the same way, and a sync
    ``close()`` is called in a thread by :meth:`aclose`. Cancelling a check does
    not stop its thread: the answer is dropped when it arrives.
    """

    async def check(self, phone: str) -> CheckOutcome:
        """Run the plug-in's ``check`` in a thread."""
        self._ensure_open()
        return outcome_from(phone, await asyncio.to_thread(self._target.check, phone))

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        """Run the plug-in's ``check_many`` in a thread."""
        self._ensure_open()
        if not self.batch_supported:
            raise ConfigError(
                f"the plug-in {type(self._target).__qualname__} has no check_many; call check()"
            )
        wanted = list(dict.fromkeys(phones))
        return outcomes_from(wanted, await asyncio.to_thread(self._target.check_many, wanted))


class _AsyncPluginApi(_Wrapped):
    """An async ``check`` without the rest of the protocol: add lifecycle and result coercion."""

    async def check(self, phone: str) -> CheckOutcome:
        self._ensure_open()
        return outcome_from(phone, await self._target.check(phone))

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        self._ensure_open()
        if not self.batch_supported:
            raise ConfigError(
                f"the plug-in {type(self._target).__qualname__} has no check_many; call check()"
            )
        wanted = list(dict.fromkeys(phones))
        many = self._target.check_many
        values = await many(wanted) if _is_async(many) else await asyncio.to_thread(many, wanted)
        return outcomes_from(wanted, values)


def _resolve(spec: str) -> object:
    module_name, colon, attr_path = spec.partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not colon or not module_name or not attr_path:
        raise ConfigError(f"bad order-API plug-in {spec!r}: {_FORM}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(
                f"plug-in module {module_name!r} not found (is it installed / on sys.path?); "
                f"{_FORM}"
            ) from exc
        raise ConfigError(
            f"importing plug-in module {module_name!r} failed: it needs {missing!r}, "
            "which is not installed"
        ) from exc
    except ImportError as exc:
        raise ConfigError(f"importing plug-in module {module_name!r} failed: {exc}") from exc
    obj: object = module
    for name in attr_path.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError as exc:
            raise ConfigError(
                f"plug-in module {module_name!r} has no attribute {attr_path!r}; {_FORM}"
            ) from exc
    return obj


def _is_factory(target: object) -> bool:
    """A function or method written in Python: the only callables called to make an API."""
    return inspect.isfunction(target) or inspect.ismethod(target)


def load_plugin(spec: str, **kwargs: Any) -> OrderApi:
    """Load an order API from ``"package.module:attr"``.

    ``attr`` (dotted paths such as ``module:Class.create`` work) must be one of:

    - an object with a ``check`` method (an ``OrderApi``), used as is (``kwargs`` must
      be empty);
    - a class that defines ``check``, instantiated with ``kwargs``;
    - a factory (a Python function or method), called with ``kwargs``; what it returns
      must have a ``check`` method.

    Anything else (a module, a number, a builtin such as ``os:system``, a class without
    ``check``, an async factory) is a ``ConfigError``, and is never called. An async
    ``check`` on an object that also has ``aclose``, ``__aenter__`` and ``__aexit__`` is
    returned unchanged (and must return ``CheckOutcome``); an async ``check`` alone gets
    the lifecycle added; a sync ``check`` is wrapped in :class:`ThreadedOrderApi`.
    """
    target = _resolve(spec)
    if isinstance(target, type):
        if not callable(getattr(target, "check", None)):
            raise ConfigError(
                f"plug-in {spec!r} is a class without a check(phone) method: not an order "
                "API (it was not instantiated)"
            )
        api = _make(spec, target, kwargs)
    elif callable(getattr(target, "check", None)):
        if kwargs:
            raise ConfigError(
                f"plug-in {spec!r} is an object, not a class or factory: it takes no "
                f"options, got {sorted(kwargs)}"
            )
        api = target
    elif _is_factory(target):
        if inspect.iscoroutinefunction(target):
            raise ConfigError(
                f"plug-in {spec!r} is an async function: name a sync factory, a class, or an "
                "object with a check(phone) method"
            )
        api = _make(spec, target, kwargs)
    else:
        raise ConfigError(
            f"plug-in {spec!r} is a {type(target).__name__}, not an object with a check() "
            f"method, a class or a factory function; {_FORM} (it was not called)"
        )
    check = getattr(api, "check", None)
    if not callable(check):
        if inspect.iscoroutine(api):
            api.close()
        raise ConfigError(
            f"plug-in {spec!r} gave a {type(api).__name__} without a check(phone) method; "
            "an order API needs one"
        )
    if not _is_async(check):
        return ThreadedOrderApi(api)
    if isinstance(api, OrderApi) and _is_async(getattr(api, "aclose", None)):
        return api
    return _AsyncPluginApi(api)


def _make(spec: str, factory: Any, kwargs: dict[str, Any]) -> object:
    try:
        made: object = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"creating the plug-in {spec!r} with options {sorted(kwargs)} failed: {exc}"
        ) from exc
    except Exception as exc:  # the plug-in's own failure: one line, its text masked
        raise ConfigError(
            f"creating the plug-in {spec!r} failed: {type(exc).__name__}: {mask_phone(str(exc))}"
        ) from exc
    return made
