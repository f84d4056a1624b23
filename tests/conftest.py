"""Shared fixtures: system components the tests start themselves (see DEVELOPERS.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.nginx import NGINX_MISSING, find_nginx
from tests.redis_fixture import REDIS_MISSING, RedisServer, find_redis


def _missing(reason: str) -> None:
    """Skip on a developer machine; fail under CI, where every component must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The nginx binary; skips without one on a developer machine, fails when ``CI=true``."""
    found = find_nginx()
    if found is None:
        _missing(NGINX_MISSING)
        raise AssertionError  # unreachable: _missing raises
    return found


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh ``redis-server`` on a loopback port for one test (stop/start it at will)."""
    binary = find_redis()
    if binary is None:
        _missing(REDIS_MISSING)
        raise AssertionError  # unreachable
    server = RedisServer(binary).start()
    try:
        yield server
    finally:
        server.cleanup()
