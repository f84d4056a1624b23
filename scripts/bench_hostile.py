"""Hostile answers and wrong addresses, measured on loopback.

    python scripts/bench.py hostile
    python scripts/bench_hostile.py [--sections gzip,failfast,plan]

gzip: peak RSS of a ``lookup find`` process whose order API (an aiohttp server in this
script, on 127.0.0.1) answers every check with a ~1 MB gzip body that inflates to 1 GiB,
next to the same lookup against a plain ``{"total": 0}`` answer. The lookup must end
``api_error`` (an unexpected answer) in small memory.

failfast: seconds from start to the end of ``lookup find`` (exit 3, ``api_error``) against
a refused loopback port and a host under ``.invalid`` (never resolves).

plan: the first line ``lookup find '138****2046' --api demo --rate 20`` prints on stderr (the
demo has a batch endpoint: 100 numbers per request), the same with ``--batch-size 1`` (one
number per request), and the end of a lookup without a hit at ``--deadline 5``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
PHONE = "13857152046"


def _gzip_bomb(inflated: int = 1 << 30) -> bytes:
    """A gzip member of ``inflated`` spaces, built in 1 MiB steps (never 1 GiB in memory)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    parts = [deflater.compress(block) for _ in range(inflated >> 20)]
    parts.append(deflater.flush())
    return b"".join(parts)


def _serve(body: bytes, headers: dict[str, str]) -> tuple[int, threading.Event]:
    """An aiohttp server on 127.0.0.1 in a thread answering every request with ``body``."""
    ready: list[int] = []
    stop = threading.Event()
    started = threading.Event()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, headers=headers)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/orders", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        started.set()
        await asyncio.to_thread(stop.wait)
        await runner.cleanup()

    threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
    started.wait(30)
    return ready[0], stop


def _peak_rss(*args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``lookup`` in a child; (its result, its peak RSS in KiB from ``os.wait4``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    read_out, write_out = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: exec lookup with stdout and stderr on the pipe
        os.dup2(write_out, 1)
        os.dup2(write_out, 2)
        os.close(read_out)
        os.execve(sys.executable, [sys.executable, "-m", "lookup", *args], env)
    os.close(write_out)
    chunks = []
    while chunk := os.read(read_out, 65536):
        chunks.append(chunk)
    os.close(read_out)
    _, status, usage = os.wait4(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(args, code, text, ""), usage.ru_maxrss


def bench_gzip() -> None:
    t0 = time.perf_counter()
    bomb = _gzip_bomb()
    built = time.perf_counter() - t0
    print(f"gzip: a {len(bomb):,}-byte body inflating to 1 GiB (built in {built:.1f} s)")
    for name, body, headers in (
        ("plain {\"total\": 0}", b'{"total": 0}', {"Content-Type": "application/json"}),
        ("1 GiB gzip bomb", bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    ):
        port, stop = _serve(body, headers)
        try:
            result, rss = _peak_rss("find", PHONE, "--api",
                                    f"http://127.0.0.1:{port}/orders?phone={{phone}}")  # fmt: skip
        finally:
            stop.set()
        last = [ln for ln in result.stdout.splitlines() if ln.startswith(("api_error", "not found"))]
        print(f"  {name:<22} exit {result.returncode}  peak RSS {rss / 1024:6.1f} MiB  "
              f"{(last or ['?'])[0][:110]}")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def bench_failfast() -> None:
    for name, api in (
        ("refused loopback port", f"http://127.0.0.1:{_free_port()}/orders?phone={{phone}}"),
        ("unresolvable .invalid host", "http://orders.example.invalid:8080/orders?phone={phone}"),
    ):
        start = time.perf_counter()
        result, _ = _peak_rss("find", "138****2046", "--api", api)
        seconds = time.perf_counter() - start
        status = next((ln for ln in result.stdout.splitlines() if ln.startswith("api_error")), "?")
        print(f"failfast: {name:<27} exit {result.returncode} after {seconds:5.1f} s: "
              f"{status[:100]}")  # fmt: skip


def bench_plan() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKUP_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    base = [sys.executable, "-m", "lookup", "find", "--api", "demo", "--rate", "20"]
    for extra in ((), ("--batch-size", "1")):
        # the first stderr line only: the child is stopped once it is read
        child = subprocess.Popen([*base, "138****2046", *extra], cwd="/", env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert child.stderr is not None
        first = child.stderr.readline().strip() or "(nothing on stderr)"
        child.kill()
        child.wait()
        print(f"plan: `find '138****2046' --api demo --rate 20 {' '.join(extra)}` first stderr "
              f"line: {first}")  # fmt: skip
    r = subprocess.run([*base, "138****0001", "--batch-size", "1", "--deadline", "5"], cwd="/",
                       env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    ending = [ln for ln in r.stdout.splitlines() if ln.startswith(("inconclusive", "not found",
                                                                  "matched", "api_error"))]  # fmt: skip
    print(f"plan: `find '138****0001' ... --batch-size 1 --deadline 5` ends (exit {r.returncode}): "
          f"{(ending or ['?'])[0]}")


SECTIONS = {"gzip": bench_gzip, "failfast": bench_failfast, "plan": bench_plan}


def run(sections: str = "gzip,failfast,plan") -> None:
    for name in sections.split(","):
        SECTIONS[name.strip()]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    run(parser.parse_args().sections)


if __name__ == "__main__":
    main()
