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


# -- crashes are not answers -------------------------------------------------------------------


def _deep_toml(tmp_path: Path) -> str:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("find", "138****2046", "--api", "http://[::1/{phone}"), "not a valid URL"),
        (("find", "138****2046", "--api", "http://127.0.0.1:port/{phone}"), "not a valid URL"),
        (("find", "138****2046", "--api-plugin", "../etc:passwd"), "dotted Python names"),
        (("find", "138****2046", "--api", "postgresql://u@127.0.0.1:port/db"), "PORT a number"),
        (("find", "138****2046", "--api", "demo", "--config", "DEEP"), "nests arrays or tables"),
        (("batch", "IN", "--out", "OUT", "--api", "demo", "--encoding", "rot13"),
         "unsupported encoding 'rot13'"),
    ],
)  # fmt: skip
def test_hostile_options_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    given = tmp_path / "in.csv"
    given.write_text("mask\n138****2046\n", encoding="utf-8")
    swap = {"DEEP": _deep_toml(tmp_path), "IN": str(given), "OUT": str(tmp_path / "out.csv")}
    r = run(*(swap.get(a, a) for a in args))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert says in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("a bug in 13857152046"), RecursionError(), SystemExit(0), SystemExit(1),
     GeneratorExit(), type("Odd", (BaseException,), {})()],
    ids=lambda e: f"{type(e).__name__}{getattr(e, 'code', '')}",
)  # fmt: skip
def test_an_unexpected_error_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    import io

    from lookup.cli import main as cli

    def crash(args: object, out: object) -> int:
        raise exc

    monkeypatch.setattr(cli, "_cmd_find", crash)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["find", "138****2046", "--api", "demo"], stdout=out, stderr=err)
    assert code == 3
    assert out.getvalue() == ""
    (line,) = err.getvalue().splitlines()
    assert line.startswith(f"lookup: unexpected error: {type(exc).__name__}")
    assert "13857152046" not in line


def test_an_error_whose_str_raises_is_still_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from lookup.cli import main as cli

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ValueError("no")

    def crash(args: object, out: object) -> int:
        raise Unprintable

    monkeypatch.setattr(cli, "_cmd_find", crash)
    err = io.StringIO()
    assert cli.main(["find", "138****2046", "--api", "demo"], stdout=io.StringIO(), stderr=err) == 3
    assert "Unprintable: (its message cannot be shown" in err.getvalue()


# -- time, said honestly -------------------------------------------------------------------------


def test_a_plan_that_cannot_finish_is_said_first_and_the_deadline_is_the_reason() -> None:
    r = run("find", "138****0001", "--api", "demo", "--rate", "20", "--batch-size", "1",
            "--deadline", "2")  # fmt: skip
    assert r.returncode == 3, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    warned = [i for i, line in enumerate(lines) if line.startswith(
        "lookup: warning: at 20 checks/s the 10,000 candidates need about 500 s, more than "
        "the 2 s deadline: give --deadline 600")]  # fmt: skip
    counted = [i for i, line in enumerate(lines) if line.startswith("numbers checked: ")]
    assert warned and counted and warned[0] < counted[0], r.stderr  # said before any check
    assert "inconclusive: the deadline (2 s) came: " in r.stdout
    assert "no check failed" in r.stdout and "kept failing" not in r.stdout
