"""Cold wall time of `lookup --version`, `lookup segment`, `lookup demo` and `lookup find ...
--api demo` (medians of 5). The first two must stay under 150 ms (imports kept lazy).

Cold means a new process with the bytecode cache in place, as after any first run: one
untimed run per command writes it, even where ``PYTHONDONTWRITEBYTECODE`` is set (without
the cache every run compiles the modules it imports: about 30 ms more here)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5


def _times(cmd: list[str], ok: tuple[int, ...] = (0,)) -> list[float]:
    writing = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, env=writing)
    out = []
    for _ in range(RUNS):
        t = time.perf_counter()
        proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True)
        out.append(time.perf_counter() - t)
        if proc.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-500:]}")
    return out


def run() -> None:
    lookup = [sys.executable, "-m", "lookup"]
    print("== cli (cold processes, median of 5)")
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"], (0,)),
        ("lookup --version", [*lookup, "--version"], (0,)),
        ("lookup segment 1380571", [*lookup, "segment", "1380571"], (0,)),
        ("lookup find '138****2046' --city 杭州 --api demo",
         [*lookup, "find", "138****2046", "--city", "杭州", "--api", "demo"], (0,)),
        ("lookup find '13905710***' --city 杭州 --api demo (not found, 1,000 checks)",
         [*lookup, "find", "13905710***", "--city", "杭州", "--api", "demo"], (1,)),
        ("lookup demo (6 lookups, 3,620 checks)", [*lookup, "demo"], (0,)),
    ]  # fmt: skip
    for name, cmd, ok in rows:
        t = _times(cmd, ok)
        print(f"  {name:<72} median {statistics.median(t) * 1000:7.0f} ms  "
              f"(min {min(t) * 1000:.0f}, max {max(t) * 1000:.0f})")  # fmt: skip


if __name__ == "__main__":
    run()
