"""Dangerous paths are refused before any lookup: the audit file, the output's folder, a
second run on one output; the jobs folder is never changed through a symlink."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lookup.domain.errors import ConfigError
from lookup.files.locks import OutputLock

ROOT = Path(__file__).resolve().parents[2]
CLOSED_API = "http://127.0.0.1:9/orders?phone={phone}"  # nothing listens: no lookup may run


def batch(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, "-m", "lookup", "batch", *map(str, args)], cwd=ROOT, env=env,
        capture_output=True, text=True, encoding="utf-8", timeout=timeout, check=False,
    )  # fmt: skip


def small_csv(tmp_path: Path) -> Path:
    src = tmp_path / "in.csv"
    src.write_text("id,mask,city\na,138****2046,杭州\nb,133****7310,\n", encoding="utf-8")
    return src


def _fifo(tmp: Path, src: Path) -> Path:
    os.mkfifo(tmp / "audit.fifo")
    return tmp / "audit.fifo"


def _folder(tmp: Path, src: Path) -> Path:
    (tmp / "audit.d").mkdir()
    return tmp / "audit.d"


def _input(tmp: Path, src: Path) -> Path:
    return src


def _input_by_link(tmp: Path, src: Path) -> Path:
    (tmp / "link.csv").symlink_to(src)
    return tmp / "link.csv"


def _devnull(tmp: Path, src: Path) -> Path:
    return Path("/dev/null")


@pytest.mark.parametrize("make", [_fifo, _folder, _input, _input_by_link, _devnull])
def test_an_audit_file_that_is_not_a_private_regular_file_is_refused_up_front(
    tmp_path: Path, make: object
) -> None:
    src = small_csv(tmp_path)
    before = src.read_bytes()
    audit = make(tmp_path, src)  # type: ignore[operator]
    r = batch(src, "--out", tmp_path / "out.jsonl", "--api", CLOSED_API, "--audit-file", audit,
              timeout=30)  # fmt: skip  # a FIFO that hangs fails by the timeout
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "audit" in r.stderr, r.stderr
    assert src.read_bytes() == before
    assert not (tmp_path / "out.jsonl").exists()


def test_an_unwritable_output_folder_is_found_before_any_lookup(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    src = small_csv(tmp_path)
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    try:
        r = batch(src, "--out", locked / "out.jsonl", "--api", CLOSED_API)
    finally:
        locked.chmod(0o700)
    assert r.returncode == 2, r.stderr
    assert "not writable" in r.stderr and r.stderr.count("\n") == 1


def test_two_runs_on_one_output_with_two_journals_do_not_both_run(tmp_path: Path) -> None:
    src = small_csv(tmp_path)
    out = tmp_path / "out.jsonl"
    with OutputLock(out):  # a first run holds the output
        assert (tmp_path / "out.jsonl.lock").exists()
        r = batch(src, "--out", out, "--journal", tmp_path / "other.journal", "--api", CLOSED_API)
        assert r.returncode == 2, r.stderr
        assert "another `lookup batch`" in r.stderr and r.stderr.count("\n") == 1
        with pytest.raises(ConfigError, match="another"):
            OutputLock(out).__enter__()
    assert not (tmp_path / "out.jsonl.lock").exists()  # released and removed
    with OutputLock(out):
        pass


def test_the_output_lock_is_private_and_never_followed(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    victim = tmp_path / "victim"
    victim.write_text("keep", encoding="utf-8")
    (tmp_path / "out.jsonl.lock").symlink_to(victim)
    with pytest.raises(ConfigError):
        OutputLock(out).__enter__()
    assert victim.read_text(encoding="utf-8") == "keep"
    (tmp_path / "out.jsonl.lock").unlink()
    with OutputLock(out) as lock:
        assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600
