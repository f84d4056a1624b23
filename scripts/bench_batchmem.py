"""`lookup batch` peak RSS at 10,000, 100,000 and 1,000,000 rows (target: < 150 MiB each).

    python scripts/bench.py batchmem            # 10,000 and 100,000 rows
    python scripts/bench.py batchmem --rows 10000,100000,1000000

Each size is one `lookup batch IN.csv --out OUT.jsonl` process against the plug-in
:class:`InstantApi` below (it answers every check at once, in process, "has orders": each
row is one check, so the run measures the batch machinery, not an order API). Masks are
``1SSSSS****D`` over varied prefixes with one visible last digit, so rows do not share
answers. Peak RSS is the child's ``ru_maxrss`` from ``wait4`` (Linux: KiB).
``LOOKUP_BENCH_OTHER_TREE=/path/to/checkout`` runs the same sizes against another
checkout too (say, ``main`` before this change), for a before/after line.

The checker's outcome cache (on by default: 300 s, up to 100,000 numbers) holds one entry
per number checked until it is full, about 70 MiB at 100,000: each size runs with it (the
default) and with ``LOOKUP_CACHE_TTL=0``, which shows what the batch itself holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MIB = 150.0
DEFAULT_ROWS = (10_000, 100_000)
PREFIXES = ("138", "139", "150", "186", "133", "177")


class InstantApi:
    """An order API plug-in that says "has orders" at once for every number."""

    async def check(self, phone: str) -> bool:
        return True

    async def aclose(self) -> None:
        return None


def write_masks(path: Path, rows: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write("id,mask\n")
        for i in range(rows):
            prefix = PREFIXES[i % len(PREFIXES)]
            f.write(f"r{i},{prefix}{(i // 10) % 10000:04d}***{i % 10}\n")
    return path


def peak_rss(tree: Path, src: Path, out: Path, *, cache: bool = True) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit code) of one `lookup batch` process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    if not cache:
        env["LOOKUP_CACHE_TTL"] = "0"
    env["PYTHONPATH"] = os.pathsep.join([str(tree), str(ROOT / "scripts")])
    argv = [sys.executable, "-m", "lookup", "batch", str(src), "--out", str(out), "--quiet",
            "--api-plugin", "bench_batchmem:InstantApi", "--rate", "none"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"lookup batch exited {proc.returncode}: {err[-500:]}")
    return usage.ru_maxrss / 1024, wall, proc.returncode


def run(sizes: tuple[int, ...] | None = None) -> None:
    sizes = sizes or tuple(int(s) for s in os.environ.get("LOOKUP_BENCH_ROWS", "").split(",")
                           if s) or DEFAULT_ROWS  # fmt: skip
    trees = [("this tree", ROOT)]
    other = os.environ.get("LOOKUP_BENCH_OTHER_TREE")
    if other:
        trees.append((other, Path(other)))
    print(f"== batchmem (lookup batch peak RSS, InstantApi plug-in; target < {TARGET_MIB:.0f} MiB)")
    with tempfile.TemporaryDirectory(prefix="batchmem-") as tmp:
        for rows in sizes:
            src = write_masks(Path(tmp) / f"in-{rows}.csv", rows)
            for (name, tree), cache in [(t, c) for t in trees for c in (True, False)]:
                out = Path(tmp) / f"out-{rows}.jsonl"
                rss, wall, _ = peak_rss(tree, src, out, cache=cache)
                lines = sum(1 for _ in out.open("rb"))
                verdict = "met" if rss < TARGET_MIB else f"missed by {rss - TARGET_MIB:.0f} MiB"
                what = f"{name}, cache {'on' if cache else 'off'}"
                print(f"  {rows:>9,} rows  {what:<32} peak RSS {rss:7.1f} MiB  "
                      f"{wall:7.1f} s  ({lines:,} output lines)  {verdict}")  # fmt: skip
                out.unlink()
                Path(f"{out}.journal").unlink(missing_ok=True)
            src.unlink()


if __name__ == "__main__":
    run(tuple(int(s) for s in sys.argv[1].split(",")) if len(sys.argv) > 1 else None)
