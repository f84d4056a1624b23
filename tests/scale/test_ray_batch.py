"""``lookup batch --engine ray``: rows on Ray actors, the journal on the driver.

A local Ray cluster of two workers (``num_cpus=2``, loopback, a temp folder) is started once
for the module; the CLI runs connect to it with ``--ray-address``. Without the ``[ray]``
extra these tests skip on a developer machine and fail when ``CI=true``. The mock order API
is the one of ``tests/test_batch.py`` (in-process, a background thread, loopback).
"""

from __future__ import annotations

import io
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from support.batches import (
    ROOT,
    ThreadedMock,
    _env,
    journal_lines,
    kill_once_journaled,
    mask_of,
    order_cases,
    read_jsonl,
    without_timing,
    write_csv,
)
from support.fakes import FakeTime

from lookup.cli.main import main
from lookup.files.run import run_file
from lookup.runtime.settings import load_settings
from lookup.scale.ray.batch import RAY_MISSING, RateTokens, open_ray_runner, start_ray

RAY_LIMITS = ("--rate", "none", "--max-in-flight", "32", "--deadline", "5")


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster of two workers for this module; yields its address."""
    try:
        import ray
    except ImportError:
        _missing("Ray is not installed: pip install -e '.[test]' (or '.[ray]')")
        raise AssertionError from None  # unreachable
    temp = tempfile.mkdtemp(prefix="lkray-")  # short: Ray's socket paths must stay short
    # The tool's own start: every Ray server on loopback, no dashboard.
    info = start_ray(ray, partial(ray.init, num_cpus=2, log_to_driver=False,
                                        namespace="lookup", _temp_dir=temp,
                                        logging_level="ERROR", configure_logging=False))  # fmt: skip
    try:
        yield str(info.address_info["gcs_address"])
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, grew = {root}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found - {root}


def _listening(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, "address:port") of every TCP socket the processes listen on (Linux /proc)."""
    listen: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":  # LISTEN
                listen[cols[9]] = cols[1]
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in listen:
                found.append((pid, listen[target[8:-1]]))
    return found


def _is_loopback_hex(local: str) -> bool:
    addr = local.split(":")[0]
    if len(addr) == 8:  # IPv4, little-endian: 0100007F is 127.0.0.1
        return addr.endswith("7F")
    # IPv6: ::1, or ::ffff:127.x.y.z (an IPv4-mapped loopback)
    return addr == "0" * 31 + "1" or (
        addr[:24] == "0000000000000000FFFF0000" and addr.endswith("7F")
    )


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_the_local_ray_listens_on_loopback_only(ray_cluster: str) -> None:
    import ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert ray_cluster.startswith("127.0.0.1:")
    sockets = _listening(_descendants(os.getpid()))
    assert len(sockets) >= 3, sockets  # the GCS, the raylet (two) at least
    assert [s for s in sockets if not _is_loopback_hex(s[1])] == []


@pytest.fixture
def mock() -> Iterator[ThreadedMock]:
    with ThreadedMock() as server:
        yield server


def rows_of(n: int) -> list[dict[str, str]]:
    cases = order_cases()[:n]
    assert len(cases) == n
    return [{"id": f"r{i}", "mask": mask_of(p), "city": c} for i, (p, c) in enumerate(cases)]


def argv(mock: ThreadedMock, *args: str | Path, limits: tuple[str, ...] = RAY_LIMITS) -> list[str]:
    return [sys.executable, "-m", "lookup", "batch", *map(str, args), "--api", mock.url, *limits]


def run_cli(mock: ThreadedMock, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(mock, *args), cwd=ROOT, capture_output=True, text=True,
                          encoding="utf-8", timeout=120, env=_env(), check=False)  # fmt: skip


def on_ray(address: str) -> tuple[str, ...]:
    return ("--engine", "ray", "--ray-address", address, "--ray-actors", "2")


def engine_factory(mock: ThreadedMock, **more: Any) -> Any:
    from lookup.cli.batch import actor_engine

    settings = load_settings(api_url=mock.url, max_in_flight=32, total_timeout=5.0, **more)
    return partial(actor_engine, settings), settings


