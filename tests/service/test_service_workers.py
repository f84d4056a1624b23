"""``lookup serve --workers N``: gunicorn's aiohttp worker, started as a real process.

Each test runs ``python -m lookup serve --workers 2`` on a loopback port and talks to it
over HTTP; the order API behind it is the mock, in this test's event loop (to count and
slow its answers) or the bundled one (``--api demo``). Signals go to the master by pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest
from support.components import missing as _missing
from support.redis_fixture import RedisServer
from support.windows import most_in_window

from lookup.cli.main import main as cli_main
from lookup.mockapi.server import MockConfig, MockOrderServer

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
CITY_HIT = next(c for c in CASES if c["name"] == "city hit")  # 138****2046 in 杭州
START = 60.0  # seconds a start-up may take on a loaded 2-core machine


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


@pytest.fixture
def gunicorn() -> None:
    """gunicorn (the [workers] extra): skipped without it on a dev machine, fails in CI."""
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        _missing("gunicorn is not installed: pip install -e '.[test]'")


def lookup_body(case: dict[str, Any] = CITY_HIT) -> dict[str, Any]:
    return {"mask": case["mask"], **case["hints"]}


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``: ``{pid: command line}`` (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmd
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def workers_of(pid: int) -> set[int]:
    return {p for p, cmd in children(pid).items() if "lookup.mockapi" not in cmd}


class Served:
    """A ``lookup serve`` process: its start-up line, URL, and stderr (in a file)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = log
        self._err = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lookup", "serve", *args],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._err, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], START)
        self.line = self.proc.stdout.readline() if ready else ""
        if not self.line.startswith("lookup service listening on http://"):
            self.close()
            raise AssertionError(f"no start-up line: {self.line!r} {self.stderr()}")
        self.url = self.line.split()[4]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


