"""lookup._loop: the shells run on uvloop when it is installed; the library picks no loop."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from lookup.runtime import loop as _loop

ROOT = Path(__file__).resolve().parents[2]


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_when_installed() -> None:
    assert _loop.run(_loop_type()).startswith("uvloop")
    assert _loop.loop_name() == "uvloop"


def test_run_on_the_default_loop_when_asked() -> None:
    assert _loop.run(_loop_type(), use_uvloop=False).startswith("asyncio")
    assert _loop.loop_name(False) == "asyncio"


def test_without_uvloop_run_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert _loop.run(_loop_type()).startswith("asyncio")
    with pytest.raises(ImportError):
        _loop.run(_loop_type(), use_uvloop=True)


def test_run_returns_the_value_and_closes_its_loop() -> None:
    seen: list[asyncio.AbstractEventLoop] = []

    async def work() -> int:
        seen.append(asyncio.get_running_loop())
        return 42

    assert _loop.run(work()) == 42
    assert isinstance(seen[0], uvloop.Loop) and seen[0].is_closed()


def test_the_cli_runs_its_lookups_on_uvloop() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    done = subprocess.run(
        [sys.executable, "-m", "lookup", "find", "13857152046", "--api-plugin",
         "support.plugins_for_tests:OnUvloop", "--json"],
        check=False, capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**env, "PYTHONPATH": str(ROOT / "tests")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"status": "matched"' in done.stdout
