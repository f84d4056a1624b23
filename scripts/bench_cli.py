"""Cold wall time of `lookup --version`, `lookup segment`, `lookup demo` and `lookup find ...
--api demo` (medians of 5). The first two must stay under 150 ms (imports kept lazy).
Then `lookup plan '138****2046'`, `segment`, `--version` and `--help` against `python -c
pass`, alternating runs (median of 15 each, wall and CPU time): target <= 3x for `plan`.

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

    plan_vs_python()


PLAN_TARGET = 3.0
ALTERNATING = 15


def plan_vs_python() -> None:
    """`lookup plan` (and the other commands that send nothing) as a process against a bare
    interpreter, runs alternating (so a busy moment on a shared machine costs both alike);
    the ratio of the medians, of wall time and of the CPU time the process spent (user +
    system: what waiting for a busy core does not inflate as much)."""
    import resource

    lookup = [sys.executable, "-m", "lookup"]
    commands = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("lookup plan '138****2046'", [*lookup, "plan", "138****2046"]),
        ("lookup segment 1380571", [*lookup, "segment", "1380571"]),
        ("lookup --version", [*lookup, "--version"]),
        ("lookup --help", [*lookup, "--help"]),
    ]
    for _name, cmd in commands:
        _times(cmd)  # writes the bytecode cache
    wall: dict[str, list[float]] = {name: [] for name, _ in commands}
    cpu: dict[str, list[float]] = {name: [] for name, _ in commands}
    for _ in range(ALTERNATING):
        for name, cmd in commands:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
            wall[name].append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    base_wall, base_cpu = statistics.median(wall["python -c pass"]), statistics.median(cpu["python -c pass"])
    print(f"  against python -c pass ({base_wall * 1000:.1f} ms wall, {base_cpu * 1000:.1f} ms CPU), "
          f"medians of {ALTERNATING} alternating runs:")  # fmt: skip
    for name, _cmd in commands[1:]:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        line = (f"    {name:<28} {w * 1000:6.1f} ms wall {w / base_wall:5.2f}x   "
                f"{c * 1000:6.1f} ms CPU {c / base_cpu:5.2f}x")  # fmt: skip
        if name.startswith("lookup plan"):
            ratio = w / base_wall
            verdict = "met" if ratio <= PLAN_TARGET else f"missed by {ratio - PLAN_TARGET:.2f}x"
            line += f"   (target <= {PLAN_TARGET:.0f}x wall: {verdict})"
        print(line)


if __name__ == "__main__":
    run()