@contextlib.contextmanager
def served(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    server = Served(args, log, env)
    try:
        yield server
    finally:
        server.close()


async def wait_workers(
    master: int, n: int, *, not_in: frozenset[int] | set[int] = frozenset()
) -> set[int]:
    """Wait (bounded) until ``master`` has ``n`` workers, none of them in ``not_in``."""
    limit = time.monotonic() + START
    while True:
        now = workers_of(master)
        if len(now) == n and not (now & not_in):
            return now
        assert time.monotonic() < limit, f"workers {now}, waiting for {n} not in {not_in}"
        await asyncio.sleep(0.05)  # polling a readiness condition (other processes), bounded


async def healthy(url: str) -> None:
    """Wait (bounded) until the service answers /healthz."""
    limit = time.monotonic() + START
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            assert time.monotonic() < limit, "no /healthz answer"
            await asyncio.sleep(0.05)  # bounded readiness polling


class Load:
    """``clients`` callers posting lookups in a loop until :meth:`stop`: every answer kept."""

    def __init__(
        self, url: str, clients: int = 4, cases: list[dict[str, Any]] | None = None
    ) -> None:
        self.url, self.clients = url, clients
        self.cases = cases or [CITY_HIT]
        self.answers: list[tuple[int, str]] = []
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._more = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._tasks = [
            asyncio.create_task(self._client(self.cases[i % len(self.cases)]))
            for i in range(self.clients)
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._session.close()

    async def _client(self, case: dict[str, Any]) -> None:
        body = lookup_body(case)
        while not self._stop.is_set():
            try:
                async with self._session.post(f"{self.url}/v1/lookups", json=body) as resp:
                    data = await resp.json(content_type=None)
                    self.answers.append((resp.status, str(data.get("status"))))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                self.failures.append(f"{time.time():.3f} {exc!r}")
            async with self._more:
                self._more.notify_all()

    async def wait_answers(self, n: int) -> None:
        """Wait (bounded) until ``n`` more answers arrived."""
        target = len(self.answers) + len(self.failures) + n
        async with asyncio.timeout(START), self._more:
            await self._more.wait_for(lambda: len(self.answers) + len(self.failures) >= target)


def serve_args(api: str, shared: str, *more: str) -> list[str]:
    return ["--api", api, "--port", "0", "--workers", "2", "--shared", shared,
            "--log-level", "INFO", *more]  # fmt: skip


# -- refusals ----------------------------------------------------------------------------


def test_more_than_one_worker_without_a_shared_quota_is_refused() -> None:
    out, err = io.StringIO(), io.StringIO()
    argv = ["serve", "--workers", "2", "--api", "demo", "--port", "0"]
    assert cli_main(argv, stdout=out, stderr=err) == 2
    text = err.getvalue()
    assert text.count("\n") == 1 and "Traceback" not in text, text
    assert "--shared redis://" in text and "LOOKUP_SHARED_URL" in text
    assert "each worker would bring its own --rate" in text
    assert out.getvalue() == ""


def test_workers_without_gunicorn_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gunicorn", None)  # import gunicorn -> ImportError
    monkeypatch.setenv("LOOKUP_SHARED_URL", "redis://127.0.0.1:1/0")
    out, err = io.StringIO(), io.StringIO()
    argv = ["serve", "--workers", "3", "--api", "demo", "--port", "0"]
    assert cli_main(argv, stdout=out, stderr=err) == 2
    text = err.getvalue()
    assert text.count("\n") == 1, text
    assert "pip install '.[workers]'" in text and "gunicorn" in text


def test_zero_workers_is_a_usage_error() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["serve", "--workers", "0", "--api", "demo"], stdout=out, stderr=err) == 2
    assert "--workers takes a whole number >= 1" in err.getvalue()


def test_a_busy_port_is_a_one_line_error_with_workers(gunicorn: None, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, "-m", "lookup", "serve", "--api", "demo", "--port", str(port),
             "--workers", "2", "--shared", "redis://127.0.0.1:1/0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1 port {port}" in proc.stderr
    assert proc.stdout == ""


# -- running -----------------------------------------------------------------------------


async def test_two_workers_share_one_bundled_demo_mock(
    gunicorn: None, redis_server: RedisServer, tmp_path: Path
) -> None:
    with served(serve_args("demo", redis_server.url), tmp_path / "err.log") as svc:
        line = svc.line
        assert "(order API: bundled demo order API at http://127.0.0.1:" in line
        assert "one for all workers" in line and line.rstrip().endswith("; 2 workers)")
        assert "shared quota at redis://127.0.0.1:" in line and not svc.url.endswith(":0")
        workers = await wait_workers(svc.pid, 2)
        mocks = [p for p, cmd in children(svc.pid).items() if "lookup.mockapi" in cmd]
        assert len(mocks) == 1, children(svc.pid)
        await healthy(svc.url)
        async with aiohttp.ClientSession() as session:

            async def one() -> tuple[int, dict[str, Any]]:
                async with session.post(f"{svc.url}/v1/lookups", json=lookup_body()) as resp:
                    return resp.status, await resp.json()

            answers = await asyncio.gather(*(one() for _ in range(12)))
            scraped = set()
            for _ in range(20):
                async with session.get(f"{svc.url}/metrics") as resp:
                    text = await resp.text()
                scraped |= {int(p) for p in _worker_info(text)}
            async with session.get(f"{svc.url}/v1/jobs") as resp:
                jobs = resp.status, await resp.json(content_type=None)
        assert all(s == 200 and a["phone"] == CITY_HIT["expected_phone"] for s, a in answers)
        assert jobs == (200, {"jobs": []}), jobs
        assert scraped <= workers and scraped
        assert svc.stop() == 0
        err = svc.stderr()
        assert not alive(mocks[0])  # the mock stopped with the master
    audit = [ln for ln in err.splitlines() if "lookup.audit" in ln]
    assert len(audit) == 12
    assert all(any(f"[worker {w}] lookup.audit" in ln for w in workers) for ln in audit)
    assert CITY_HIT["expected_phone"] not in err
    assert "Traceback" not in err and "Unclosed" not in err


def _worker_info(text: str) -> list[str]:
    prefix = 'lookup_service_worker_info{worker="'
    return [ln[len(prefix) :].split('"')[0] for ln in text.splitlines() if ln.startswith(prefix)]


@contextlib.asynccontextmanager
async def slow_mock(latency_ms: float) -> AsyncIterator[MockOrderServer]:
    async with MockOrderServer(config=MockConfig(latency_ms=latency_ms)) as mock:
        yield mock


async def test_sighup_replaces_the_workers_without_failing_a_request(
    gunicorn: None, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with slow_mock(5) as mock:
        args = serve_args(mock.orders_url, redis_server.url, "--rate", "none")
        with served(args, tmp_path / "err.log") as svc:
            old = await wait_workers(svc.pid, 2)
            await healthy(svc.url)
            async with Load(svc.url, clients=4) as load:
                await load.wait_answers(20)
                os.kill(svc.pid, signal.SIGHUP)
                new = await wait_workers(svc.pid, 2, not_in=old)
                await load.wait_answers(20)  # served by the new workers
            assert svc.stop() == 0
            err = svc.stderr()
    assert load.failures == [], load.failures[:3]
    assert len(load.answers) >= 40
    assert all(a == (200, "matched") for a in load.answers), set(load.answers)
    # Answers came from the old workers, then from the new ones (not necessarily from
    # each: the kernel hands connections to whichever worker accepts first).
    assert any(f"[worker {w}] lookup.audit" in err for w in old)
    assert any(f"[worker {w}] lookup.audit" in err for w in new)
    assert "Traceback" not in err


async def in_progress(url: str, want: int) -> None:
    """Wait (bounded) until the workers' ``lookup_lookups_in_progress`` add up to ``want``
    (a new connection per scrape, so that both workers answer some)."""
    seen: dict[str, float] = {}
    limit = time.monotonic() + START
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        while not (len(seen) == 2 and sum(seen.values()) == want):
            assert time.monotonic() < limit, seen
            async with session.get(f"{url}/metrics") as resp:
                text = await resp.text()
            (worker,) = _worker_info(text)
            line = next(
                ln for ln in text.splitlines() if ln.startswith("lookup_lookups_in_progress ")
            )
            seen[worker] = float(line.split()[1])


async def test_sigterm_lets_the_lookups_in_flight_finish(
    gunicorn: None, redis_server: RedisServer, tmp_path: Path
) -> None:
    async with slow_mock(1500) as mock:
        args = serve_args(mock.orders_url, redis_server.url, "--rate", "none")
        with served(args, tmp_path / "err.log") as svc:
            await wait_workers(svc.pid, 2)
            await healthy(svc.url)
            async with aiohttp.ClientSession() as session:

                async def one() -> tuple[int, str]:
                    async with session.post(f"{svc.url}/v1/lookups", json=lookup_body()) as r:
                        return r.status, (await r.json())["status"]

                tasks = [asyncio.create_task(one()) for _ in range(4)]
                await in_progress(svc.url, 4)  # every lookup is in a worker, waiting on the mock
                svc.proc.send_signal(signal.SIGTERM)
                answers = await asyncio.gather(*tasks)
                code = await asyncio.to_thread(svc.proc.wait, 40)
            err = svc.stderr()
    assert answers == [(200, "matched")] * 4
    assert code == 0
    assert err.count("lookup.audit") == 4
    assert "Traceback" not in err


async def test_two_workers_share_150_per_s(
    gunicorn: None, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The case: a server that answers 429 above 200 requests/s, two workers on a
    shared rate of 150/s: at most 155/s in every 5 s window, and no 429."""
    config = MockConfig(rate_limit=200, rate_limit_style="429-bare")
    async with MockOrderServer(config=config) as mock:
        args = serve_args(mock.orders_url, redis_server.url, "--rate", "150")
        args[args.index("--log-level") + 1] = "WARNING"  # no access line per lookup
        env = {"LOOKUP_CACHE_TTL": "0"}
        with served(args, tmp_path / "err.log", env) as svc:
            workers = await wait_workers(svc.pid, 2)
            await healthy(svc.url)
            mock.reset_stats()
            started = time.monotonic()
            # Lookups that need tens to hundreds of checks each, so the quota is the limit.
            cases = [c for c in CASES if c["name"] in ("province hit", "area code, city hit")]
            async with Load(svc.url, clients=16, cases=cases) as load:
                while time.monotonic() - started < 15:  # bounded: ~15 s of load
                    await load.wait_answers(10)
            spent = time.monotonic() - started
            arrivals = mock.arrivals
            stats = mock.stats
            assert svc.stop() == 0
            err = svc.stderr()
    assert load.failures == [], load.failures[:3]
    assert all(a == (200, "matched") for a in load.answers), set(load.answers)
    assert stats.statuses.get(429, 0) == 0 and stats.throttled == 0, stats.statuses
    assert most_in_window(arrivals, 5.0) <= 155 * 5, most_in_window(arrivals, 5.0)
    # The quota was the limit, not the clients: the two workers together near 150/s.
    assert len(arrivals) / spent > 100, (len(arrivals), spent, most_in_window(arrivals, 5.0))
    assert len(workers) == 2 and "Traceback" not in err


# -- jobs ---------------------------------------------------------------------------------

JOB_TOKENS = ["workers-job-token-one-0123456789", "workers-job-token-two-0123456789"]


def slow_rows(n: int, tag: str) -> bytes:
    """``n`` rows of 10 candidates each in 杭州's city tier, none with orders."""
    lines = ["id,mask,city"] + [f"{tag}{i},1380571{i:03d}*,杭州" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


async def test_jobs_under_two_workers_one_folder_one_runner_same_owners_and_caps(
    gunicorn: None, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"LOOKUP_SERVICE_JOBS_DIR": str(tmp_path / "jobs"),
           "LOOKUP_SERVICE_TOKENS": json.dumps(JOB_TOKENS),
           "LOOKUP_SERVICE_JOBS_PER_CALLER": "3"}  # fmt: skip
    # 50 checks/s one number a request: a 20-row job takes about 4 s
    args = serve_args("demo", redis_server.url, "--rate", "50", "--batch-size", "1")
    with served(args, tmp_path / "err.log", env) as svc:
        workers = await wait_workers(svc.pid, 2)
        await healthy(svc.url)
        # A new connection per request: gunicorn's workers take turns accepting them.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(svc.url, connector=connector) as session:

            def auth(i: int) -> dict[str, str]:
                return {"Authorization": f"Bearer {JOB_TOKENS[i]}"}

            async def upload(i: int, name: str, data: bytes) -> tuple[int, dict[str, Any]]:
                async with session.post("/v1/jobs", params={"name": name}, data=data,
                                        headers=auth(i)) as resp:  # fmt: skip
                    return resp.status, await resp.json(content_type=None)

            async def job_of(i: int, job_id: str) -> tuple[int, dict[str, Any]]:
                async with session.get(f"/v1/jobs/{job_id}", headers=auth(i)) as resp:
                    return resp.status, await resp.json(content_type=None)

            ones = [await upload(0, f"one-{n}.csv", slow_rows(20, f"o{n}-")) for n in range(3)]
            assert [s for s, _ in ones] == [201] * 3, ones
            refused = await upload(0, "one-3.csv", slow_rows(1, "x"))
            assert refused[0] == 429 and "at most 3 at once" in refused[1]["detail"], refused
            two = await upload(1, "two.csv", slow_rows(2, "t"))  # another caller: its own caps
            assert two[0] == 201, two
            ids = [j["id"] for _, j in ones]
            # Every worker lists the caller's jobs, and only the caller's.
            for _ in range(6):
                async with session.get("/v1/jobs", headers=auth(0)) as resp:
                    listed = {j["id"] for j in (await resp.json())["jobs"]}
                assert listed == set(ids)
                assert (await job_of(1, ids[0]))[0] == 404
            # Cancelled through whichever worker answers, although one worker runs them all.
            async with session.delete(f"/v1/jobs/{ids[2]}", headers=auth(0)) as resp:
                assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
            limit = time.monotonic() + START
            ended: dict[str, dict[str, Any]] = {}
            while len(ended) < 3:  # bounded polling of the jobs' state over HTTP
                for i, job_id in ((0, ids[0]), (0, ids[1]), (1, two[1]["id"])):
                    status, job = await job_of(i, job_id)
                    assert status == 200, job
                    if job["state"] in ("done", "cancelled", "failed"):
                        ended[job_id] = job
                assert time.monotonic() < limit, ended
                await asyncio.sleep(0.2)
            assert {j["state"] for j in ended.values()} == {"done"}
            assert all(j["started"] and j["finished"] for j in ended.values())
            async with session.get(f"/v1/jobs/{ids[0]}/results", params={"format": "csv"},
                                   headers=auth(0)) as resp:  # fmt: skip
                assert resp.status == 200
                table = (await resp.read()).decode("utf-8-sig").splitlines()
            assert len(table) == 21 and table[1].startswith("o0-0,")
            async with session.delete(f"/v1/jobs/{ids[0]}", headers=auth(0)) as resp:
                assert resp.status == 204
            assert (await job_of(0, ids[0]))[0] == 404
            assert (await upload(0, "again.csv", slow_rows(1, "a")))[0] == 201  # caps freed
        assert svc.stop() == 0
    err = svc.stderr()
    runners = [ln for ln in err.splitlines() if "runs the jobs of" in ln]
    assert len(runners) == 1 and any(f"[worker {w}]" in runners[0] for w in workers), runners
    admitted = {w for w in workers for ln in err.splitlines()
                if f"[worker {w}] lookup.jobs" in ln and " rows from " in ln}  # fmt: skip
    assert admitted  # (which workers accepted the uploads is the kernel's choice)
    assert "Traceback" not in err and "Unclosed" not in err


async def test_a_reload_hands_the_running_job_to_a_new_worker_that_finishes_it(
    gunicorn: None, redis_server: RedisServer, tmp_path: Path
) -> None:
    env = {"LOOKUP_SERVICE_JOBS_DIR": str(tmp_path / "jobs")}
    # 50 checks/s one number a request: 30 rows of 10 candidates take about 6 s
    args = serve_args("demo", redis_server.url, "--rate", "50", "--batch-size", "1")
    with served(args, tmp_path / "err.log", env) as svc:
        old = await wait_workers(svc.pid, 2)
        await healthy(svc.url)
        async with aiohttp.ClientSession(svc.url) as session:
            async with session.post("/v1/jobs", params={"name": "reload.csv"},
                                    data=slow_rows(30, "r")) as resp:  # fmt: skip
                assert resp.status == 201
                job_id = (await resp.json())["id"]

            async def job() -> dict[str, Any]:
                async with session.get(f"/v1/jobs/{job_id}") as resp:
                    assert resp.status == 200
                    data: dict[str, Any] = await resp.json()
                    return data

            limit = time.monotonic() + START
            while (await job())["done"] < 3:  # bounded: the job is under way
                assert time.monotonic() < limit
                await asyncio.sleep(0.1)
            os.kill(svc.pid, signal.SIGHUP)
            new = await wait_workers(svc.pid, 2, not_in=old)
            while (state := await job())["state"] not in ("done", "failed", "cancelled"):
                assert time.monotonic() < limit + START, state
                await asyncio.sleep(0.2)
            assert state["state"] == "done" and state["done"] == 30, state
            async with session.get(f"/v1/jobs/{job_id}/results",
                                   params={"format": "csv"}) as resp:  # fmt: skip
                ids = [ln.split(",")[0] for ln in (await resp.text()).splitlines()[1:]]
            assert ids == [f"r{i}" for i in range(30)]  # every row once, in order
        assert svc.stop() == 0
    err = svc.stderr()
    runners = [ln for ln in err.splitlines() if "runs the jobs of" in ln]
    assert len(runners) == 2, runners  # one old worker, then one new one
    assert any(f"[worker {w}]" in runners[0] for w in old)
    assert any(f"[worker {w}]" in runners[1] for w in new)
    assert any("resuming job" in ln for ln in err.splitlines())
    assert "Traceback" not in err
