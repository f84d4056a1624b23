"""Commands that send nothing start without the machinery they do not use: no aiohttp, no
asyncio, no pydantic for ``plan``, ``segment``, ``--version`` and ``--help``, nor logging,
the terminal or the other commands' modules, and a parser holding the options of the
command named only; no HTTP client for ``config`` (its settings are pydantic-settings,
which brings pydantic and asyncio)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lookup.cli.conventions import subparsers
from lookup.cli.main import _build_parser
from lookup.cli.parser import COMMANDS, command_named

ROOT = Path(__file__).resolve().parents[2]
HTTP = ("aiohttp", "yarl", "multidict", "aiosignal", "frozenlist")
EVERYTHING_HEAVY = (*HTTP, "asyncio", "pydantic", "pydantic_core", "pydantic_settings")

PROBE = """
import json, sys
from lookup.cli.main import main
argv = json.loads(sys.argv[1])
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
heavy = json.loads(sys.argv[2])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(heavy))
sys.stderr.write("\\nMODULES " + json.dumps([code, loaded]) + "\\n")
"""


def loaded_after(argv: list[str], heavy: tuple[str, ...]) -> tuple[object, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(heavy)],
        cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=60,
        check=False,
    )  # fmt: skip
    line = proc.stderr.rpartition("\nMODULES ")[2]
    assert line, proc.stderr
    code, loaded = json.loads(line)
    return code, loaded


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "138****2046"],
        ["plan", "138****2046", "--city", "杭州", "--json"],
        ["segment", "1380571"],
        ["--version"],
        ["--help"],
        ["plan", "--help"],
    ],
    ids=" ".join,
)
def test_commands_that_send_nothing_import_no_async_http_or_pydantic(argv: list[str]) -> None:
    code, loaded = loaded_after(argv, EVERYTHING_HEAVY)
    assert code in (0, None)
    assert loaded == []


def test_config_imports_no_http_client() -> None:
    code, loaded = loaded_after(["config", "--format", "env"], HTTP)
    assert code in (0, None)
    assert loaded == []


def test_a_bad_hint_is_still_exit_2_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    proc = subprocess.run(
        [sys.executable, "-m", "lookup", "plan", "138****2046", "--area-code", "0" * 17],
        cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "lookup: error: bad hint: --area-code: String should have at most 16 characters"
    ]


LOGGING_AND_OTHER_COMMANDS = (
    "logging", "shutil", "lookup.cli.find", "lookup.cli.terminal", "lookup.runtime.logs",
    "lookup.runtime.settings", "lookup.engine",
)  # fmt: skip

PROBE_FULL = PROBE.replace("m.split(\".\")[0] for m in sys.modules", "m for m in sys.modules")


@pytest.mark.parametrize(
    "argv",
    [["plan", "138****2046"], ["segment", "1380571", "--json"], ["--version"], ["--help"]],
    ids=" ".join,
)
def test_commands_that_send_nothing_start_without_logging_or_the_other_commands(
    argv: list[str],
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE_FULL, json.dumps(argv), json.dumps(LOGGING_AND_OTHER_COMMANDS)],
        cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=60,
        check=False,
    )  # fmt: skip
    code, loaded = json.loads(proc.stderr.rpartition("\nMODULES ")[2])
    assert code in (0, None)
    assert loaded == []


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "mock-api"])
def test_the_parser_of_one_command_is_the_whole_parsers(name: str) -> None:
    """main() builds the options of the command named only: its help, usage and defaults
    are the whole parser's."""
    whole = subparsers(_build_parser())[name]
    alone = subparsers(_build_parser((name,)))[name]
    assert alone.format_help() == whole.format_help()
    assert _shape(alone) == _shape(whole)


def _shape(p: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    return [(a.option_strings, a.dest, a.default, a.choices, a.required, a.nargs, a.type)
            for a in p._actions]  # fmt: skip


def test_the_top_parser_lists_every_command_with_none_built() -> None:
    assert _build_parser(()).format_help() == _build_parser().format_help()


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["plan", "138****2046"], "plan"),
        (["--lang", "zh", "plan", "x"], "plan"),
        (["--la", "zh", "segment", "1"], "segment"),
        (["--lang=zh", "find", "x"], "find"),
        (["-V"], None),
        (["--help", "batch"], "batch"),
        (["fnd", "x"], None),
        (["--", "serve"], "serve"),
        ([], None),
    ],
)
def test_the_command_named_on_the_command_line(argv: list[str], name: str | None) -> None:
    assert command_named(argv) == name
