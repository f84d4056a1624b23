"""The command line: --version, help, --quiet, --audit-file, the terminal (log
lines above the live line, the width, plain lines off a terminal), one-line errors with exit 2,
sourceable ``config``, and privacy of every line the CLI prints.

Subprocess tests run ``python -m lookup`` (``--api demo`` is the bundled mock on loopback).
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lookup.cli.terminal import BatchProgress, FindProgress, Terminal

ROOT = Path(__file__).resolve().parents[2]
FULL_NUMBER = re.compile(r"(?<!\d)1\d{10}(?!\d)")
CITY_HIT = "13857152046"
CLOSED = "http://127.0.0.1:9/orders?phone={phone}"  # discard port: nothing listens


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env["LC_ALL"] = "C.UTF-8"  # English messages, whatever the machine's locale
    env.update(extra)
    return env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookup", *args], cwd=ROOT, env=clean_env(**env),
        capture_output=True, text=True, encoding="utf-8", timeout=120, check=False,
    )  # fmt: skip


# -- --version, --help ---------------------------------------------------------------------------


def test_version() -> None:
    from lookup import __version__
    from lookup.domain.segments import SegmentDB

    r = run("--version")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == f"lookup {__version__}"
    assert lines[1] in ("event loop: uvloop", "event loop: asyncio")
    assert lines[2] == f"segment data: {SegmentDB.default().version}"


@pytest.mark.parametrize("args", [("--help",), ("find", "--help")])
def test_help_has_examples_and_the_exit_codes(args: tuple[str, ...]) -> None:
    r = run(*args)
    assert r.returncode == 0
    assert "examples:" in r.stdout and "lookup find '138****2046' --city 杭州 --api demo" in r.stdout
    for line in ("0  matched", "1  not found", "2  bad input", "3  inconclusive"):
        assert line in r.stdout


@pytest.mark.parametrize(
    ("command", "lines"),
    [
        ("batch", ("0  every row got a definite answer", "2  bad input", "3  some rows")),
        ("serve", ("0  stopped", "2  bad input: settings, a busy port")),
    ],
)
def test_batch_and_serve_help_have_examples_and_their_exit_codes(
    command: str, lines: tuple[str, ...]
) -> None:
    r = run(command, "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "exit codes:" in r.stdout
    assert all(line in r.stdout for line in lines)


# -- one-line errors, exit 2 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (("find", "138****2046", "--api", "demo", "--rate", "0"), {}, "--rate takes"),
        (("find", "138****2046", "--api", "demo", "--carrier", "电信"), {}, "no number fits"),
        (("find", "138****2046", "--api", "demo", "--zip", "31000"), {}, "6 digits"),
        (("find", "１３８＊＊＊＊２０４６", "--api", "demo", "--city", "x" * 80), {}, "--city"),
        (("find", "①38****2046", "--api", "demo"), {}, "write digits as 0-9"),
        (("config",), {"LOOKUP_API_HEADERS": "abc"}, "LOOKUP_API_HEADERS"),
        (("config",), {"LOOKUP_SERVICE_TOKENS": "[1,"}, "LOOKUP_SERVICE_TOKENS"),
        (("config",), {"LOOKUP_RATE": "0"}, "LOOKUP_RATE"),
        (("find", "138****2046", "--api-plugin", "os:system"), {}, "plug-in 'os:system'"),
        # was api_error (exit 3) with aiohttp's traceback in the log
        (
            ("find", "138****2046", "--api", CLOSED, "--header", "X-Key: v\r\nX-Evil: 1"),
            {},
            "LOOKUP_API_HEADERS",
        ),
        # was "a GET url must contain {phone}"
        (("find", "138****2046", "--api", "support.plugins_for_tests:full_async_api"), {}, "--api-plugin"),
        # was a traceback, exit 1, with the full number
        (
            ("find", "138****2046", "--api-plugin", "support.plugins_for_tests:failing_factory"),
            {},
            "RuntimeError: no session for 138****2046",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    r = run(*args, **env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert says in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_settings_errors_say_the_expected_format() -> None:
    r = run("config", LOOKUP_API_HEADERS="abc")
    assert "'Name: value', a comma-separated list" in r.stderr
    assert "EnvSettingsSource" not in r.stderr


@pytest.mark.parametrize("rate", ["none", "auto", "NONE"])
def test_rate_none_or_auto_is_no_ceiling(rate: str) -> None:
    r = run("config", "--format", "json", "--rate", rate)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rate"] is None


def test_plain_and_list_tokens_and_headers_from_the_environment() -> None:
    r = run("config", "--format", "json", LOOKUP_SERVICE_TOKENS="tok-aaaaaaaaaaaaaaaa,tok-bbbbbbbbbbbbbbbb",
            LOOKUP_API_HEADERS="X-Key: k1, X-Tenant: 7")  # fmt: skip
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["service_tokens"] == ["***", "***"]
    assert data["api_headers"] == {"X-Key": "***", "X-Tenant": "***"}
    assert "tok-a" not in r.stdout and "k1" not in r.stdout


# -- config: env form sources back; no credential shown ------------------------------------------


def test_config_env_sources_back(tmp_path: Path) -> None:
    args = ("--api", "http://127.0.0.1:9/orders?phone={phone}", "--rate", "none",
            "--max-in-flight", "7", "--hit-field", "data.total")  # fmt: skip
    first = run("config", "--format", "json", *args)
    env_file = tmp_path / "lookup.env"
    env_file.write_text(run("config", "--format", "env", *args).stdout, encoding="utf-8")
    again = subprocess.run(
        ["sh", "-c", f'set -a; . "{env_file}"; exec "{sys.executable}" -m lookup config --format json'],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert "null" not in env_file.read_text(encoding="utf-8")


def test_url_credentials_are_never_printed() -> None:
    url = "http://user:pw9876@127.0.0.1:9/o?phone={phone}&token=tok123456"
    for args in (("config",), ("config", "--format", "json"),
                 ("find", "1385715204*", "--timeout", "1", "--deadline", "2")):  # fmt: skip
        r = run(*args, "--api", url)
        text = r.stdout + r.stderr
        assert "pw9876" not in text and "tok123456" not in text, text
        assert "***@127.0.0.1:9" in text
    assert "asking the order API http://***@127.0.0.1:9/o" in r.stderr  # not the answer


# -- privacy of results: a plug-in's error text ---------------------------------------------------


def test_a_plugin_error_is_masked_in_the_result(tmp_path: Path) -> None:
    spec = "support.plugins_for_tests:LeakyApi"
    r = run("find", "1385715204*", "--api-plugin", spec)
    assert r.returncode == 3
    assert "138****2040" in r.stdout and "api_key=***" in r.stdout
    assert not FULL_NUMBER.search(r.stdout + r.stderr) and "sk-live" not in r.stdout + r.stderr
    r = run("find", "1385715204*", "--api-plugin", spec, "--json")
    assert "sk-live" not in r.stdout and not FULL_NUMBER.search(r.stdout)
    src = tmp_path / "in.csv"
    src.write_text("mask\n1385715204*\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = run("batch", str(src), "--out", str(out), "--api-plugin", spec)
    assert r.returncode == 3, r.stderr
    for path in (out, tmp_path / "out.jsonl.journal"):
        text = path.read_text(encoding="utf-8")
        assert "sk-live" not in text and not FULL_NUMBER.search(text), path


# -- --quiet, --audit-file -----------------------------------------------------------------------


def test_quiet_prints_only_the_answer() -> None:
    r = run("find", "138****2046", "--city", "杭州", "--api", "demo", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "candidates" not in r.stdout and "asking" not in r.stdout
    assert f"matched {CITY_HIT}" in r.stdout


def test_audit_file_gets_the_audit_lines_not_stderr(tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    for _ in range(2):
        r = run("find", "138****2046", "--city", "杭州", "--api", "demo", "--quiet",
                "--audit-file", str(audit))  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert "lookup.audit" not in r.stderr
    lines = audit.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all("status=matched" in line for line in lines)
    assert not FULL_NUMBER.search(audit.read_text(encoding="utf-8"))
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600


def test_audit_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n", encoding="utf-8")
    (tmp_path / "audit.log").symlink_to(victim)
    r = run("find", "138****2046", "--city", "杭州", "--api", "demo",
            "--audit-file", str(tmp_path / "audit.log"))  # fmt: skip
    assert r.returncode == 2 and "audit file" in r.stderr
    assert victim.read_text(encoding="utf-8") == "keep\n"


# -- the terminal --------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_go_above_the_live_line() -> None:
    stream = _Tty()
    term = Terminal(stream, columns=lambda: 80)
    term.status("city [####] 10/20")
    term.write("2026-01-01 INFO lookup.audit: one\n")
    term.status("city [#####] 12/20")
    term.clear()
    assert stream.getvalue() == (
        "\rcity [####] 10/20"
        "\r" + " " * 17 + "\r"  # the live line erased
        + "2026-01-01 INFO lookup.audit: one\n"  # the log line on its own line
        + "\rcity [####] 10/20"  # the live line drawn again below it
        + "\rcity [#####] 12/20"
        + "\r" + " " * 18 + "\r"  # finished: no stale bar left
    )


def test_a_half_written_log_line_waits_for_its_end() -> None:
    stream = _Tty()
    term = Terminal(stream, columns=lambda: 80)
    term.status("bar")
    term.write("half ")
    assert "half" not in stream.getvalue()
    term.write("line\n")
    assert "half line\n" in stream.getvalue()


def test_the_live_line_fits_the_terminal_width() -> None:
    stream = _Tty()
    term = Terminal(stream, columns=lambda: 20)
    term.status("national [##############################] 1,234/5,000, 82 checks/s, ok")
    shown = stream.getvalue().lstrip("\r")
    assert len(shown) == 19 and shown.endswith("…")


def test_off_a_terminal_nothing_live_is_written() -> None:
    stream = io.StringIO()
    term = Terminal(stream)
    term.status("bar")
    term.write("log\n")
    term.clear()
    assert stream.getvalue() == "log\n"


class _Status:
    text = "throttled, 82/s"


class _Checker:
    def status(self) -> _Status:
        return _Status()


def test_find_progress_off_a_terminal_prints_a_plain_line_every_few_seconds() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = FindProgress(Terminal(stream), _Checker(), every=5.0, clock=lambda: now[0])
    progress.tick()
    assert stream.getvalue() == ""  # nothing before 5 s
    now[0] = 5.0
    progress("city", 40, 100)
    progress.tick()  # a stalled lookup still says where it is
    now[0] = 7.0
    progress.tick()
    now[0] = 10.0
    progress.tick()
    assert stream.getvalue().splitlines() == [
        "lookup find: city 40/100, 8 checks/s, throttled, 82/s",
        "lookup find: city 40/100, 4 checks/s, throttled, 82/s",
    ]


def test_find_progress_without_a_checker() -> None:
    stream = _Tty()
    progress = FindProgress(Terminal(stream, columns=lambda: 100), None, clock=lambda: 1.0)
    progress("province", 3, 10)
    assert "province" in stream.getvalue() and "3/10" in stream.getvalue()
    progress.done()
    assert stream.getvalue().endswith("\r")


def test_batch_progress_goes_through_the_terminal() -> None:
    stream = _Tty()
    term = Terminal(stream, columns=lambda: 30)
    progress = BatchProgress(term, total=10, clock=lambda: 0.0)
    term.write("log line\n")
    progress.close()
    assert "log line\n" in stream.getvalue()


def test_batch_live_line_catches_up_on_a_tick_and_off_a_terminal_a_slow_row_gets_a_line() -> None:
    # rows that ended within 0.1 s of a redraw were never drawn: the live line said 1/31
    # for as long as the next (slow) row ran
    from types import SimpleNamespace

    now = [0.0]
    stream = _Tty()
    progress = BatchProgress(Terminal(stream, columns=lambda: 80), total=3, clock=lambda: now[0])
    row = SimpleNamespace(status="matched")
    progress.update(row)  # type: ignore[arg-type]
    now[0] = 0.05
    progress.update(row)  # type: ignore[arg-type]
    assert "2/3 rows" not in stream.getvalue()
    now[0] = 1.0
    progress.tick()
    assert "2/3 rows" in stream.getvalue()
    plain = io.StringIO()
    off = BatchProgress(plain, total=3, live=False, clock=lambda: now[0], every=5.0)
    now[0] = 3.0
    off.tick()
    assert plain.getvalue() == ""
    now[0] = 6.5
    off.tick()
    assert plain.getvalue().startswith("lookup batch: 0/3 rows")


def _pty_run(*args: str) -> str:
    """Run ``python -m lookup ARGS`` with stderr on a pseudo-terminal; its output."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookup", *args], cwd=ROOT, env=clean_env(COLUMNS="72"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
    )  # fmt: skip
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


def test_on_a_terminal_audit_lines_never_land_inside_the_progress_line() -> None:
    text = _pty_run("find", "133****7310", "--api", "demo", "--log-level", "INFO")
    assert "lookup.audit" in text
    for line in text.replace("\r\n", "\n").split("\n"):
        if "lookup.audit" in line:
            shown = line.rsplit("\r", 1)[-1]  # what the terminal line holds in the end
            assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO lookup\.audit", shown), line
    assert "[" in text and "checks/s" in text  # the live bar was drawn
    # the live line is erased (spaces, back to the start) before the tier table and counts
    _, _, after = text.rsplit("checks/s", 1)[1].partition("\r")
    assert re.match(r" +\r", after), after
    assert "numbers checked: " in after and "checks/s" not in after
    frames = [f for f in text.replace("\n", "\r").split("\r") if "checks/s" in f]
    assert frames and all(len(f.rstrip()) <= 72 for f in frames)  # COLUMNS=72
