"""The ``[fast]`` extra (uvloop + orjson): ``find`` against hand-written loops, and the strict
answer parser on both paths.

    python scripts/bench.py fast
    python scripts/bench_fast.py [--runs 5] [--wait-quiet SECONDS]

One run, side by side, on the mock order API (``python -m lookup.mockapi`` in its own
process, 0 ms latency, no orders: all 10,000 candidates of ``138****2046`` answered 0):

* plain loop: one aiohttp session, 100 workers, ``resp.json()`` on asyncio;
* hand-tuned loop: the same on uvloop, answers read with ``orjson.loads``;
* ``find`` on asyncio with the standard library's strict parser (no ``[fast]``);
* ``find[fast]``: the CLI's loop (``lookup.runtime.loop.run``: uvloop) and the strict parser
  on orjson (what ``pip install '.[fast]'`` gives).

``find`` runs with ``Limits(max_in_flight=100, max_per_second=None, cache_ttl=0)`` like the
engine section. Medians of ``--runs`` interleaved runs; CPU = client ``process_time()`` per
check. Target (issue "Cost per check"): ``find[fast]`` CPU per check <= the hand-tuned loop's.

The parser table times one answer, ``{"phone":"13800000000","total":0}`` and a 100-number
batch answer, through each parser (best of 7 repeats, µs per answer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import timeit
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

import aiohttp
from _benchlib import MockServer, median, shown_command, table, write_orders
from bench_engine import IN_FLIGHT, MASK, Options, Variant, find_variant, hand_variant, measure

from lookup.domain import jsonfast
from lookup.domain.tiers import plan
from lookup.orders import http as http_module
from lookup.orders import httpbody
from lookup.runtime.loop import run as run_loop

TARGET = 1.0
"""find[fast] CPU per check over the hand-tuned loop's."""


async def tuned_variant(url: str, phones: Sequence[str]) -> tuple[int, str]:
    """The hand-written loop tuned by hand: answers read with ``orjson.loads`` (run it on
    uvloop)."""
    import orjson

    loads = orjson.loads
    checked = 0
    hit = ""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:
        it = iter(phones)

        async def worker() -> None:
            nonlocal checked, hit
            for phone in it:
                async with session.get(url.replace("{phone}", phone)) as resp:
                    data = loads(await resp.read())
                checked += 1
                if data["total"] > 0:
                    hit = hit or phone

        async with asyncio.TaskGroup() as tg:
            for _ in range(IN_FLIGHT):
                tg.create_task(worker())
    return checked, hit or "not_found"


def _uvloop_run(coro: object) -> tuple[int, str]:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)  # type: ignore[arg-type]


@contextlib.contextmanager
def _stdlib_json() -> Iterator[None]:
    """The HTTP source as it is without ``[fast]``: the standard library's parser and writer."""
    with (
        mock.patch.object(http_module, "parse_json", httpbody.parse_json_stdlib),
        mock.patch.object(http_module, "dumps", jsonfast.dumps_stdlib),
    ):
        yield


def _parse_table() -> str:
    single = b'{"phone":"13800000000","total":0}'
    batch = json.dumps({"results": {f"138{i:08d}": i % 3 for i in range(100)}}).encode()
    import orjson

    parsers = [
        ("strict, standard library", httpbody.parse_json_stdlib),
        ("strict, orjson ([fast])", httpbody.parse_json_orjson),
        ("orjson.loads, not strict", orjson.loads),
    ]
    rows = []
    for name, parse in parsers:
        cells = [name]
        for body, number in ((single, 20_000), (batch, 2_000)):
            assert parse(body) == json.loads(body)
            best = min(timeit.repeat(partial(parse, body), number=number, repeat=7))
            cells.append(f"{best / number * 1e6:.2f}")
        rows.append(cells)
    return table(["parser", "1 answer µs", "100-number batch µs"], rows)


def run(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    args = parser.parse_args(argv if argv is not None else [])
    if not jsonfast.ORJSON:
        raise SystemExit("bench fast needs the [fast] extra: pip install '.[fast]' (orjson)")
    import uvloop  # noqa: F401 - fail here, not in the middle of a run

    assert httpbody.parse_json is httpbody.parse_json_orjson
    print("\n== fast: [fast] (uvloop + orjson) vs hand-written loops, 0 ms latency, all negative")
    print("   the strict answer parser, per answer (best of 7):")
    print(_parse_table())
    phones = list(plan(MASK).tier("national"))
    with tempfile.TemporaryDirectory() as tmp:
        empty = write_orders(Path(tmp) / "empty_orders.csv")
        o = Options(runs=args.runs, client=shown_command([sys.executable, *sys.argv]),
                    tmp=Path(tmp), experiments=(), skip_naive=True, naive_bounded=False,
                    wait_quiet=args.wait_quiet)  # fmt: skip
        with MockServer(orders=empty) as server:
            url = server.orders_url
            print(f"   server: {server.command}")
            print(f"   {len(phones):,} candidates of {MASK}, {IN_FLIGHT} in flight; median of "
                  f"{o.runs} interleaved runs; CPU = client process_time() per check")  # fmt: skip
            variants = [
                Variant("plain loop (asyncio, json)",
                        lambda: asyncio.run(hand_variant(url, phones)), "not_found"),
                Variant("hand-tuned (uvloop, orjson)",
                        lambda: _uvloop_run(tuned_variant(url, phones)), "not_found"),
                Variant("find (asyncio, stdlib json)",
                        lambda: asyncio.run(find_variant(url, MASK)), "not_found",
                        patch=_stdlib_json),
                Variant("find[fast] (uvloop, orjson)",
                        lambda: run_loop(find_variant(url, MASK), use_uvloop=True), "not_found"),
            ]  # fmt: skip
            measure(server, variants, o)
    plain, tuned = variants[0], variants[1]
    rows = []
    for v in variants:
        rows.append([
            v.name, f"{v.med('rate'):,.0f}", f"{v.med('cpu_us'):.1f}",
            f"{v.med('cpu_us') / plain.med('cpu_us'):.2f}x",
            f"{v.med('cpu_us') / tuned.med('cpu_us'):.2f}x",
            "yes" if v.correct else "WRONG",
        ])  # fmt: skip
    print(table(["variant", "checks/s", "CPU µs/check", "CPU vs plain", "CPU vs tuned",
                 "right answer"], rows))  # fmt: skip
    ratio = variants[3].med("cpu_us") / tuned.med("cpu_us")
    verdict = "met" if ratio <= TARGET else f"missed by {ratio - TARGET:.2f}x"
    print(f"   target: find[fast] CPU <= {TARGET:.1f}x the hand-tuned loop's: {ratio:.2f}x, "
          f"{verdict}")  # fmt: skip
    others = [s.others_cores for v in variants for s in v.samples]
    others = [x for x in others if not math.isnan(x)]
    if others:
        print(f"   other processes on this machine: {median(others):.2f} cores median, "
              f"{max(others):.2f} max over the runs (the ratios are unreliable above 0.3)")


if __name__ == "__main__":
    run(sys.argv[1:])
