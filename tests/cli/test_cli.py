"""The ``find``, ``demo``, ``mock-api`` and ``config`` subcommands (``segment`` and ``plan``
are in test_cli_foundation.py; ``batch`` and ``serve`` have their own tests).

Most tests run ``python -m lookup`` as a subprocess, against ``--api demo`` (the bundled mock,
in process) or a standalone mock order API on loopback started by a fixture.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import select
import shlex
import signal
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lookup.cli.main import main
from lookup.domain.models import LookupResult

ROOT = Path(__file__).resolve().parents[2]
DEMO_CASES: list[dict[str, Any]] = json.loads(
    (ROOT / "data" / "demo_cases.json").read_text(encoding="utf-8")
)
CITY_HIT = "13857152046"  # the demo order behind 138****2046 in 杭州 (city tier)
TOKEN = "tok-abcdef123456"
FULL_NUMBER = re.compile(r"(?<!\d)1\d{10}(?!\d)")
START_TIMEOUT = 30.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any LOOKUP_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env["LC_ALL"] = "C.UTF-8"  # English messages, whatever the machine's locale
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lookup", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=90,
        env=env or clean_env(),
        check=False,
    )


def read_line(proc: subprocess.Popen[str], timeout: float = START_TIMEOUT) -> str:
    """The first line of ``proc``'s stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line on stdout within {timeout} s"
    return proc.stdout.readline()


def stop(proc: subprocess.Popen[str]) -> int:
    """SIGINT, then kill if it does not exit within 10 s; close the pipes."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


# -- fixtures: mock order APIs and the subprocess runs, started side by side ---------------------

FAILING_API = "<failing-api>"  # replaced by the URL template of a mock answering 500 to all
TOKEN_API = "<token-api>"  # ... of a mock that wants `Authorization: Bearer tok-abcdef123456`

DEMO_AUDIT = "<demo-audit>"  # replaced by a folder for the demo's audit files
_MOCKS = {FAILING_API: ("--error-rate", "1"), TOKEN_API: ("--token", TOKEN)}


@pytest.fixture(scope="module")
def mock_apis() -> Iterator[dict[str, str]]:
    """Start the mocks (``python -m lookup.mockapi.server --port 0``); their orders URL templates."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "lookup.mockapi", "--port", "0", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=clean_env(),
        )
        for name, args in _MOCKS.items()
    }
    try:
        urls = {}
        for name, proc in procs.items():
            line = read_line(proc)
            match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
            assert match, line
            urls[name] = f"{match[1]}/orders?phone={{phone}}"
        yield urls
    finally:
        for proc in procs.values():
            stop(proc)


HIT = "find 138****2046 --city 杭州"
WRONG_TOKEN = "tok-wrong-9876543210"
AUTH = f"--header 'Authorization: Bearer {TOKEN}'"

