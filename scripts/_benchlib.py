"""Helpers shared by the benchmark scripts: a mock order API in its own process, timing, tables.

Nothing here imports ``lookup``: the server runs as ``python -m lookup.mockapi`` in a
subprocess, so its CPU time never counts as the client's.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

ROOT = Path(__file__).resolve().parent.parent
_READY_PREFIX = "listening on "
_READY_TIMEOUT = 15.0


def write_orders(path: Path, orders: dict[str, int] | None = None) -> Path:
    """Write an orders CSV (header ``phone,total``); no orders gives the header alone."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["phone", "total"])
        for phone, total in (orders or {}).items():
            writer.writerow([phone, total])
    return path


def shown_command(argv: Sequence[str]) -> str:
    """``argv`` as a shell line, with this interpreter written as ``python``."""
    parts = ["python" if a == sys.executable else a for a in argv]
    return shlex.join(parts)


class MockServer:
    """``python -m lookup.mockapi --port 0 ...`` in a subprocess on loopback.

    ``with MockServer(latency_ms=20, orders=path) as server:`` waits for the
    ``listening on URL`` line; leaving the block sends SIGTERM (then SIGKILL if it lingers)
    and always reaps the process.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0,
        rate_limit: float | None = None,
        orders: Path | None = None,
        extra: Sequence[str] = (),
    ) -> None:
        argv = [sys.executable, "-m", "lookup.mockapi", "--port", "0"]
        if latency_ms:
            argv += ["--latency-ms", f"{latency_ms:g}"]
        if rate_limit is not None:
            argv += ["--rate-limit", f"{rate_limit:g}"]
        if orders is not None:
            argv += ["--orders", str(orders)]
        argv += list(extra)
        self.argv = argv
        self.command = shown_command(argv)
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    @property
    def orders_url(self) -> str:
        return f"{self.url}/orders?phone={{phone}}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> Self:
        # stderr goes to a file, not a pipe nobody reads: a chatty server must never block.
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        self._proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            self.url = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=_READY_TIMEOUT)
        except queue.Empty:
            raise RuntimeError(f"{self.command}: no 'listening on' line within "
                               f"{_READY_TIMEOUT:g}s") from None  # fmt: skip
        if not line.startswith(_READY_PREFIX):
            proc.poll()
            raise RuntimeError(f"{self.command}: unexpected output {line!r}; stderr: "
                               f"{self.stderr_tail()!r}")  # fmt: skip
        return line[len(_READY_PREFIX) :].strip()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        finally:
            for stream in (proc.stdout, self._stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            self._stderr = None

    def stderr_tail(self, chars: int = 2000) -> str:
        """The end of what the server wrote to stderr so far (while it is open)."""
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-chars:]

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process used so far; None off Linux."""
        if self._proc is None:
            return None
        try:
            text = Path(f"/proc/{self._proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = text.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict[str, Any]:
        """``GET /stats`` (never faulted by the mock)."""
        with urllib.request.urlopen(f"{self.url}/stats", timeout=10) as resp:
            data: dict[str, Any] = json.load(resp)
        return data


def system_busy_seconds() -> float | None:
    """CPU seconds all processes of the machine used since boot (Linux /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as stream:
            fields = stream.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(x) for x in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    # guest time is already inside user/nice: count the first 8 fields only
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, *, cores: float = 0.15, sample: float = 0.3) -> float:
    """Wait (at most ``max_wait`` s) until the machine uses fewer than ``cores`` over ``sample``
    seconds, i.e. other processes are idle while ours are; return the seconds waited."""
    started = time.perf_counter()
    while True:
        before = system_busy_seconds()
        if before is None:
            return 0.0
        time.sleep(sample)
        after = system_busy_seconds()
        waited = time.perf_counter() - started
        if after is None or (after - before) / sample < cores or waited >= max_wait:
            return waited


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the server counted between two ``/stats`` snapshots (``max_concurrent``: after's)."""
    statuses: dict[str, int] = {}
    for code, n in after.get("statuses", {}).items():
        d = n - before.get("statuses", {}).get(code, 0)
        if d:
            statuses[str(code)] = d
    return {
        "orders_requests": after["orders_requests"] - before["orders_requests"],
        "statuses": statuses,
        "max_concurrent": after["max_concurrent"],
    }


@dataclass
class Sample:
    """One timed run of one variant."""

    wall: float
    cpu: float
    checks: int
    """Definite answers the client got (goodput numerator)."""
    requests: int = 0
    """Requests the server received during the run."""
    statuses: dict[str, int] = field(default_factory=dict)
    max_concurrent: int = 0
    """The server's high-water mark of handlers at once since its start (not reset)."""
    server_cpu: float | None = None
    """CPU seconds the server process used during the run (Linux /proc; 10 ms ticks)."""
    others_cpu: float | None = None
    """CPU seconds every other process of the machine used during the run: noise."""
    result: str = ""
    ok: bool = True
    note: str = ""

    @property
    def rate(self) -> float:
        return self.checks / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.checks * 1e6 if self.checks else float("nan")

    @property
    def others_cores(self) -> float:
        """Cores busy with other processes during the run, on average (nan when unknown)."""
        if self.others_cpu is None or self.wall <= 0:
            return float("nan")
        return max(0.0, self.others_cpu) / self.wall

    @property
    def server_cpu_us(self) -> float:
        """Server CPU per request it received, in µs (nan when unknown)."""
        if self.server_cpu is None or not self.requests:
            return float("nan")
        return self.server_cpu / self.requests * 1e6


@dataclass
class Timed:
    """Wall and client-process CPU (all threads) of a block: ``with Timed() as t: ...``."""

    wall: float = 0.0
    cpu: float = 0.0
    _w: float = 0.0
    _c: float = 0.0

    def __enter__(self) -> Self:
        self._w = time.perf_counter()
        self._c = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def median_sample(samples: Sequence[Sample]) -> Sample:
    """The run with the median wall time (so its figures belong together), odd or even n."""
    ordered = sorted(samples, key=lambda s: s.wall)
    return ordered[(len(ordered) - 1) // 2]


def spread(values: Iterable[float]) -> str:
    vals = list(values)
    if len(vals) < 2:
        return ""
    return f"{min(vals):.3g}-{max(vals):.3g}"


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def interleaved(names: Sequence[str], runs: int) -> Iterator[tuple[int, str]]:
    """``(run, name)`` round-robin, the starting variant rotated each round."""
    for r in range(runs):
        k = r % len(names)
        for name in [*names[k:], *names[:k]]:
            yield r, name


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [
            str(c).ljust(w) if j == 0 else str(c).rjust(w)
            for j, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(indent + "  ".join(cells).rstrip())
        if i == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")
