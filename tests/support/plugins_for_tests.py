"""Order-API plug-ins for tests/test_orders_fake_plugin.py, loaded by ``load_plugin``."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

from lookup.domain.errors import TransientApiError
from lookup.domain.models import CheckOutcome

HIT = "13812341234"
FLAKY = "13900000000"


class FullAsyncApi:
    """A complete async OrderApi: load_plugin returns it unchanged."""

    def __init__(self) -> None:
        self.closed = False

    async def check(self, phone: str) -> CheckOutcome:
        return CheckOutcome(phone=phone, has_orders=phone == HIT)

    async def aclose(self) -> None:
        self.closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


full_async_api = FullAsyncApi()


class SyncApi:
    """A blocking SDK-style client: ``check`` returns an order count."""

    def __init__(self, orders: Mapping[str, int] | None = None) -> None:
        self.orders = dict(orders or {HIT: 2})
        self.check_threads: list[int] = []
        self.close_threads: list[int] = []

    def check(self, phone: str) -> int:
        self.check_threads.append(threading.get_ident())
        if phone == FLAKY:
            raise TransientApiError("flaky upstream")
        return self.orders.get(phone, 0)

    def check_many(self, phones: Sequence[str]) -> dict[str, int]:
        if FLAKY in phones:
            raise TransientApiError("flaky upstream")
        return {p: self.orders.get(p, 0) for p in phones}

    def close(self) -> None:
        self.close_threads.append(threading.get_ident())


class SyncBoolApi:
    """``check`` returns a bool; no ``close``, no ``check_many``."""

    def check(self, phone: str) -> bool:
        return phone == HIT


class AsyncCheckOnly:
    """An async ``check`` returning a bool, and an async ``close``; nothing else."""

    def __init__(self) -> None:
        self.closed = 0

    async def check(self, phone: str) -> bool:
        return phone == HIT

    async def close(self) -> None:
        self.closed += 1


def make_sync_api(*, orders: Mapping[str, int]) -> SyncApi:
    """A factory taking options."""
    return SyncApi(orders)


class Factories:
    """Reached with a dotted attribute path: ``plugins_for_tests:Factories.bool_api``."""

    @staticmethod
    def bool_api() -> SyncBoolApi:
        return SyncBoolApi()


class NoCheck:
    """A class whose instances have no ``check``."""


def returns_nothing_useful() -> int:
    return 42


NOT_AN_API = 42


def failing_factory() -> object:
    """A factory that fails with a full number in its message (a traceback)."""
    raise RuntimeError("no session for 13857152046")


class LeakyApi:
    """Fails with a message holding the full candidate number and a key."""

    def check(self, phone: str) -> bool:
        from lookup.domain.errors import FatalApiError

        raise FatalApiError(f"denied for {phone}: bad credentials api_key=sk-live-123456")


class OnUvloop:
    """A plug-in answering "has orders" only when it runs on uvloop (the CLI's loop test)."""

    async def check(self, phone: str) -> bool:
        import asyncio

        import uvloop

        return isinstance(asyncio.get_running_loop(), uvloop.Loop)


LEAKED_SECRET = "Zq7-session-4f1c9e2b"
"""Configured as the API token where :class:`LeakySecretApi` runs: it must never be written."""


class LeakySecretApi:
    """Fails with a text holding the full candidate number and a configured secret, bare
    (not in a ``key=value`` a pattern would catch)."""

    def check(self, phone: str) -> bool:
        from lookup.domain.errors import FatalApiError

        raise FatalApiError(f"denied for {phone} in session {LEAKED_SECRET}")


class HostileTextApi:
    """Fails with a message that would steer a terminal and leak its own token: ANSI
    escapes, a line break that forges a line, a bidi override, ``token: ...``."""

    def check(self, phone: str) -> bool:
        from lookup.domain.errors import FatalApiError

        raise FatalApiError(
            f"\x1b[2J\x1b[31mdenied\x1b[0m for {phone}\nlookup: matched 13900001111 "
            "\u202eevil token: 9f8e7d6c5b4a3f2e1d0c Authorization: Bearer abc.def-123"
        )
