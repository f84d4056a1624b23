"""Batch helpers: the mock order API in a thread, lookup batch as a subprocess, files."""

from __future__ import annotations

import asyncio
import csv
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest

from lookup.domain.segments import SegmentDB
from lookup.domain.tiers import plan
from lookup.mockapi.server import MockConfig, MockOrderServer

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
BY_NAME = {c["name"]: c for c in CASES}
QUICK = ["city hit", "area code, city hit", "province hit"]  # a few hundred checks at most
LIMITS = ("--rate", "none", "--max-in-flight", "32", "--deadline", "3")  # failing rows: 3 s
TIMING = ("elapsed_ms", "checks_sent", "numbers_checked", "requests")  # the only fields that differ between two runs
ELEVEN_DIGITS = re.compile(r"(?<!\d)1\d{10}(?!\d)")


# -- helpers ------------------------------------------------------------------------------------


class ThreadedMock:
    """The mock order API on loopback, served by an event loop in a background thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: MockOrderServer | None = None

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def __enter__(self) -> Self:
        self._thread.start()

        async def start() -> MockOrderServer:
            return await MockOrderServer().start()

        self.server = self._call(start())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self._call(self.server.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.orders_url

    def configure(self, **knobs: Any) -> None:
        server = self.server
        assert server is not None

        async def apply() -> None:
            server.config = MockConfig(**knobs)

        self._call(apply())

    def stats(self) -> dict[str, Any]:
        assert self.server is not None
        with urllib.request.urlopen(f"{self.server.url}/stats", timeout=10) as resp:
            data: dict[str, Any] = json.load(resp)
        return data


@pytest.fixture
def mock() -> Iterator[ThreadedMock]:
    with ThreadedMock() as server:
        yield server


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def batch_argv(mock: ThreadedMock, *args: str | Path, deadline: float | None = None) -> list[str]:
    """``lookup batch ARGS`` on the mock with :data:`LIMITS` (``deadline``: a longer one for a
    run whose rows all answer, so a loaded machine cannot make them inconclusive)."""
    longer = ("--deadline", f"{deadline:g}") if deadline is not None else ()
    return [sys.executable, "-m", "lookup", "batch", *map(str, args), "--api", mock.url, *LIMITS,
            *longer]  # fmt: skip


def run_batch_cli(
    mock: ThreadedMock, *args: str | Path, deadline: float | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        batch_argv(mock, *args, deadline=deadline),
        cwd=ROOT,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env=_env(),
        check=False,
    )


def write_csv(path: Path, rows: list[dict[str, str]], *, bom: bool = False) -> Path:
    columns = ["id", "mask", "city", "province", "area_code", "zip", "carrier"]
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def case_rows(names: list[str], n: int | None = None) -> list[dict[str, str]]:
    n = len(names) if n is None else n
    rows = []
    for i in range(n):
        case = BY_NAME[names[i % len(names)]]
        rows.append({"id": f"r{i + 1}", "mask": case["mask"], **case["hints"]})
    return rows


@functools.cache
def order_cases() -> list[tuple[str, str]]:
    """(phone, city) of demo orders whose mask ``138****1234`` with the city hint has
    exactly one hit, in a small city tier: many distinct rows with known answers."""
    with (ROOT / "data" / "demo_orders.csv").open(encoding="utf-8") as stream:
        phones = sorted(row["phone"] for row in csv.DictReader(stream))
    same_mask = Counter((p[:3], p[7:]) for p in phones)
    db = SegmentDB.default()
    found = []
    for phone in phones[::37]:
        info = db.segment(phone)
        if same_mask[phone[:3], phone[7:]] != 1 or info is None or not info.city or not info.standard:
            continue
        p = plan(mask_of(phone), db, city=info.city)
        if p.tier_of(phone) == "city" and p.tier("city").count <= 150:  # quick to find
            found.append((phone, info.city))
    return found


def mask_of(phone: str) -> str:
    return f"{phone[:3]}****{phone[7:]}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def journal_lines(path: Path) -> list[str]:
    """The complete lines of a journal (a torn last line left out), each row's record
    without its checksum (the header has none)."""
    text = path.read_text("utf-8") if path.exists() else ""
    lines = text.split("\n")[:-1]
    return lines[:1] + [line.rpartition("\t")[0] for line in lines[1:]]


def kill_once_journaled(proc: subprocess.Popen[bytes], journal: Path, rows: int,
                        timeout: float) -> None:  # fmt: skip
    """``kill -9`` the batch ``proc`` once its journal holds ``rows`` rows (bounded)."""
    try:
        deadline = time.monotonic() + timeout
        while len(journal_lines(journal)) < 1 + rows:
            assert proc.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, "no progress in the journal"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