# -- the token actor's budget, alone (no Ray needed) -----------------------------------------


def test_tokens_space_starts_under_the_ceiling_without_a_burst_after_idle() -> None:
    clock = FakeTime(100.0)
    tokens = RateTokens(10.0, clock=clock, headroom=0.0)
    delays = [tokens.reserve() for _ in range(5)]
    assert delays == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert tokens.reserve(max_wait=0.45) is None  # would start 0.5 s from now: not reserved
    clock.now += 60.0  # idle: no saved-up burst
    assert tokens.reserve() == 0.0
    assert tokens.reserve() == pytest.approx(0.1)


def test_tokens_throttle_lowers_once_per_window_and_retry_after_pauses_everyone() -> None:
    clock = FakeTime(100.0)
    tokens = RateTokens(20.0, clock=clock, headroom=0.0)
    for _ in range(10):
        tokens.reserve()
        clock.now += 0.05
    assert tokens.throttle(sent_ago=0.01, retry_after=None)
    lowered = tokens.rate
    assert lowered is not None and lowered < 20.0
    # An answer to a request sent before that decrease says nothing new.
    assert not tokens.throttle(sent_ago=0.5, retry_after=None)
    assert tokens.rate == lowered
    tokens.throttle(sent_ago=0.0, retry_after=2.0)
    _, paused_for = tokens.state()
    assert paused_for == pytest.approx(2.0)
    assert tokens.reserve() == pytest.approx(2.0)  # the first start after the pause


def test_tokens_increase_after_a_clean_interval_up_to_the_ceiling() -> None:
    clock = FakeTime(100.0)
    tokens = RateTokens(20.0, clock=clock, headroom=0.0)
    for _ in range(10):
        tokens.reserve()
        clock.now += 0.05
    tokens.throttle(sent_ago=0.0, retry_after=None)
    low = tokens.rate
    assert low is not None
    for _ in range(200):  # demand above the rate (held back), answers clean
        tokens.reserve()
        tokens.reserve()
        clock.now += 0.1
        tokens.note(clean=2)
    assert tokens.rate == 20.0 > low
    idle = RateTokens(20.0, clock=clock, headroom=0.0)
    idle.throttle(sent_ago=0.0, retry_after=None)
    before = idle.rate
    for _ in range(50):  # clean but never held back: nothing earns an increase
        idle.reserve()
        clock.now += 1.0
        idle.note(clean=1)
    assert idle.rate == before


# -- the engine ------------------------------------------------------------------------------


def test_without_ray_engine_ray_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    for name in ("lookup", "lookup.audit", "aiohttp"):  # in case main() configured them
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", list(logger.handlers))
        monkeypatch.setattr(logger, "propagate", logger.propagate)
        monkeypatch.setattr(logger, "level", logger.level)
    src = write_csv(tmp_path / "in.csv", rows_of(2))
    out, err = io.StringIO(), io.StringIO()
    code = main(["batch", str(src), "--out", str(tmp_path / "o.jsonl"), "--api",
                 "http://127.0.0.1:9/{phone}", "--engine", "ray"], stdout=out, stderr=err)  # fmt: skip
    assert code == 2
    assert err.getvalue() == f"lookup: error: {RAY_MISSING}\n"
    assert "pip install '.[ray]'" in err.getvalue()
    assert not (tmp_path / "o.jsonl.journal").exists()


def test_ray_output_is_identical_to_a_local_run(
    ray_cluster: str, mock: ThreadedMock, tmp_path: Path
) -> None:
    n = 30
    src = write_csv(tmp_path / "in.csv", rows_of(n))
    local = run_cli(mock, src, "--out", tmp_path / "local.jsonl")
    assert local.returncode == 0, local.stderr
    ray_run = run_cli(mock, src, "--out", tmp_path / "ray.jsonl", *on_ray(ray_cluster))
    assert ray_run.returncode == 0, ray_run.stderr
    assert f"{n} rows -> " in ray_run.stdout
    reference = read_jsonl(tmp_path / "local.jsonl")
    got = read_jsonl(tmp_path / "ray.jsonl")
    assert [r["row"] for r in got] == list(range(1, n + 1))
    assert without_timing(got) == without_timing(reference)
    assert {r["status"] for r in got} == {"matched"}
    assert os.stat(tmp_path / "ray.jsonl").st_mode & 0o777 == 0o600


