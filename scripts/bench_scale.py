"""The service on 1, 2 and 4 processes: lookups/s under 50 concurrent clients, side by side.

The same load as ``bench_service`` (50 client tasks, each POSTing ``/v1/lookups`` one
after the other with the cheap demo masks, after one warm-up lookup per client; up to
:data:`LOOKUPS` lookups or :data:`TIME_CAP` seconds per row), against the mock order API
in a subprocess, with the result cache on (default) and off (``LOOKUP_CACHE_TTL=0``):

* ``1 process``: ``lookup serve`` as today (no gunicorn, no Redis);
* ``N workers``: ``lookup serve --workers N --shared redis://...`` on a fresh
  ``redis-server`` (loopback, temp folder), the quota with no ceiling (``--rate none``).

Ratios are to the 1-process row of the same cache setting. On a 2-core machine the
clients, the mock and Redis share the cores with the workers: 4 workers cannot be twice 2.

    python scripts/bench.py scale      # or: python scripts/bench_scale.py

Then the shared limiter's overhead per check against the local one (``bench_shared``) and
batch checks/s locally against Ray with two workers (``bench_ray``). More service rows:
append a :class:`Variant` to :func:`variants`.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

from _benchlib import MockServer, shown_command, table
from bench_service import CLIENTS, ServiceProcess, _drive

LOOKUPS = 1_500
TIME_CAP = 8.0
CACHE: dict[str, dict[str, str]] = {"cache on": {}, "cache off": {"LOOKUP_CACHE_TTL": "0"}}


@dataclass(frozen=True)
class Variant:
    """One row: how many workers, whether through the shared quota, extra arguments."""

    name: str
    workers: int = 1
    shared: bool = False
    extra: tuple[str, ...] = ()


@dataclass
class Row:
    variant: Variant
    cache: str
    lookups: int
    wall: float
    latencies: list[float] = field(repr=False)
    checks: int
    failed: int
    command: str

    @property
    def rate(self) -> float:
        return self.lookups / self.wall if self.wall else 0.0


def variants() -> list[Variant]:
    """The rows measured, in order (the first is the baseline of the ratios)."""
    return [
        Variant("1 process"),
        Variant("2 workers", workers=2, shared=True),
        Variant("4 workers", workers=4, shared=True),
    ]


def _argv(variant: Variant, shared_url: str | None) -> list[str]:
    more = ["--workers", str(variant.workers)] if variant.workers != 1 else []
    if variant.shared:
        assert shared_url is not None
        more += ["--shared", shared_url]
    return [*more, *variant.extra]


def measure(variant: Variant, cache: str, mock: MockServer, shared_url: str | None) -> Row:
    """One row: a fresh service process (or gunicorn master) driven by the 50 clients."""
    service = ServiceProcess(mock.orders_url, CACHE[cache])
    service.argv += _argv(variant, shared_url)
    service.command = shown_command(service.argv)
    with service:
        wall, latencies, counts, _cpu = asyncio.run(_drive(service, LOOKUPS, TIME_CAP))
    if service.exit_code != 0:
        raise SystemExit(f"{service.command} exited {service.exit_code}:\n{service.stderr_tail}")
    return Row(variant, cache, len(latencies), wall, latencies, counts["checks"],
               counts["failed"] + counts["wrong"], service.command)  # fmt: skip


@contextlib.contextmanager
def _redis() -> Iterator[str | None]:
    from support.redis_fixture import RedisServer, find_redis

    binary = find_redis()
    if binary is None:
        print("  (no redis-server: the --workers rows are left out)")
        yield None
        return
    server = RedisServer(binary).start()
    try:
        yield server.url
    finally:
        server.cleanup()


def _p(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _lines(rows: list[Row]) -> list[list[str]]:
    base = {r.cache: r.rate for r in rows if r.variant == rows[0].variant}
    out = []
    for r in rows:
        ratio = r.rate / base[r.cache] if base.get(r.cache) else float("nan")
        out.append([r.variant.name, r.cache, f"{r.lookups:,}", f"{r.rate:,.0f}", f"{ratio:.2f}x",
                    f"{_p(r.latencies, 50) * 1000:.1f}", f"{_p(r.latencies, 99) * 1000:.1f}",
                    f"{r.checks / r.wall:,.0f}", str(r.failed)])  # fmt: skip
    return out


def run() -> None:
    print(f"== scale ({CLIENTS} concurrent clients, demo masks; up to {LOOKUPS:,} lookups or "
          f"{TIME_CAP:g} s per row; 1 process vs --workers N on a shared quota)")  # fmt: skip
    rows: list[Row] = []
    with MockServer() as mock, _redis() as shared_url:
        print(f"  mock:    {mock.command}")
        for variant in variants():
            if variant.shared and shared_url is None:
                continue
            for cache in CACHE:
                rows.append(measure(variant, cache, mock, shared_url))
        for r in rows:
            if r.cache == "cache on":
                shown = r.command.replace(mock.url, "http://127.0.0.1:P")
                print(f"  {r.variant.name}: {shown.replace(shared_url or '-', 'redis://R')}")
    rows.sort(key=lambda r: (r.cache, variants().index(r.variant)))
    header = ["variant", "cache", "lookups", "lookups/s", "vs 1", "p50 ms", "p99 ms",
              "checks/s", "failed"]  # fmt: skip
    print(table(header, _lines(rows)))
    print("  'vs 1': lookups/s over the first row with the same cache setting; checks/s:")
    print("  order-API requests sent (identical checks of concurrent lookups share one).")
    import bench_shared

    bench_shared.run()
    try:
        import bench_ray
        import ray  # noqa: F401 - the [ray] extra
    except ImportError:
        print("\n== batch on Ray: SKIPPED (pip install '.[ray]')")
    else:
        print()
        bench_ray.main()
    if any(r.failed for r in rows):
        raise SystemExit("wrong or failed lookups: see the 'failed' column")


if __name__ == "__main__":
    run()
