"""Batch checks/s: local (one process) against Ray with two workers, unlimited mock server.

    python scripts/bench_ray.py            # or, from scripts/bench.py scale: ray_rows()

The 1,000 rows of ``bench_batch`` (100 candidates each, 95 % with a planted order within
the first 20) go through :func:`lookup.files.run.run_file` twice per latency, against the
mock order API in its own process (no rate limit) at 0 ms and at 20 ms: once on the local
engine (one checker, ``--lookups-in-flight 8``), once on a local Ray cluster of two
workers (two actors, each one checker with 8 lookups in flight). Same settings both sides
(``max_in_flight`` 100 per checker, no rate ceiling, no cache); the same answers are
checked row by row. The clock runs from the first row to the output written: Ray's
start-up (a few seconds, once per cluster) is shown apart, not counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from _benchlib import ROOT, MockServer, stats_delta, table, write_orders

LATENCIES = (0, 20)
ACTORS = 2
LOOKUPS_IN_FLIGHT = 8
# what varies with concurrency (how many numbers went before the hit), not the answer
TIMING = ("elapsed_ms", "checks_sent", "numbers_checked", "requests")


def _settings(url: str) -> Any:
    from lookup.runtime.settings import load_settings

    return load_settings(api_url=url, rate="none", max_in_flight=100, cache_ttl=0)


def _answers(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


async def _local(server: MockServer, src: Path, out: Path) -> tuple[int, float]:
    from lookup.files.run import run_file
    from lookup.runtime.engine import open_engine

    settings = _settings(server.orders_url)
    async with open_engine(settings) as engine:
        before = server.stats()
        t = time.perf_counter()
        await run_file(src, out, engine=engine, settings=settings,
                       lookups_in_flight=LOOKUPS_IN_FLIGHT)  # fmt: skip
        wall = time.perf_counter() - t
    return stats_delta(before, server.stats())["orders_requests"], wall


async def _ray(server: MockServer, src: Path, out: Path) -> tuple[int, float]:
    from lookup.cli.batch import actor_engine
    from lookup.files.run import run_file
    from lookup.scale.ray.batch import open_ray_runner

    settings = _settings(server.orders_url)
    factory = partial(actor_engine, settings)
    async with open_ray_runner(factory, actors=ACTORS, lookups_in_flight=LOOKUPS_IN_FLIGHT) as runner:  # fmt: skip
        before = server.stats()
        t = time.perf_counter()
        await run_file(src, out, runner=runner, settings=settings)
        wall = time.perf_counter() - t
    return stats_delta(before, server.stats())["orders_requests"], wall


def ray_rows() -> list[list[str]]:
    """One table row per latency: checks, local checks/s, Ray checks/s, Ray / local."""
    import ray
    from bench_batch import make_cases

    from lookup.scale.ray.batch import start_ray

    rows, orders = make_cases()
    logging.getLogger("ray").setLevel(logging.ERROR)
    t = time.perf_counter()
    start_ray(ray, partial(ray.init, num_cpus=ACTORS, log_to_driver=False, namespace="lookup",
                           logging_level="ERROR", configure_logging=False))  # fmt: skip
    startup = time.perf_counter() - t
    out: list[list[str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
            folder = Path(tmp)
            orders_file = write_orders(folder / "orders.csv", orders)
            src = folder / "in.csv"
            with src.open("w", encoding="utf-8") as stream:
                stream.write("id,mask,city\n")
                stream.writelines(f"{r['id']},{r['mask']},{r['city']}\n" for r in rows)
            for latency in LATENCIES:
                with MockServer(orders=orders_file, latency_ms=latency) as server:
                    local_out, ray_out = folder / f"l{latency}.jsonl", folder / f"r{latency}.jsonl"
                    lc, lw = asyncio.run(_local(server, src, local_out))
                    rc, rw = asyncio.run(_ray(server, src, ray_out))
                same = _answers(local_out) == _answers(ray_out)
                out.append([f"{latency} ms", f"{lc:,} / {rc:,}", f"{lc / lw:,.0f}",
                            f"{rc / rw:,.0f}", f"{(rc / rw) / (lc / lw):.2f}x",
                            "yes" if same else "NO"])  # fmt: skip
    finally:
        ray.shutdown()
    out.append([f"(Ray start-up {startup:.1f} s, not counted)", "", "", "", "", ""])
    return out


def main() -> None:
    print(f"== batch on Ray: {ACTORS} workers vs local, unlimited mock, 1,000 rows")
    started = time.perf_counter()
    rows = ray_rows()
    print(table(["latency", "checks local / ray", "local checks/s", "ray checks/s",
                 "ray / local", "same answers"], rows))  # fmt: skip
    print(f"bench time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
