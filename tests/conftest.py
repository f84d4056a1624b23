"""Shared fixtures: system components the tests start themselves on loopback.

The suite tests the *installed* package: tox builds the wheel, installs it in a fresh
environment and runs these tests against it (``LOOKUP_TEST_AGAINST_WHEEL=1``). Child
processes (``python -m lookup ...``) must import that installation too, never the checkout
they run in: their working directory is kept off ``sys.path`` (``PYTHONSAFEPATH``), and the
tests folder is on it for the plug-ins of ``support.plugins_for_tests``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import lookup

TESTS = Path(__file__).resolve().parent
SOURCE_TREE = TESTS.parent
os.environ["PYTHONSAFEPATH"] = "1"
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p
)
if os.environ.get("LOOKUP_TEST_AGAINST_WHEEL") == "1" and Path(lookup.__file__).resolve().is_relative_to(
    SOURCE_TREE / "lookup"
):
    raise pytest.UsageError(
        f"LOOKUP_TEST_AGAINST_WHEEL=1 but lookup was imported from the checkout "
        f"({lookup.__file__}): run the suite through tox (see README.md)"
    )

from support.batches import mock  # noqa: F401  (the mock order API in a thread, for every folder)
from support.components import missing as _missing
from support.nginx import NGINX_MISSING, find_nginx
from support.redis_fixture import REDIS_MISSING, RedisServer, find_redis


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
