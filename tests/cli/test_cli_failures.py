"""The command line never reads a failure as an answer: a plug-in that raises anything or
blocks ends ``inconclusive`` or ``api_error`` (exit 3) within the deadline, and an
unexpected error is one line and exit 3, never 0 (matched) or 1 (not found).

Subprocess tests run ``python -m lookup`` with the plug-ins of ``support.plugins_for_tests``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = "support.plugins_for_tests"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    clean.update(PYTHONIOENCODING="utf-8", **env)
    return subprocess.run(
        [sys.executable, "-m", "lookup", *args], cwd=ROOT, env=clean,
        capture_output=True, text=True, encoding="utf-8", timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "plugin",
    ["RaisesSystemExit", "RaisesKeyboardInterrupt", "AsyncRaisesCancelled", "RaisesCustomBase",
     "AsyncRaisesGeneratorExit", "RaisesUnprintable"],
)  # fmt: skip
def test_a_plugin_that_raises_anything_is_exit_3(plugin: str) -> None:
    r = run("find", "1385715204*", "--api-plugin", f"{PLUGINS}:{plugin}", "--deadline", "1.5")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "inconclusive" in r.stdout or "api_error" in r.stdout
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("plugin", ["BlocksForever", "AwaitsForever"])
def test_a_blocked_plugin_ends_at_the_deadline(plugin: str) -> None:
    r = run("find", "1385715204*", "--api-plugin", f"{PLUGINS}:{plugin}", "--deadline", "2",
            "--json")  # fmt: skip
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert '"status": "inconclusive"' in r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("api", "says"),
    [
        ("http://127.0.0.1:9/orders?phone={phone}", "127.0.0.1:9 (connection refused"),
        ("http://orders.example.invalid:8080/orders?phone={phone}",
         "orders.example.invalid:8080 (no such host"),
    ],
)  # fmt: skip
def test_a_wrong_address_is_api_error_long_before_the_deadline(api: str, says: str) -> None:
    r = run("find", "138****2046", "--api", api, "--deadline", "120")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "api_error" in r.stdout and says in r.stdout  # not "inconclusive" at the deadline
    assert "Traceback" not in r.stderr
