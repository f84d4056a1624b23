"""Shared fixtures: system components the tests start themselves (see DEVELOPERS.md)."""

from __future__ import annotations

import os

import pytest

from tests.nginx import NGINX_MISSING, find_nginx


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The nginx binary; skips without one on a developer machine, fails when ``CI=true``."""
    found = find_nginx()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(NGINX_MISSING)
        pytest.skip(NGINX_MISSING)
    return found
