"""The desk page: submit-to-result vs the CLI, and a 1,000-row job vs ``lookup batch``.

    python scripts/bench.py web

Needs Debian's ``chromium`` and the ``playwright`` package (like the browser tests).

* one lookup: the demo's national case (``186****3357``, hint 杭州, 745 checks) against
  the bundled mock, from the click on 查找 to the result shown on the page, vs the same
  lookup through the CLI (``lookup find '186****3357' --city 杭州 --api demo``: wall time
  of the process, and the lookup's own time as the CLI reports it). The service's cache
  is off (``cache_ttl=0``) so every run sends every check, like a fresh CLI process.
* batch: the 1,000 rows of ``bench_batch`` (~25,000 checks) uploaded on the page as a
  job, from the click on 上传并开始 to the page showing 已完成 (the page polls every
  0.4 s), and the job's own time (created -> finished), vs ``lookup batch`` on the same
  file. Both: the same mock process, ``max_in_flight=100``, no rate ceiling, 8 lookups
  in flight, cache off. Checks are counted by the mock.
* a 100,000-row upload (2.6 MB CSV) to ``lookup serve`` in its own process, while a
  client asks ``/healthz`` every 10 ms: the upload's time and the worst ``/healthz``
  answer (the service reads the upload through in a thread; it must not stall the rest).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from _benchlib import ROOT, MockServer, median, spread, stats_delta, write_orders

RUNS = 5
TOKEN = "bench-token"
NATIONAL = ("186****3357", "杭州")


class _Service:
    def __init__(self, **settings: Any) -> None:
        from pydantic import SecretStr

        from lookup.runtime.settings import Settings

        self.settings = Settings(service_tokens=[SecretStr(TOKEN)], cache_ttl=0, **settings)
        self.url = ""
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or not self.url:
            raise RuntimeError("the service did not start")
        return self

    async def _main(self) -> None:
        from lookup.service.app import create_app, serving

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with serving(create_app(self.settings), "127.0.0.1", 0) as url:
                self.url = url
                self._ready.set()
                await self._stop.wait()
        finally:
            self._ready.set()

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


def _sign_in(page: Any, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/")
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    expect(page.locator("#token-status")).to_have_text("令牌有效，已保存在本标签页。")


def _page_lookup(page: Any) -> float:
    page.fill("#mask", NATIONAL[0])
    page.fill("#city", NATIONAL[1])
    t = time.perf_counter()
    page.click("#lookup-submit")
    page.wait_for_function(
        "() => !document.getElementById('lookup-result').hidden && "
        "document.querySelector('#result-status .label').textContent === '已找到'",
        timeout=60_000)  # fmt: skip
    return time.perf_counter() - t


def _cli_lookup() -> tuple[float, float]:
    argv = [sys.executable, "-m", "lookup", "find", NATIONAL[0], "--city", NATIONAL[1],
            "--api", "demo"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    found = re.search(r"sent \(.*\) in ([0-9.]+) s", proc.stdout)
    return wall, float(found.group(1)) if found else float("nan")


def _one_lookup(browser: Any) -> None:
    with _Service(api_url="demo") as service:
        page = browser.new_page(locale="zh-CN")
        _sign_in(page, service.url)
        _page_lookup(page)  # warm: imports, first connection
        page_times = [_page_lookup(page) for _ in range(RUNS)]
        page.close()
    cli = [_cli_lookup() for _ in range(RUNS)]
    print(f"national case {NATIONAL[0]} {NATIONAL[1]} (745 checks), median of {RUNS}:")
    print(f"  page, submit -> result shown   {median(page_times):6.3f} s  {spread(page_times)}")
    walls, own = [w for w, _ in cli], [o for _, o in cli]
    print(f"  CLI lookup find, process wall  {median(walls):6.3f} s  {spread(walls)}")
    print(f"  CLI lookup find, lookup only   {median(own):6.3f} s  {spread(own)}")


def _batch(browser: Any) -> None:
    from bench_batch import LOOKUPS_IN_FLIGHT, make_cases
    from playwright.sync_api import expect

    rows, orders = make_cases()
    with tempfile.TemporaryDirectory(prefix="bench_web_") as tmp:
        folder = Path(tmp)
        in_csv = folder / "in.csv"
        in_csv.write_text("id,mask,city\n" + "".join(
            f"{r['id']},{r['mask']},{r['city']}\n" for r in rows), "utf-8")  # fmt: skip
        with MockServer(orders=write_orders(folder / "orders.csv", orders)) as mock:
            with _Service(api_url=mock.orders_url, max_in_flight=100, rate=None,
                          service_jobs_dir=folder / "jobs") as service:  # fmt: skip
                page = browser.new_page(locale="zh-CN")
                _sign_in(page, service.url)
                before = mock.stats()
                page.set_input_files("#batch-file", str(in_csv))
                t = time.perf_counter()
                page.click("#batch-submit")
                expect(page.locator("li.job .job-state")).to_have_text("已完成", timeout=600_000)
                page_wall = time.perf_counter() - t
                job_checks = stats_delta(before, mock.stats())["orders_requests"]
                info = page.evaluate(
                    "async (tok) => (await (await fetch('/v1/jobs', {headers: "
                    "{Authorization: 'Bearer ' + tok}})).json()).jobs[0]", TOKEN)  # fmt: skip
                own = info["finished"] - info["created"]
                page.close()
            argv = [sys.executable, "-m", "lookup", "batch", str(in_csv), "--out",
                    str(folder / "out.jsonl"), "--api", mock.orders_url, "--max-in-flight",
                    "100", "--rate", "none", "--lookups-in-flight", str(LOOKUPS_IN_FLIGHT)]  # fmt: skip
            env = {**os.environ, "LOOKUP_CACHE_TTL": "0", "PYTHONPATH": str(ROOT)}
            before = mock.stats()
            t = time.perf_counter()
            subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=True)
            cli_wall = time.perf_counter() - t
            cli_checks = stats_delta(before, mock.stats())["orders_requests"]
    print(f"{len(rows):,}-row job ({job_checks:,} checks) vs lookup batch ({cli_checks:,}):")
    print(f"  page, upload -> 已完成 shown    {page_wall:6.2f} s  {job_checks / page_wall:8,.0f} checks/s")
    print(f"  job, created -> finished       {own:6.2f} s  {job_checks / own:8,.0f} checks/s")
    print(f"  lookup batch, process wall     {cli_wall:6.2f} s  {cli_checks / cli_wall:8,.0f} checks/s")


def _upload_stall() -> None:
    import aiohttp

    rows = "".join(f"r{i},138****{i % 10_000:04d},杭州\n" for i in range(100_000))
    data = ("id,mask,city\n" + rows).encode()
    token = "bench-token-0123456789"  # off loopback a token needs 16 characters

    async def measure(url: str) -> tuple[int, float, float, int]:
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(url, headers=auth) as session:
            worst, polls, done = 0.0, 0, False

            async def poll() -> None:
                nonlocal worst, polls
                while not done:
                    t = time.perf_counter()
                    async with session.get("/healthz") as resp:
                        await resp.read()
                    worst, polls = max(worst, time.perf_counter() - t), polls + 1
                    await asyncio.sleep(0.01)

            for _ in range(3):  # warm the connection pool
                async with session.get("/healthz") as resp:
                    await resp.read()
            poller = asyncio.create_task(poll())
            form = aiohttp.FormData()
            form.add_field("file", data, filename="big.csv", content_type="text/csv")
            t = time.perf_counter()
            async with session.post("/v1/jobs", data=form) as resp:
                status = resp.status
                await resp.read()
            took = time.perf_counter() - t
            done = True
            await poller
            return status, took, worst, polls

    with tempfile.TemporaryDirectory(prefix="bench_web_") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LOOKUP_SERVICE_TOKENS": token,
               "LOOKUP_SERVICE_JOBS_DIR": tmp}  # fmt: skip
        argv = [sys.executable, "-m", "lookup", "serve", "--api", "demo", "--port", "0",
                "--rate", "1"]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            url = ""
            for line in proc.stdout or ():
                if "listening on " in line:
                    url = line.split("listening on ", 1)[1].split()[0].rstrip("/")
                    break
            if not url:
                raise RuntimeError("lookup serve did not start")
            status, took, worst, polls = asyncio.run(measure(url))
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"100,000-row upload ({len(data) / 1e6:.1f} MB CSV), /healthz every 10 ms meanwhile:")
    print(f"  POST /v1/jobs -> {status}          {took:6.2f} s")
    print(f"  /healthz worst answer          {worst * 1000:6.0f} ms  ({polls} answers)")


def run() -> None:
    print("== web")
    _upload_stall()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("skipped: no playwright package (pip install -e '.[test]')")
        return
    if not Path(chromium).is_file():
        print("skipped: no chromium (apt-get install -y chromium)")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            _one_lookup(browser)
            _batch(browser)
        finally:
            browser.close()