# name: (command line after `python -m lookup`, extra environment)
RUNS: dict[str, tuple[str, dict[str, str]]] = {
    # demo first: the longest runs
    "demo-text": (f"demo --log-level DEBUG --audit-file {DEMO_AUDIT}text", {}),
    "demo-json": (
        f"demo --json --log-level DEBUG --log-format json --audit-file {DEMO_AUDIT}json",
        {},
    ),
    "demo-plain": ("demo", {}),
    "matched-json": (f"{HIT} --api demo --json", {}),
    "matched-text": (f"{HIT} --api demo", {}),
    "not-found": ("find 13905710*** --city 杭州 --api demo --json", {}),
    "mode-all": (f"{HIT} --api demo --mode all --json", {}),
    "plugin": ("find 138123412** --api-plugin support.plugins_for_tests:SyncApi --json", {}),
    # 10 candidates, one attempt each plus the end-of-tier retry pass: 20 failures in a row
    # stay under the breaker threshold (25), so every candidate ends unresolved.
    "inconclusive": (
        f"find 1385715204* --api {FAILING_API} --timeout 1 --max-in-flight 4 --rate none --json --deadline 3",
        {"LOOKUP_MAX_ATTEMPTS": "1"},
    ),
    # 100 candidates with the default retries: the breaker opens after 25 failures in a row.
    "breaker": (
        f"find 138571520** --api {FAILING_API} --timeout 1 --max-in-flight 4 --rate none --json --deadline 3",
        {},
    ),
    "unauthorised": (f"{HIT} --api {TOKEN_API} --json", {}),
    "wrong-token": (
        f"{HIT} --api {TOKEN_API} --header 'Authorization: Bearer {WRONG_TOKEN}'",
        {},
    ),
    "logs-text": (f"{HIT} --api {TOKEN_API} {AUTH} --log-level DEBUG --log-format text", {}),
    "logs-json": (f"{HIT} --api {TOKEN_API} {AUTH} --log-level DEBUG --log-format json", {}),
    "audit-full-text": (
        f"{HIT} --api {TOKEN_API} {AUTH} --log-format text --audit-full-numbers",
        {},
    ),
    # the token from the environment this time
    "audit-full-json": (
        f"{HIT} --api {TOKEN_API} --log-format json --audit-full-numbers --json",
        {"LOOKUP_API_TOKEN": TOKEN},
    ),
    "bad-mask": ("find 238****1234 --api demo --json", {}),
    "bad-city": ("find 138****2046 --city 火星 --api demo", {}),
    "bad-header": ("find 138****2046 --api demo --header nocolon", {}),
    "bad-rate": ("find 138****2046 --api demo --rate -1", {}),
    "bad-env": (f"{HIT} --api demo", {"LOOKUP_MAX_IN_FLIGHT": "abc"}),
    "config": (
        "config --header 'X-Api-Key: hunter2hunter2'",
        {"LOOKUP_API_TOKEN": "supersecret123", "LOOKUP_MAX_IN_FLIGHT": "7"},
    ),
    "config-json": (
        "config --json --header 'X-Api-Key: hunter2hunter2' --rate none",
        {"LOOKUP_API_TOKEN": "supersecret123"},
    ),
}


class Runs:
    """The finished runs by name (each waits for its own subprocess)."""

    def __init__(self, futures: dict[str, Future[subprocess.CompletedProcess[str]]]) -> None:
        self._futures = futures

    def __getitem__(self, name: str) -> subprocess.CompletedProcess[str]:
        return self._futures[name].result()


@pytest.fixture(scope="module")
def demo_audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-audit")


def _arg(word: str, mock_apis: dict[str, str], demo_audit: Path) -> str:
    if word.startswith(DEMO_AUDIT):
        return str(demo_audit / f"audit-{word.removeprefix(DEMO_AUDIT)}.log")
    return mock_apis.get(word, word)


