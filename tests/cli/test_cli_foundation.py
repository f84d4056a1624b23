"""The ``segment`` and ``plan`` subcommands: as a subprocess and in process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lookup.cli.main import main
from lookup.domain.masks import parse_mask

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}  # English
    return subprocess.run(
        [sys.executable, "-m", "lookup", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env=env,
        check=False,
    )


def call(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- subprocess ----------------------------------------------------------------------------------


def test_segment_text() -> None:
    r = run("segment", "1380571")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    line = r.stdout.strip()
    for part in ("1380571", "浙江", "杭州", "移动", "0571", "310000"):
        assert part in line


def test_segment_json() -> None:
    r = run("segment", "13805711234", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "segment": "1380571",
        "province": "浙江",
        "city": "杭州",
        "carrier": "移动",
        "area_code": "0571",
        "zip": "310000",
        "located": True,
        "standard": True,
    }


@pytest.mark.parametrize("segment", ["¹³⁸⁰⁵⁷¹", "١٣٨٠٥٧١"])
def test_segment_in_other_digits_is_refused(segment: str) -> None:
    # superscripts were a ValueError traceback; Arabic-Indic digits were read as 1380571
    r = run("segment", segment)
    assert r.returncode == 2 and "first 7 digits" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_segment_in_full_width_digits() -> None:
    r = run("segment", "１３８０５７１")
    assert r.returncode == 0 and "杭州" in r.stdout


def test_area_code_in_other_digits_is_refused() -> None:
    r = run("plan", "138****2046", "--area-code", "٠٥٧١")
    assert r.returncode == 2 and "area code" in r.stderr and "0-9" in r.stderr


def test_unknown_segment_exits_1() -> None:
    r = run("segment", "1000000")
    assert r.returncode == 1
    assert "1000000" in r.stdout
    assert r.stderr == ""


def test_plan_with_city_prints_counts() -> None:
    r = run("plan", "138****1234", "--city", "杭州")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "138****1234" in lines[0]
    assert "杭州" in lines[0]
    assert "10,000 candidates" in lines[0]
    tiers = lines[1:5]  # then the order: the regions each tier checks first
    names = [line.split()[0] for line in tiers]
    assert names == ["city", "province", "national", "unlocated"]
    assert lines[5:] == ["  province checks first: 绍兴, 湖州, 嘉兴, 金华, 宁波",
                         "  national checks first: 上海, 江苏, 安徽, 江西, 福建"]  # fmt: skip
    counts = [int(line.split()[1].replace(",", "")) for line in tiers]
    assert sum(counts) == 10_000
    assert counts[0] > 0


def test_plan_json_tiers_sum_to_total() -> None:
    r = run("plan", "138****1234", "--city", "杭州", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["mask"] == "138****1234"
    assert data["region"]["province"] == "浙江"
    assert data["region"]["cities"] == ["杭州"]
    assert [t["name"] for t in data["tiers"]] == ["city", "province", "national", "unlocated"]
    assert sum(t["count"] for t in data["tiers"]) == data["total"] == 10_000
    assert "phone.dat" in data["data_version"]


def test_plan_list_city_lines_all_fit_the_mask() -> None:
    r = run("plan", "138xxxx1234", "--city", "杭州", "--list", "city")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines
    mask = parse_mask("138****1234")
    assert all(mask.matches(n) for n in lines)
    assert len(set(lines)) == len(lines)
    assert "13805711234" in lines


def test_bad_mask_exits_2_with_message_on_stderr() -> None:
    r = run("plan", "238****1234")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "does not start with 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_city_exits_2() -> None:
    r = run("plan", "138****1234", "--city", "火星")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "unknown city" in r.stderr


def test_no_subcommand_is_a_usage_error() -> None:
    r = run()
    assert r.returncode == 2
    assert r.stdout == ""
    assert "usage" in r.stderr


# -- in process ----------------------------------------------------------------------------------


def test_in_process_segment() -> None:
    code, out, err = call("segment", "1380571", "--json")
    assert code == 0
    assert err == ""
    assert json.loads(out)["city"] == "杭州"


def test_in_process_segment_with_data_folder() -> None:
    code, out, _ = call("segment", "1380571", "--data", str(ROOT / "data"))
    assert code == 0
    assert "杭州" in out


def test_in_process_unknown_segment_json() -> None:
    code, out, _ = call("segment", "1000000", "--json")
    assert code == 1
    assert json.loads(out) == {"segment": "1000000", "known": False}


def test_in_process_bad_segment_is_bad_input() -> None:
    code, out, err = call("segment", "abc")
    assert code == 2
    assert out == ""
    assert "first 7 digits" in err


def test_in_process_plan_json() -> None:
    code, out, err = call("plan", "13805710***", "--city", "杭州", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["total"] == 1_000
    assert data["tiers"][0] == {"name": "city", "count": 1_000}


def test_in_process_plan_list_json() -> None:
    code, out, _ = call("plan", "1380571***4", "--list", "national", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["tier"] == "national"
    assert len(data["numbers"]) == 1_000


def test_in_process_too_many_candidates() -> None:
    code, out, err = call("plan", "1**8***1234")
    assert code == 2
    assert out == ""
    assert "10,000" in err


def test_in_process_max_candidates_option() -> None:
    code, out, _ = call("plan", "138****1234", "--max-candidates", "9999")
    assert code == 2
    code, out, _ = call("plan", "138****1234", "--max-candidates", "10000")
    assert code == 0
    assert "10,000 candidates" in out


@pytest.mark.parametrize(
    "args",
    [
        ("plan",),  # missing mask
        ("plan", "138****1234", "--list", "moon"),
        ("frobnicate",),
    ],
)
def test_in_process_usage_errors(args: tuple[str, ...]) -> None:
    code, out, err = call(*args)
    assert code == 2
    assert out == ""
    assert "usage" in err


def test_in_process_contradicting_hints() -> None:
    code, out, err = call("plan", "138****1234", "--city", "杭州", "--province", "江苏")
    assert code == 2
    assert out == ""
    assert "disagree" in err


def test_plan_shows_what_it_leaves_out_and_why() -> None:
    out = io.StringIO()
    assert main(["plan", "1**5715204*", "--city", "杭州"], stdout=out) == 0
    text = out.getvalue()
    assert "  national       140\n" in text
    assert "  excluded        20  2 segments outside the numbering plan (data-only/IoT 146, 148)" in (
        text
    )
    out = io.StringIO()
    assert main(["plan", "1**5715204*", "--city", "杭州", "--json"], stdout=out) == 0
    data = json.loads(out.getvalue())
    assert data["excluded"] == 20 and "146, 148" in data["excluded_reason"]
    assert [t["name"] for t in data["tiers"]] == ["city", "province", "national", "unlocated"]


def test_plan_include_nonstandard_lists_the_last_tier() -> None:
    out = io.StringIO()
    argv = ["plan", "1**5715204*", "--city", "杭州", "--include-nonstandard"]
    assert main([*argv, "--list", "nonstandard"], stdout=out) == 0
    assert out.getvalue().split() == [f"14{d}5715204{t}" for d in "68" for t in "0123456789"]
    err = io.StringIO()
    assert main(["plan", "1**5715204*", "--list", "nonstandard"], stdout=out, stderr=err) == 2
    assert "--list nonstandard needs --include-nonstandard" in err.getvalue()


def test_segment_outside_the_numbering_plan_says_so() -> None:
    out = io.StringIO()
    assert main(["segment", "1541183"], stdout=out) == 0
    assert "1541183  陕西 西安  carrier 电信" in out.getvalue()
    assert "outside the numbering plan" in out.getvalue()
