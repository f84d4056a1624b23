"""``--also`` on ``lookup plan`` and ``lookup find`` (the contradiction is exit 2)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from lookup.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    env["PYTHONIOENCODING"] = "utf-8"
    env["LC_ALL"] = "C.UTF-8"  # English messages
    return subprocess.run([sys.executable, "-m", "lookup", *args], cwd=ROOT, capture_output=True,
                          text=True, encoding="utf-8", timeout=90, env=env, check=False)  # fmt: skip


def call(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_plan_with_also_shows_the_sightings_and_one_candidate() -> None:
    code, out, _ = call("plan", "138****2046", "--also", "1385715****", "--city", "杭州")
    assert code == 0
    assert out.splitlines()[0] == "138****2046 + 1385715**** in 浙江 杭州: 1 candidates"
    code, out, _ = call("plan", "138****2046", "--also", "13857*5****", "--also",
                        "138571*****", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["total"] == 1


def test_plan_with_contradicting_sightings_is_exit_2_naming_the_digit() -> None:
    code, out, err = call("plan", "138****2046", "--also", "1395715****")
    assert code == 2 and out == ""
    assert "the sightings disagree at digit 3: 138****2046 shows 8, 1395715**** shows 9" in err
    assert "Traceback" not in err


def test_find_with_also_sends_one_check() -> None:
    r = run("find", "138****2046", "--also", "1385715****", "--api", "demo", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["status"] == "matched" and result["phone"] == "13857152046"
    assert result["checks_sent"] == 1


def test_find_with_contradicting_sightings_is_exit_2_before_any_request() -> None:
    r = run("find", "138****2046", "--also", "1385715****", "--also", "138****2047",
            "--api", "demo")  # fmt: skip
    assert r.returncode == 2 and r.stdout == ""
    assert "disagree at digit 11: 138****2046 shows 6, 138****2047 shows 7" in r.stderr
    assert "Traceback" not in r.stderr