@pytest.fixture(scope="module")
def runs(mock_apis: dict[str, str], demo_audit: Path) -> Iterator[Runs]:
    """Every subprocess run of RUNS, a few at a time (most of a run is interpreter start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(
                run, *(_arg(a, mock_apis, demo_audit) for a in shlex.split(line)),
                env=clean_env(**env),
            )
            for name, (line, env) in RUNS.items()
        }
        yield Runs(futures)


def result_of(r: subprocess.CompletedProcess[str]) -> LookupResult:
    return LookupResult.model_validate_json(r.stdout)


def audit_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "lookup.audit" in line]


# -- find: exit codes ---------------------------------------------------------------------------


def test_find_matched_json_exit_0(runs: Runs) -> None:
    r = runs["matched-json"]
    assert r.returncode == 0, r.stderr
    result = result_of(r)
    assert result.status == "matched"
    assert result.phone == CITY_HIT
    assert result.tier == "city"
    assert result.region is not None and result.region.city == "杭州"
    assert result.hits and result.hits[0].phone == CITY_HIT


def test_find_matched_human_output_and_plain_progress(runs: Runs) -> None:
    r = runs["matched-text"]
    assert r.returncode == 0, r.stderr
    matched = [line for line in r.stdout.splitlines() if line.startswith("matched")]
    assert len(matched) == 1, r.stdout
    assert CITY_HIT in matched[0]
    assert "tier city" in matched[0]
    assert "浙江 杭州" in matched[0]
    # stdout carries the answer only; the plan, the tier table and the counts go to stderr
    assert r.stdout.splitlines() == matched
    assert "10,000 candidates" in r.stderr and "asking the" in r.stderr
    assert re.search(r"^  city +102  hit ", r.stderr, re.MULTILINE), r.stderr
    assert "checks: 2 sent" in r.stderr
    # Not a terminal (pipes): no live progress bar, so no carriage return anywhere.
    assert "\r" not in r.stdout
    assert "\r" not in r.stderr
    assert "Traceback" not in r.stderr


def test_find_not_found_exit_1_json(runs: Runs) -> None:
    r = runs["not-found"]
    assert r.returncode == 1, r.stderr
    result = result_of(r)
    assert result.status == "not_found"
    assert result.phone is None
    assert result.hits == []
    # The demo mock has a batch endpoint: 1,000 numbers in 10 requests of 100.
    assert sum(t.checked for t in result.tiers) == 1000
    assert result.checks_sent == 10


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad-mask", "does not start with 1"),
        ("bad-city", "unknown city"),
        ("bad-header", "--header"),
        ("bad-rate", "--rate"),
        ("bad-env", "max_in_flight"),  # the message names the setting
    ],
)
def test_find_bad_input_exit_2(runs: Runs, name: str, message: str) -> None:
    r = runs[name]
    assert r.returncode == 2
    if "--json" in RUNS[name][0]:  # a problem object, as the service would answer
        problem = json.loads(r.stdout)
        assert problem["type"] == "/docs#problem-invalid-input"
        assert (problem["status"], problem["kind"]) == (422, "InvalidMaskError")
        assert message in problem["detail"] and problem["errors"] == []
        assert set(problem) == {"type", "title", "status", "detail", "kind", "errors"}
    else:
        assert r.stdout == ""  # nothing was looked up
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_find_inconclusive_exit_3_json(runs: Runs) -> None:
    r = runs["inconclusive"]
    assert r.returncode == 3, r.stderr
    result = result_of(r)
    assert result.status == "inconclusive"  # a failed check is never a "no"
    assert result.phone is None
    assert result.reason and "could not be checked" in result.reason
    from lookup.domain.i18n import translate

    assert "结果未知" in translate(result.reason, "zh")  # the template matches the real reason
    national = next(t for t in result.tiers if t.name == "national")
    assert national.status == "inconclusive"
    assert national.unresolved == 10


def test_find_open_breaker_exit_3_json(runs: Runs) -> None:
    r = runs["breaker"]
    assert r.returncode == 3, r.stderr
    result = result_of(r)
    assert result.status in ("api_error", "inconclusive")
    assert result.phone is None


def test_find_unauthorised_is_api_error_exit_3_json(runs: Runs) -> None:
    r = runs["unauthorised"]
    assert r.returncode == 3, r.stderr
    result = result_of(r)
    assert result.status == "api_error"
    assert result.reason and "401" in result.reason
    assert [t.name for t in result.tiers if t.status == "aborted"] == ["city"]


# -- find: modes and plug-ins ---------------------------------------------------------------------


def test_find_mode_all_finishes_the_hit_tier(runs: Runs) -> None:
    r = runs["mode-all"]
    assert r.returncode == 0, r.stderr
    result = result_of(r)
    assert result.status == "matched"
    assert result.mode == "all"
    assert CITY_HIT in [h.phone for h in result.hits]
    assert {h.tier for h in result.hits} == {"city"}
    city = result.tiers[0]
    assert city.name == "city"
    assert city.checked == city.candidates  # every candidate of the hit's tier answered
    assert [t.status for t in result.tiers[1:]] == ["skipped"] * 3


def test_find_with_api_plugin(runs: Runs) -> None:
    # plugins_for_tests.SyncApi: a blocking client whose only order is 13812341234 (2 orders)
    r = runs["plugin"]
    assert r.returncode == 0, r.stderr
    result = result_of(r)
    assert result.status == "matched"
    assert result.phone == "13812341234"
    assert result.hits[0].order_count == 2


# -- demo -----------------------------------------------------------------------------------------


def test_demo_text_lists_every_case(runs: Runs) -> None:
    r = runs["demo-text"]
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for case in DEMO_CASES:
        line = next((ln for ln in lines if ln.startswith(case["name"] + " ")), None)
        assert line is not None, case["name"]
        assert case["mask"] in line
        assert case["expected_status"] in line
        if case["expected_phone"]:
            assert case["expected_phone"] in line
            assert case["expected_tier"] in line
    assert len(lines) == len(DEMO_CASES) + 1  # the table's heading and one row per case
    assert f"all {len(DEMO_CASES)} demo lookups gave the expected answer" in r.stderr
    assert "lookup demo: bundled demo order API" in r.stderr


def test_demo_json_lines_parse(runs: Runs) -> None:
    r = runs["demo-json"]
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["case"] for row in rows] == [c["name"] for c in DEMO_CASES]
    for row, case in zip(rows, DEMO_CASES, strict=True):
        result = LookupResult.model_validate({k: v for k, v in row.items() if k != "case"})
        assert result.status == case["expected_status"]
        assert result.phone == case["expected_phone"]
        assert result.tier == case["expected_tier"]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_demo_logs_have_no_full_numbers(runs: Runs, fmt: str, demo_audit: Path) -> None:
    r = runs[f"demo-{fmt}"]
    assert r.returncode == 0, r.stderr
    assert FULL_NUMBER.findall(r.stderr) == []
    assert audit_lines(r.stderr) == []  # --audit-file: the lines went there
    path = demo_audit / f"audit-{fmt}.log"
    text = path.read_text(encoding="utf-8")
    assert FULL_NUMBER.findall(text) == []
    audit = audit_lines(text)
    assert len(audit) == len(DEMO_CASES)  # not vacuous: one audit line per lookup
    assert "138****2046" in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    if fmt == "json":
        assert [json.loads(line)["status"] for line in audit] == [
            c["expected_status"] for c in DEMO_CASES
        ]


def test_demo_keeps_audit_lines_off_the_terminal(runs: Runs) -> None:
    r = runs["demo-plain"]
    assert r.returncode == 0, r.stderr
    assert audit_lines(r.stderr) == []  # was one per case, between the table's rows
    assert "lookup.audit" not in r.stdout
    assert r.stderr.startswith("lookup demo: bundled demo order API")
    assert len(r.stdout.splitlines()) == len(DEMO_CASES) + 1


# -- no numbers and no secrets in logs ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_find_logs_have_no_full_numbers_and_no_token(runs: Runs, fmt: str) -> None:
    r = runs[f"logs-{fmt}"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert CITY_HIT in r.stdout  # the result itself may show the number
    assert FULL_NUMBER.findall(r.stderr) == []
    assert TOKEN not in r.stderr
    assert TOKEN not in r.stdout
    audit = audit_lines(r.stderr)
    assert len(audit) == 1
    assert "138****2046" in audit[0]
    if fmt == "json":
        assert json.loads(audit[0])["status"] == "matched"


def test_find_wrong_token_is_never_echoed(runs: Runs) -> None:
    r = runs["wrong-token"]
    assert r.returncode == 3
    assert "api_error" in r.stdout
    assert "403" in r.stdout
    assert "checks: " in r.stderr
    assert WRONG_TOKEN not in r.stdout
    assert WRONG_TOKEN not in r.stderr
    assert FULL_NUMBER.findall(r.stderr) == []


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_audit_full_numbers_opt_in(runs: Runs, fmt: str) -> None:
    r = runs[f"audit-full-{fmt}"]
    assert r.returncode == 0, r.stderr
    audit = audit_lines(r.stderr)
    assert len(audit) == 1
    assert CITY_HIT in audit[0]
    if fmt == "json":
        assert json.loads(audit[0])["full_phone"] == CITY_HIT
        assert result_of(r).phone == CITY_HIT  # LOOKUP_API_TOKEN reached the API
    else:
        assert f"full_phone={CITY_HIT}" in audit[0]
    assert TOKEN not in r.stderr


# -- config ---------------------------------------------------------------------------------------


def test_config_redacts_secrets(runs: Runs) -> None:
    r = runs["config"]
    assert r.returncode == 0, r.stderr
    assert "supersecret123" not in r.stdout + r.stderr
    assert "hunter2hunter2" not in r.stdout + r.stderr
    assert "***" in r.stdout
    lines = r.stdout.splitlines()
    # secrets are comments (sourcing the output must not set a token of "***")
    assert "# LOOKUP_API_TOKEN='***'  (a secret: set it yourself)" in lines
    assert "LOOKUP_MAX_IN_FLIGHT=7" in lines
    assert """# LOOKUP_API_HEADERS='{"X-Api-Key": "***"}'  (a secret: set it yourself)""" in lines


