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

import importlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from lookup.domain.errors import ConfigError, OrderApiError
from lookup.domain.models import CheckOutcome
from lookup.orders.base import BaseOrderApi, OrderApi, outcome_from, outcomes_from, safe_text
from lookup.orders.calls import DEFAULT_CALL_TIMEOUT, bounded, bounded_sync

__all__ = ["ThreadedOrderApi", "load_plugin"]

_FORM = "expected the form 'package.module:attr'"

log = logging.getLogger("lookup.plugin")


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )


async def _close(target: object, *, seconds: float, source: str) -> None:
    """Call ``target.aclose()`` or ``target.close()``, awaiting async ones, threading sync
    ones, for at most ``seconds``; a close that fails is logged, not raised (the
    lookup's answer stands)."""
    for name in ("aclose", "close"):
        close = getattr(target, name, None)
        if callable(close):
            try:
                if _is_async(close):
                    await bounded(close, seconds=seconds, source=source, what=name)
                else:
                    await bounded_sync(close, seconds=seconds, source=source, what=name)
            except OrderApiError as exc:
                log.warning("closing %s failed: %s", source, exc)
            return


class _Wrapped(BaseOrderApi):
    """Shared lifecycle of the plug-in wrappers: refuse checks once closed, close once;
    every call bounded by ``call_timeout`` and its failures turned into failed checks."""

    def __init__(self, target: Any, *, call_timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        if not call_timeout > 0 or call_timeout == float("inf"):
            raise ConfigError(
                f"call_timeout must be a positive number of seconds, got {call_timeout!r}"
            )
        self._target = target
        self._closed = False
        self.call_timeout = call_timeout
        self._source = f"the plug-in {type(target).__qualname__}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self._target).__qualname__})"

    @property
    def batch_supported(self) -> bool:
        """Whether the plug-in has a ``check_many``."""
        return callable(getattr(self._target, "check_many", None))

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; load the plug-in again")

    def _batch_target(self) -> Any:
        self._ensure_open()
        if not self.batch_supported:
            raise ConfigError(
                f"the plug-in {type(self._target).__qualname__} has no check_many; call check()"
            )
        return self._target.check_many

    async def aclose(self) -> None:
        """Close the plug-in (its ``aclose`` or ``close``, if any). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await _close(self._target, seconds=self.call_timeout, source=self._source)


class ThreadedOrderApi(_Wrapped):
    """Runs a plug-in with a synchronous ``check(phone)`` in worker threads.

    ``check`` runs on a daemon thread and may return ``bool`` (has orders), ``int`` (order
    count) or a :class:`CheckOutcome`; it should raise from ``lookup.domain.errors`` on
    failure, and anything else it raises is a failed check (``TransientApiError``). A call
    that takes longer than ``call_timeout`` seconds is abandoned in its thread and counted
    failed (its answer is dropped when it comes). A sync ``check_many(phones)`` returning
    ``{phone: bool | int | CheckOutcome}`` is used the same way, and a sync ``close()`` is
    called in a thread by :meth:`aclose`.
    """

    async def check(self, phone: str) -> CheckOutcome:
        """Run the plug-in's ``check`` in a thread, for at most ``call_timeout`` seconds."""
        self._ensure_open()
        value = await bounded_sync(
            self._target.check, phone, seconds=self.call_timeout, source=self._source
        )
        return outcome_from(phone, value, self._source)

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        """Run the plug-in's ``check_many`` in a thread, for at most ``call_timeout`` seconds."""
        many = self._batch_target()
        wanted = list(dict.fromkeys(phones))
        values = await bounded_sync(
            many, wanted, seconds=self.call_timeout, source=self._source, what="check_many"
        )
        return outcomes_from(wanted, values, self._source)


class _AsyncPluginApi(_Wrapped):
    """An async ``check`` without the rest of the protocol: add lifecycle, bounds and
    result coercion."""

    async def check(self, phone: str) -> CheckOutcome:
        self._ensure_open()
        check = self._target.check
        value = await bounded(lambda: check(phone), seconds=self.call_timeout, source=self._source)
        return outcome_from(phone, value, self._source)

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        many = self._batch_target()
        wanted = list(dict.fromkeys(phones))
        timeout, source = self.call_timeout, self._source
        if _is_async(many):
            values = await bounded(
                lambda: many(wanted), seconds=timeout, source=source, what="check_many"
            )
        else:
            values = await bounded_sync(
                many, wanted, seconds=timeout, source=source, what="check_many"
            )
        return outcomes_from(wanted, values, source)


class _GuardedApi(_AsyncPluginApi):
    """A complete async order API (``check``, ``aclose``, ``__aenter__``, ``__aexit__``):
    its own lifecycle, with every call bounded and its answers kept to the rule."""

    async def __aenter__(self) -> Self:
        self._ensure_open()
        await self._target.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        await self._target.__aexit__(exc_type, exc, tb)

    @property
    def target(self) -> Any:
        """The plug-in's own object."""
        return self._target


def _resolve(spec: str) -> object:
    module_name, colon, attr_path = spec.partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not colon or not module_name or not attr_path:
        raise ConfigError(f"bad order-API plug-in {spec[:64]!r}: {_FORM}")
    if not all(p.isidentifier() for p in (*module_name.split("."), *attr_path.split("."))):
        raise ConfigError(
            f"bad order-API plug-in {spec[:64]!r}: a module and attribute are dotted Python "
            f"names, not paths; {_FORM}"
        )
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
        raise ConfigError(
            f"importing plug-in module {module_name!r} failed: {safe_text(exc)}"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # its import raised (SyntaxError, SystemExit...)
        raise ConfigError(
            f"importing plug-in module {module_name!r} failed: {type(exc).__name__}: "
            f"{safe_text(exc)}"
        ) from exc
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


def load_plugin(
    spec: str, *, call_timeout: float = DEFAULT_CALL_TIMEOUT, **kwargs: Any
) -> OrderApi:
    """Load an order API from ``"package.module:attr"``.

    ``attr`` (dotted paths such as ``module:Class.create`` work) must be one of:

    - an object with a ``check`` method (an ``OrderApi``), used as is (``kwargs`` must
      be empty);
    - a class that defines ``check``, instantiated with ``kwargs``;
    - a factory (a Python function or method), called with ``kwargs``; what it returns
      must have a ``check`` method.

    Anything else (a module, a number, a builtin such as ``os:system``, a class without
    ``check``, an async factory) is a ``ConfigError``, and is never called. A sync ``check``
    is wrapped in :class:`ThreadedOrderApi`; an async ``check`` alone gets the lifecycle
    added; an async ``check`` on an object that also has ``aclose``, ``__aenter__`` and
    ``__aexit__`` keeps its own lifecycle. Every call is bounded by ``call_timeout``
    seconds, whatever it raises is a failed check, and every answer is held to one rule
    (:func:`~lookup.orders.base.outcome_from`).
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
        return ThreadedOrderApi(api, call_timeout=call_timeout)
    if isinstance(api, OrderApi) and _is_async(getattr(api, "aclose", None)):
        return _GuardedApi(api, call_timeout=call_timeout)
    return _AsyncPluginApi(api, call_timeout=call_timeout)


def _make(spec: str, factory: Any, kwargs: dict[str, Any]) -> object:
    try:
        made: object = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"creating the plug-in {spec!r} with options {sorted(kwargs)} failed: {safe_text(exc)}"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the plug-in's own failure: one line, masked
        raise ConfigError(
            f"creating the plug-in {spec!r} failed: {type(exc).__name__}: {safe_text(exc)}"
        ) from exc
    return made
