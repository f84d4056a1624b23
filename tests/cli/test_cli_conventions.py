"""The command line's conventions: stdout carries the answer only, ``--quiet``, ``--json``
problems on bad input, ``find -``, completion scripts, ``-V``, "did you mean", audit lines
off the terminal in ``batch``, the environment in ``find --help``.

Subprocess tests run ``python -m lookup`` against ``--api demo`` (the bundled mock).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.components import missing

ROOT = Path(__file__).resolve().parents[2]
CITY_HIT = "13857152046"
PROBLEM_KEYS = {"type", "title", "status", "detail", "kind", "errors"}


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    clean |= {"PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"} | env
    return subprocess.run(
        [sys.executable, "-m", "lookup", *args], cwd=ROOT, capture_output=True, text=True,
        encoding="utf-8", timeout=120, env=clean, check=False, input=stdin,
    )  # fmt: skip


# -- stdout: the answer only -----------------------------------------------------------------------


def test_find_quiet_prints_the_answer_line_and_nothing_else() -> None:
    r = run("find", "138****2046", "--city", "杭州", "--api", "demo", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert r.stdout.splitlines() == [
        f"matched {CITY_HIT}  tier city  (浙江 杭州, 移动, area code 0571), 9 orders"
    ]


def test_find_not_found_answer_on_stdout_counts_on_stderr() -> None:
    r = run("find", "13905710***", "--city", "杭州", "--api", "demo")
    assert r.returncode == 1, r.stderr
    assert r.stdout.startswith("not found: no number that fits 13905710*** has orders")
    assert r.stdout.count("\n") == 1
    assert "candidates" in r.stderr and "requests: 10 " in r.stderr
    assert "not found" not in r.stderr


def test_find_json_on_a_usage_error_is_a_problem_object() -> None:
    r = run("find", "138****2046", "--api", "demo", "--json", "--cty", "杭州")
    assert r.returncode == 2
    problem = json.loads(r.stdout)
    assert set(problem) == PROBLEM_KEYS
    assert (problem["status"], problem["kind"]) == (400, "UsageError")
    assert "--cty" in problem["detail"] and "did you mean --city?" in problem["detail"]
    assert len(r.stderr.splitlines()) == 1


def test_find_json_on_a_bad_hint_is_a_problem_object() -> None:
    r = run("find", "138****2046", "--api", "demo", "--json", "--city", "火星")
    assert r.returncode == 2
    problem = json.loads(r.stdout)
    assert set(problem) == PROBLEM_KEYS
    assert (problem["status"], problem["kind"]) == (422, "UnknownRegionError")
    assert "火星" in problem["detail"]


# -- find - -------------------------------------------------------------------------------------------


def test_find_dash_reads_masks_from_stdin_one_answer_per_line() -> None:
    r = run("find", "-", "--city", "杭州", "--api", "demo", "--quiet",
            stdin="138****2046\n\n13905710***\n")  # fmt: skip
    assert r.returncode == 1, r.stderr  # the worst: one not found
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"138****2046\tmatched {CITY_HIT}  tier city")
    assert lines[1].startswith("13905710***\tnot found")
    assert r.stderr == ""


def test_find_dash_json_lines_and_a_bad_line_do_not_stop_the_others() -> None:
    r = run("find", "-", "--city", "杭州", "--api", "demo", "--json",
            stdin="bad mask\n138****2046\n")  # fmt: skip
    assert r.returncode == 2, r.stderr  # bad input outranks matched
    first, second = (json.loads(line) for line in r.stdout.splitlines())
    assert set(first) == PROBLEM_KEYS | {"mask"}
    assert first["mask"] == "bad mask" and first["kind"] == "InvalidMaskError"
    assert (second["status"], second["phone"]) == ("matched", CITY_HIT)
    assert "1 of them bad input" in r.stderr


def test_find_dash_with_also_is_bad_input() -> None:
    r = run("find", "-", "--also", "1385715****", "--api", "demo", stdin="138****2046\n")
    assert r.returncode == 2 and "--also" in r.stderr and r.stdout == ""


# -- -V, did you mean, --help ----------------------------------------------------------------------


def test_dash_v_is_version() -> None:
    short, long = run("-V"), run("--version")
    assert short.returncode == 0 and short.stdout == long.stdout
    assert re.search(r"^event loop: (uvloop|asyncio)$", short.stdout, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("find", "138****2046", "--cty", "杭州"), "(did you mean --city?)"),
        (("fnd", "138****2046"), "(did you mean find?)"),
        (("find", "138****2046", "--mode", "firts"), "(did you mean first?)"),
        (("batch", "x.csv", "--out", "y", "--lookups-inflight", "3"),
         "(did you mean --lookups-in-flight?)"),
        (("find", "138****2046", "--token", "abc"), "LOOKUP_API_TOKEN"),
    ],
)
def test_did_you_mean_one_line_exit_2(args: tuple[str, ...], says: str) -> None:
    r = run(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert says in r.stderr


def test_an_unknown_option_of_a_command_points_at_that_command_help() -> None:
    r = run("find", "138****2046", "--cty", "杭州")
    assert r.stderr.startswith("lookup find: error:") and "lookup find --help" in r.stderr


def test_find_help_names_the_environment_and_says_there_is_no_token_option() -> None:
    r = run("find", "--help")
    assert r.returncode == 0
    assert "LOOKUP_API_TOKEN" in r.stdout and "LOOKUP_API_URL" in r.stdout
    assert "there is no --token option" in r.stdout
    assert "--token" not in r.stdout.replace("there is no --token option", "")
    assert "'-' reads masks from stdin" in r.stdout


# -- completion ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_parse(shell: str, tmp_path: Path) -> None:
    r = run("completion", shell)
    assert r.returncode == 0, r.stderr
    option = "-l " if shell == "fish" else "--"
    for word in ("find", "batch", f"{option}city", f"{option}lookups-in-flight"):
        assert word in r.stdout
    script = tmp_path / f"lookup.{shell}"
    script.write_text(r.stdout, encoding="utf-8")
    exe = shutil.which(shell)
    if exe is None:
        missing(f"{shell} is not installed (Debian's {shell}; .ci/run installs it)")
    check = subprocess.run([exe or "bash", "-n", str(script)], capture_output=True, text=True,
                           timeout=30, check=False)  # fmt: skip
    assert check.returncode == 0, check.stderr


def test_bash_completion_completes_commands_and_options(tmp_path: Path) -> None:
    script = tmp_path / "lookup.bash"
    script.write_text(run("completion", "bash").stdout, encoding="utf-8")
    probe = (f"source {script}; COMP_WORDS=(lookup fi); COMP_CWORD=1; _lookup; "
             'echo "${COMPREPLY[@]}"; COMP_WORDS=(lookup find --ci); COMP_CWORD=2; _lookup; '
             'echo "${COMPREPLY[@]}"; COMP_WORDS=(lookup find --mode ""); COMP_CWORD=3; '
             '_lookup; echo "${COMPREPLY[@]}"')  # fmt: skip
    r = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30,
                       check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["find", "--city", "first all"]


# -- batch: audit lines off the terminal -----------------------------------------------------------


def test_batch_writes_audit_lines_beside_the_output_not_on_the_terminal(tmp_path: Path) -> None:
    masks = tmp_path / "masks.csv"
    masks.write_text("mask,city\n138****2046,杭州\n13905710***,杭州\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    r = run("batch", str(masks), "--out", str(out), "--api", "demo")
    assert r.returncode == 0, r.stderr
    assert "lookup.audit" not in r.stderr + r.stdout
    audit = Path(f"{out}.audit.log")
    lines = audit.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all("lookup.audit" in line for line in lines)
    assert stat.S_IMODE(audit.stat().st_mode) == 0o600
    assert f"audit lines: {audit}" in r.stdout


def test_batch_to_stdout_without_a_journal_keeps_no_audit_lines(tmp_path: Path) -> None:
    r = run("batch", "-", "--out", "-", "--api", "demo", "--format", "jsonl",
            stdin='{"mask": "138****2046", "city": "杭州"}\n', LOOKUP_LOG_LEVEL="INFO")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "lookup.audit" not in r.stderr
    assert json.loads(r.stdout.splitlines()[0])["phone"] == CITY_HIT
    assert "audit lines: not kept" in r.stderr


# -- Chinese ------------------------------------------------------------------------------------------


def test_find_in_a_chinese_locale_speaks_chinese() -> None:
    r = run("find", "138****2046", "--city", "杭州", "--api", "demo", LC_ALL="", LANG="zh_CN.UTF-8")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"匹配 {CITY_HIT}  层级 本市  （浙江 杭州，移动，区号 0571），9 个订单\n"
    assert "共 10,000 个候选号码（本市 102, 本省 482, 全国 9,416, 未定位 0）" in r.stderr
    assert "请求 2 次" in r.stderr
    assert "candidates" not in r.stderr and "checks:" not in r.stderr


def test_lang_option_beats_the_locale_and_json_fields_stay_english() -> None:
    en = run("find", "138****2046", "--city", "杭州", "--api", "demo", "--lang", "en",
             "--quiet", LC_ALL="zh_CN.UTF-8")  # fmt: skip
    assert en.stdout.startswith(f"matched {CITY_HIT}  tier city")
    zh = run("find", "138****2046", "--city", "杭州", "--api", "demo", "--lang", "zh", "--json")
    data = json.loads(zh.stdout)
    assert (data["status"], data["tier"], data["phone"]) == ("matched", "city", CITY_HIT)


def test_errors_and_did_you_mean_in_chinese() -> None:
    r = run("find", "238****2046", "--api", "demo", "--lang", "zh", "--json")
    assert r.returncode == 2
    problem = json.loads(r.stdout)
    assert problem["title"] == "查询输入无效" and problem["kind"] == "InvalidMaskError"
    assert problem["detail"].startswith("“238****2046”不以 1 开头")
    assert r.stderr.startswith("lookup: 错误：“238****2046”不以 1 开头")
    r = run("find", "138****2046", "--cty", "杭州", LC_ALL="zh_CN.UTF-8")
    assert r.returncode == 2
    assert r.stderr == ("lookup find: 错误：无法识别的参数：--cty 杭州（是否想用 --city？）"
                        "（用法：lookup find --help）\n")  # fmt: skip


def test_help_in_chinese() -> None:
    r = run("find", "--help", LC_ALL="zh_CN.UTF-8")
    assert r.returncode == 0
    assert "通过查询订单接口" not in r.stdout  # the command's own help is in `lookup --help`
    assert "客户所在地" in r.stdout and "显示此帮助并退出" in r.stdout
    assert "LOOKUP_API_TOKEN" in r.stdout and "没有 --token 选项" in r.stdout
    top = run("--help", LC_ALL="zh_CN.UTF-8")
    assert "通过查询订单接口找出掩码背后的号码" in top.stdout
