"""The multi-process test: two ``lookup batch`` processes share one quota in Redis.

The mock order API (in this test's loop) answers a bare 429 above 200 accepted
requests/s; both processes run ``--shared URL --rate 150`` over their own CSV of synthetic
masks (12 rows of 100 candidates each, every other row with an order at its last
candidate): ~2,400 checks, ~16 s at the shared rate. The server must see at most 155/s
over every 5 s window, no 429, and every row answered with its status. The second run
takes Redis away for 5 s in the middle: no 429 storm, every row completes, and each
process logs the fallback (WARNING) and the rejoin (INFO) once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from support.redis_fixture import RedisServer
from support.windows import most_in_window

from lookup.domain.tiers import plan
from lookup.mockapi.server import MockConfig, MockOrderServer

ROOT = Path(__file__).resolve().parents[2]
RATE = 150
SERVER_LIMIT = 200
ROWS = 12
WINDOW = 5.0
GUARD = 50.0  # seconds per run: a hang fails instead of blocking the suite
OUTAGE = 5.0


def workload(prefix: str) -> tuple[str, dict[str, str | None], dict[str, int]]:
    """CSV text, the expected phone per row id (``None``: not found) and the orders."""
    lines, expected, orders = ["id,mask"], {}, {}
    for i in range(ROWS):
        mask = f"{prefix}{i:02d}**{4400 + i:04d}"  # 100 national candidates
        row = f"{prefix}-{i}"
        lines.append(f"{row},{mask}")
        hit = list(plan(mask).tiers[2])[-1] if i % 2 == 0 else None
        expected[row] = hit
        if hit is not None:
            orders[hit] = 1 + i
    return "\n".join(lines) + "\n", expected, orders


async def run_two(
    tmp_path: Path, redis_server: RedisServer, *, outage: bool
) -> tuple[MockOrderServer, list[tuple[int, str]], dict[str, dict[str, str | None]]]:
    jobs = {name: workload(prefix) for name, prefix in (("a", "138"), ("b", "139"))}
    orders = {p: n for _, _, o in jobs.values() for p, n in o.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env |= {"PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}
    config = MockConfig(rate_limit=SERVER_LIMIT, rate_limit_style="429-bare")
    async with MockOrderServer(orders, config=config) as mock, asyncio.timeout(GUARD):
        procs = []
        for name, (csv, _, _) in jobs.items():
            (tmp_path / f"{name}.csv").write_text(csv, encoding="utf-8")
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "lookup", "batch", str(tmp_path / f"{name}.csv"),
                    "--out", str(tmp_path / f"{name}.jsonl"), "--api", mock.orders_url,
                    "--shared", redis_server.url, "--rate", str(RATE), "--shared-processes",
                    "2", "--log-level", "INFO", "--lookups-in-flight", "4",
                    cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )  # fmt: skip
        if outage:
            await mock.wait_for(lambda s: s.orders_requests >= 600)  # ~4 s into the run
            await asyncio.to_thread(redis_server.stop)
            await asyncio.sleep(OUTAGE)  # the outage's length, not synchronisation
            await asyncio.to_thread(redis_server.start)
        finished = []
        for proc in procs:
            out, err = await proc.communicate()
            finished.append((proc.returncode or 0, (out + err).decode("utf-8", "replace")))
    results = {}
    for name in jobs:
        records = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text("utf-8")
                   .splitlines()]  # fmt: skip
        results[name] = {r["id"]: r for r in records}
    for name, (_, expected, _) in jobs.items():
        got = results[name]
        assert set(got) == set(expected), f"{name}: missing rows"
        for row, phone in expected.items():
            want = ("matched", phone) if phone else ("not_found", None)
            assert (got[row]["status"], got[row]["phone"]) == want, (row, got[row])
    return mock, finished, results


async def test_two_batch_processes_keep_to_the_shared_rate(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    mock, finished, _ = await run_two(tmp_path, redis_server, outage=False)
    for code, text in finished:
        assert code == 0, text[-2000:]
        assert "unreachable" not in text
    stats = mock.stats
    arrivals = mock.arrivals
    assert stats.orders_requests == len(arrivals) >= 2 * ROWS * 100 * 0.9
    assert stats.status(429) == 0
    assert most_in_window(arrivals, WINDOW) <= 155 * WINDOW
    span = max(arrivals) - min(arrivals)
    assert len(arrivals) / span > 0.8 * RATE  # the budget was used, not just respected


async def test_redis_away_for_5_s_in_the_middle_of_two_batch_runs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    mock, finished, _ = await run_two(tmp_path, redis_server, outage=True)
    for code, text in finished:
        assert code == 0, text[-2000:]
        away = [line for line in text.splitlines() if "shared quota at" in line]
        warnings = [line for line in away if "unreachable" in line]
        infos = [line for line in away if "reachable again" in line]
        assert len(warnings) == 1 and len(infos) == 1, away
        assert "WARNING" in warnings[0] and "75/s" in warnings[0]
    stats = mock.stats
    assert stats.status(429) <= 5
    assert most_in_window(mock.arrivals, WINDOW) <= 155 * WINDOW
