"""The HTTP service under 50 concurrent clients: lookups/s, p50/p99 latency, checks/s.

Three processes: the mock order API (``python -m lookup.mockapi --port 0``), the service
(``python -m lookup serve --api <mock> --port 0 --rate none --max-in-flight 100``, with a
bearer token and a per-caller queue cap of 50) and this one, whose 50 client tasks each POST ``/v1/lookups`` one after the
other with the cheap demo masks (city hit: 102 candidates; area-code city hit: 22), for
N lookups or a time cap (after one warm-up lookup per client). Two service variants: the
default result cache (steady state: repeated masks are answered from the cache, so this is
the service's own cost: HTTP, validation, planning, matching, JSON), and
``LOOKUP_CACHE_TTL=0`` (lookups send their checks to the mock; identical checks of
concurrent lookups still share one request: the checker's single-flight dedupe).

    python scripts/bench.py service      # or: python scripts/bench_service.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import aiohttp
from _benchlib import MockServer, shown_command, stats_delta, table

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 50
LOOKUPS = 2_000
TIME_CAP = 15.0
MAX_IN_FLIGHT = 100
REQUEST_TIMEOUT = 30.0
TOKEN = "bench-service-token"
_READY = "lookup service listening on "
_READY_TIMEOUT = 30.0


class ServiceProcess:
    """``python -m lookup serve ...`` in a subprocess; SIGTERM (then SIGKILL) on exit.

    Its stderr (one audit line per lookup) goes to a temporary file: an unread pipe would
    fill up and block the service.
    """

    def __init__(
        self, api_url: str, env: Mapping[str, str] | None = None, python_args: list[str] | None = None
    ) -> None:
        self.argv = [
            sys.executable, *(python_args or []), "-m", "lookup", "serve", "--api", api_url, "--port", "0",
            "--rate", "none", "--max-in-flight", str(MAX_IN_FLIGHT),
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "LOOKUP_SERVICE_TOKENS": json.dumps([TOKEN]),
            # one token for all clients: let each of them have a lookup queued (the
            # default per-caller cap, 32, would answer the rest 429)
            "LOOKUP_SERVICE_MAX_QUEUED": str(CLIENTS),
            **(env or {}),
        }
        self.command = shown_command(self.argv)
        self.url = ""
        self.exit_code: int | None = None
        self.stderr_tail = ""
        self._proc: subprocess.Popen[str] | None = None
        self._log: IO[str] | None = None

    def __enter__(self) -> Self:
        self._log = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._proc = proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        stdout = proc.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            try:
                line = lines.get(timeout=_READY_TIMEOUT)
            except queue.Empty:
                line = ""
            if not line.startswith(_READY):
                self.stop()
                raise RuntimeError(f"{self.command}: no listening line:\n{self.stderr_tail}")
        except BaseException:
            self.__exit__()
            raise
        self.url = line[len(_READY) :].split()[0]
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service process so far (Linux /proc; else NaN)."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """User and system CPU time of the service process so far (Linux /proc; else NaN)."""
        if self._proc is None:
            return float("nan"), float("nan")
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan"), float("nan")
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            self.exit_code = proc.returncode
            if self._log is not None:
                self._log.seek(0)
                self.stderr_tail = self._log.read()[-2_000:]
        finally:
            if proc.stdout is not None:
                with contextlib.suppress(OSError):
                    proc.stdout.close()


@dataclass
class Run:
    name: str
    wall: float
    latencies: list[float]
    checks: int
    cache_hits: int
    wrong: int
    failed: int
    server: dict[str, Any]
    service_cpu: float

    @property
    def lookups(self) -> int:
        return len(self.latencies)


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(
        (ROOT / "data" / "demo_cases.json").read_text(encoding="utf-8")
    )
    cheap = [c for c in cases if c["name"] in ("city hit", "area code, city hit")]
    assert len(cheap) == 2, "demo cases changed: pick the cheap ones again"
    return cheap


async def _drive(
    service: ServiceProcess, total: int, cap: float
) -> tuple[float, list[float], dict[str, int], float]:
    cases = _cases()
    bodies = [json.dumps({"mask": c["mask"], **c["hints"]}).encode() for c in cases]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    counts = {"checks": 0, "cache_hits": 0, "wrong": 0, "failed": 0}
    issued = 0

    def next_index() -> int | None:
        nonlocal issued
        if issued >= total:
            return None
        issued += 1
        return issued

    connector = aiohttp.TCPConnector(limit=CLIENTS)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(
        service.url, connector=connector, headers=headers, timeout=timeout
    ) as session:

        async def lookup(i: int) -> None:
            case = cases[i % len(cases)]
            t = time.perf_counter()
            try:
                async with session.post("/v1/lookups", data=bodies[i % len(bodies)]) as resp:
                    data = await resp.json()
            except (aiohttp.ClientError, TimeoutError):
                counts["failed"] += 1
                return
            elapsed = time.perf_counter() - t
            if resp.status != 200:
                counts["failed"] += 1
                return
            latencies.append(elapsed)
            counts["checks"] += data["checks_sent"]
            counts["cache_hits"] += data["cache_hits"]
            if data["phone"] != case["expected_phone"]:
                counts["wrong"] += 1

        # Warm-up: one lookup per client (connections open; with the cache, a steady state).
        await asyncio.gather(*(lookup(i) for i in range(CLIENTS)))
        latencies.clear()
        counts.update(checks=0, cache_hits=0, wrong=0, failed=0)

        deadline = time.perf_counter() + cap

        async def client() -> None:
            while time.perf_counter() < deadline and (i := next_index()) is not None:
                await lookup(i)

        cpu = service.cpu_seconds()
        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        wall = time.perf_counter() - start
        cpu = service.cpu_seconds() - cpu
    return wall, latencies, counts, cpu


def _run_variant(name: str, mock: MockServer, env: dict[str, str]) -> tuple[Run, str]:
    with ServiceProcess(mock.orders_url, env) as service:
        before = mock.stats()
        wall, latencies, counts, cpu = asyncio.run(_drive(service, LOOKUPS, TIME_CAP))
        after = mock.stats()
    if service.exit_code != 0:
        raise SystemExit(
            f"{service.command} exited {service.exit_code} on SIGTERM:\n{service.stderr_tail}"
        )
    run = Run(name, wall, latencies, server=stats_delta(before, after), service_cpu=cpu, **counts)
    return run, service.command


def _quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def _rows(runs: list[Run]) -> Iterator[list[str]]:
    for r in runs:
        p50, p99 = _quantiles(r.latencies)
        yield [
            r.name,
            f"{r.lookups:,}",
            f"{r.wall:.1f}",
            f"{r.lookups / r.wall:,.0f}",
            f"{p50 * 1000:.1f}",
            f"{p99 * 1000:.1f}",
            f"{r.checks / r.wall:,.0f}",
            f"{r.service_cpu / max(r.lookups, 1) * 1000:.1f}",
            f"{r.cache_hits / max(r.lookups, 1):.0f}",
            str(r.server["max_concurrent"]),
            f"{r.wrong + r.failed}",
        ]


def run() -> None:
    print(f"== service ({CLIENTS} concurrent clients, sequential POST /v1/lookups each; "
          f"city-hit and area-code demo masks; up to {LOOKUPS:,} lookups or {TIME_CAP:g} s)")  # fmt: skip
    runs: list[Run] = []
    with MockServer() as mock:
        print(f"  mock:    {mock.command}")
        variants = [("result cache on (default)", {}), ("cache off (CACHE_TTL=0)",
                    {"LOOKUP_CACHE_TTL": "0"})]  # fmt: skip
        for name, env in variants:
            r, command = _run_variant(name, mock, env)
            runs.append(r)
        print(f"  service: {command.replace(mock.url, 'http://127.0.0.1:P')}")
    header = ["variant", "lookups", "wall s", "lookups/s", "p50 ms", "p99 ms", "checks/s",
              "service CPU ms/lookup", "cache hits/lookup", "API max conc", "wrong/failed"]  # fmt: skip
    print(table(header, list(_rows(runs))))
    print("  checks/s: order-API requests the service sent (retries included; identical checks")
    print("  of concurrent lookups share one request); 'API max conc': the mock's high-water")
    print(f"  mark of requests at once (cap {MAX_IN_FLIGHT}); service CPU from /proc (Linux).")
    bad = [r.name for r in runs if r.wrong or r.failed]
    if bad:
        raise SystemExit(f"wrong or failed lookups in: {', '.join(bad)}")


if __name__ == "__main__":
    run()