def test_config_json_parses(runs: Runs) -> None:
    r = runs["config-json"]
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["api_token"] == "***"
    assert data["api_headers"] == {"X-Api-Key": "***"}
    assert data["rate"] is None
    assert "supersecret123" not in r.stdout
    assert "hunter2hunter2" not in r.stdout


# -- mock-api -------------------------------------------------------------------------------------


def test_mock_api_prints_listening_line_and_stops_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookup", "mock-api", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        env=clean_env(),
    )
    try:
        line = read_line(proc)
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match, line
        assert int(match[2]) > 0
        with urllib.request.urlopen(f"{match[1]}/orders?phone={CITY_HIT}", timeout=10) as resp:
            assert json.loads(resp.read())["total"] > 0
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop(proc)


# -- CI runs README's test command ----------------------------------------------------------------



def _readme_test_command() -> str:
    """README's test command: the code-block line that installs tox and runs it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line.split("#")[0].strip() for line in readme.splitlines()]
    found = [line for line in lines if "tox" in line and "constraints" in line]
    assert found, "README.md shows no test command that installs tox (pinned) and runs it"
    return found[0]


def _ci_commands() -> list[str]:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    return [" ".join(shlex.split(line, comments=True)) for line in text.splitlines()]


def test_ci_runs_the_readme_test_command() -> None:
    """CI runs README's test command as is, a line of its own; tox pins what it installs
    with the committed constraints and tests the built wheel, not the checkout."""
    command = " ".join(shlex.split(_readme_test_command()))
    assert command in _ci_commands(), f"README's {command!r} is not a line of .ci/run"
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    assert "package = wheel" in tox and "PIP_CONSTRAINT" in tox
    assert "requirements{/}constraints.txt" in tox and (ROOT / "requirements" / "constraints.txt").is_file()


# -- in process -----------------------------------------------------------------------------------


@pytest.fixture
def no_lookup_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``find`` configures the ``lookup`` loggers: put them back afterwards."""
    names = ("lookup", "lookup.audit", "aiohttp")
    saved = [
        (lg, list(lg.handlers), lg.level, lg.propagate)
        for lg in (logging.getLogger(n) for n in names)
    ]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def call(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_in_process_config_json(no_lookup_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_API_TOKEN", "supersecret123")
    monkeypatch.setenv("LOOKUP_LOG_LEVEL", "info")
    code, out, err = call("config", "--json", "--header", "X-Api-Key: hunter2hunter2",
                          "--max-in-flight", "3")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["api_token"] == "***"
    assert data["api_headers"] == {"X-Api-Key": "***"}
    assert data["max_in_flight"] == 3
    assert data["log_level"] == "INFO"
    assert "supersecret123" not in out
    assert "hunter2hunter2" not in out


def test_in_process_config_timeout_sets_all_three(no_lookup_env: None) -> None:
    code, out, err = call("config", "--json", "--timeout", "2.5")
    assert code == 0, err
    data = json.loads(out)
    assert (data["connect_timeout"], data["read_timeout"], data["total_timeout"]) == (
        2.5,
        2.5,
        2.5,
    )


def test_in_process_config_missing_file_is_bad_input(no_lookup_env: None, tmp_path: Path) -> None:
    code, out, err = call("config", "--config", str(tmp_path / "nope.toml"))
    assert code == 2
    assert out == ""
    assert "does not exist" in err


def test_in_process_config_invalid_env_is_bad_input(
    no_lookup_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKUP_MAX_IN_FLIGHT", "abc")
    code, out, err = call("config")
    assert code == 2
    assert out == ""
    assert "max_in_flight" in err


@pytest.mark.parametrize(
    "args",
    [
        ("find",),  # no mask
        ("find", "138****2046", "--mode", "some"),
        ("find", "138****2046", "--rate", "fast"),
        ("config", "--max-in-flight", "many"),
    ],
)
def test_in_process_usage_error_returns_2(args: tuple[str, ...]) -> None:
    code, out, err = call(*args)
    assert code == 2
    assert out == ""
    assert "usage" in err  # argparse's message goes to the stderr passed to main()


def test_in_process_find_without_api_is_bad_input(
    no_lookup_env: None, restore_logging: None
) -> None:
    code, out, err = call("find", "138****2046", "--city", "杭州")
    assert code == 2
    assert "no order API configured" in err
    assert "matched" not in out


def test_in_process_find_bad_mask_is_bad_input(no_lookup_env: None, restore_logging: None) -> None:
    code, out, err = call("find", "138****20467", "--api", "demo", "--json")
    assert code == 2
    problem = json.loads(out)  # --json: the answer is a problem object, as the service's
    assert (problem["kind"], problem["status"]) == ("InvalidMaskError", 422)
    assert "12 digits" in problem["detail"]
    assert err.startswith("lookup: error:")


@pytest.mark.parametrize(
    ("plugin", "mask", "code", "status"),
    [
        ("SyncApi", "138123412**", 0, "matched"),
        ("Factories.bool_api", "1390000000*", 1, "not_found"),
        ("SyncApi", "1390000000*", 3, "inconclusive"),  # 13900000000 always fails
    ],
)
def test_in_process_find_with_plugin_exit_codes(
    plugin: str,
    mask: str,
    code: int,
    status: str,
    no_lookup_env: None,
    restore_logging: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOKUP_MAX_ATTEMPTS", "1")  # no backoff sleeps for the flaky number
    monkeypatch.setenv("LOOKUP_DEADLINE", "1")  # v2 retries a failing check until then
    got, out, err = call("find", mask, "--api-plugin", f"support.plugins_for_tests:{plugin}",
                         "--json", "--rate", "none")  # fmt: skip
    assert got == code, err
    result = LookupResult.model_validate_json(out)
    assert result.status == status
    if status == "matched":
        assert result.phone == "13812341234"
    if status == "inconclusive":
        assert sum(t.unresolved for t in result.tiers) == 1


def test_in_process_command_line_api_beats_env_plugin(
    no_lookup_env: None, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKUP_API_PLUGIN", "support.plugins_for_tests:NoCheck")
    code, out, err = call("find", "138****2046", "--city", "杭州", "--api", "demo", "--json")
    assert code == 0, err
    assert LookupResult.model_validate_json(out).phone == "13857152046"


def test_in_process_demo_ignores_env_plugin(
    no_lookup_env: None, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKUP_API_PLUGIN", "support.plugins_for_tests:NoCheck")
    code, out, err = call("demo", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == len(DEMO_CASES)