async def test_an_actor_killed_mid_run_loses_no_row_and_repeats_none(
    ray_cluster: str, mock: ThreadedMock, tmp_path: Path
) -> None:
    import ray

    mock.configure(latency_ms=20)
    n = 40
    rows = rows_of(n)
    src = write_csv(tmp_path / "in.csv", rows)
    factory, settings = engine_factory(mock, rate="none")
    seen: list[int] = []
    killed = []
    async with open_ray_runner(factory, actors=2, lookups_in_flight=4) as runner:

        def on_result(result: Any) -> None:
            seen.append(result.row)
            if len(seen) == 8 and not killed:
                victim = runner.actors[0]
                ray.kill(victim, no_restart=True)
                killed.append(victim)

        done = await run_file(src, tmp_path / "out.jsonl", runner=runner, settings=settings,
                              on_result=on_result)  # fmt: skip
        assert runner.replacements_left == 1  # the lost actor was replaced once
    assert killed, "the run ended before an actor could be killed"
    assert sorted(seen) == list(range(1, n + 1))  # each row journaled exactly once
    final = read_jsonl(tmp_path / "out.jsonl")
    assert [r["row"] for r in final] == list(range(1, n + 1))
    assert [r["phone"] for r in final] == [p for p, _ in order_cases()[:n]]
    assert done.by_status["matched"] == n


async def test_the_token_actor_keeps_the_actors_together_under_the_rate(
    ray_cluster: str, mock: ThreadedMock, tmp_path: Path
) -> None:
    rate = 60.0
    src = write_csv(tmp_path / "in.csv", rows_of(8))
    factory, settings = engine_factory(mock, rate=rate)
    async with open_ray_runner(factory, actors=2, lookups_in_flight=4) as runner:
        before = mock.stats()["orders_requests"]
        t0 = time.monotonic()
        await run_file(src, tmp_path / "out.jsonl", runner=runner, settings=settings)
        elapsed = time.monotonic() - t0
        sent = mock.stats()["orders_requests"] - before
    # GCRA: the first start is free, then one per 1/rate s; a check sent just before the
    # end lands within a round trip. Two actors each at the full rate would send twice this.
    assert sent >= 40, "too few checks to measure a rate"
    assert sent <= math.floor(elapsed * rate) + 2, (sent, elapsed)
    # Paced, not stalled. Loose: the wall clock includes Ray's RPCs, which a loaded machine
    # stretches (with two busy processes on these 2 cores: 0.47 of the rate).
    assert sent >= 0.35 * elapsed * rate, (sent, elapsed)


def test_kill_9_of_the_driver_then_resume_gives_every_row_once(
    ray_cluster: str, mock: ThreadedMock, tmp_path: Path
) -> None:
    mock.configure(latency_ms=30)
    n = 60
    src = write_csv(tmp_path / "in.csv", rows_of(n))
    out = tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.journal"
    proc = subprocess.Popen(argv(mock, src, "--out", out, *on_ray(ray_cluster)), cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    kill_once_journaled(proc, journal, 10, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    done_lines = journal_lines(journal)[1:]
    assert 10 <= len(done_lines) < n, "killed mid-run"

    r = run_cli(mock, src, "--out", out, "--resume", *on_ray(ray_cluster))
    assert r.returncode == 0, r.stderr
    final = read_jsonl(out)
    assert [x["row"] for x in final] == list(range(1, n + 1))  # none lost, none repeated
    assert [x["phone"] for x in final] == [p for p, _ in order_cases()[:n]]
    final_lines = out.read_text("utf-8").splitlines()
    for line in done_lines:  # rows journaled before the kill are kept as they were
        assert line in final_lines
    assert f"({len(done_lines)} done before, from the journal)" in r.stdout
