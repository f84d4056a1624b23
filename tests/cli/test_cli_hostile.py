"""Hostile values at the command line: nothing from outside reaches the terminal raw
(control characters escaped, tokens redacted, numbers masked)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FULL_NUMBER = re.compile(r"(?<!\d)1\d{10}(?!\d)")


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    clean["PYTHONIOENCODING"] = "utf-8"
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "lookup", *args], cwd=ROOT, capture_output=True, text=True,
        encoding="utf-8", timeout=90, env=clean, check=False,
    )  # fmt: skip


def assert_printable(text: str) -> None:
    for line in text.splitlines():
        assert line.isprintable(), repr(line)


def test_a_plugin_error_with_ansi_escapes_is_printed_escaped() -> None:
    r = run("find", "138571520**", "--api-plugin", "support.plugins_for_tests:HostileTextApi",
            "--deadline", "20")  # fmt: skip
    assert r.returncode == 3, r.stderr
    both = r.stdout + r.stderr
    assert "\x1b" not in both and "\u202e" not in both
    assert_printable(r.stdout)
    assert_printable(r.stderr)
    assert "\\x1b[2J" in r.stdout  # shown, escaped
    assert "9f8e7d6c5b4a3f2e1d0c" not in both and "abc.def-123" not in both
    assert not FULL_NUMBER.search(both.replace("\\n", " "))
    assert not any(line.startswith("lookup: matched") for line in both.splitlines())


def test_impossible_numbers_and_ports_are_refused_at_start_up() -> None:
    cases = [
        ("find", "138****2046", "--api", "demo", "--timeout", "inf"),
        ("find", "138****2046", "--api", "demo", "--timeout", "nan"),
        ("find", "138****2046", "--api", "demo", "--timeout", "-1"),
        ("find", "138****2046", "--api", "demo", "--deadline", "inf"),
        ("mock-api", "--port", "70000"),
        ("mock-api", "--port", "-1"),
    ]
    for args in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert "Traceback" not in r.stderr, args
        assert r.stdout == "", args


def test_url_credentials_and_a_token_at_once_are_one_line_exit_2() -> None:
    r = run("find", "138****2046", "--api", "http://bob:pw@127.0.0.1:9/o?phone={phone}",
            LOOKUP_API_TOKEN="tok-abcdef123456")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "keep one" in r.stderr
    assert "tok-abcdef123456" not in r.stderr
