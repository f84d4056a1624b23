"""The standalone mock order API: ``python -m lookup.mockapi`` or ``lookup mock-api``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from lookup.mockapi.faults import RateLimitStyle
from lookup.mockapi.server import DEFAULT_CONFIG, MockConfig, MockOrderServer

__all__ = ["main", "serve"]




async def serve(
    orders_file: str | Path | None = None,
    *,
    config: MockConfig = DEFAULT_CONFIG,
    host: str = "127.0.0.1",
    port: int = 8080,
    ready: Callable[[str], None] | None = None,
    allow_remote: bool = False,
) -> None:
    """Run the mock server until cancelled; ``ready(url)`` is called once it listens."""
    server = MockOrderServer(
        orders_file=orders_file, config=config, host=host, port=port, allow_remote=allow_remote
    )
    async with server:
        if ready is not None:
            ready(server.url)
        await asyncio.get_running_loop().create_future()  # until cancelled


async def _serve_until_signal(
    orders_file: str | None, config: MockConfig, host: str, port: int
) -> None:
    def ready(url: str) -> None:
        print(f"listening on {url}", flush=True)  # noqa: T201
        print(  # noqa: T201
            f"try: lookup find '138****2046' --city 杭州 --api '{url}/orders?phone={{phone}}'"
            "  (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )

    task = asyncio.create_task(serve(orders_file, config=config, host=host, port=port, ready=ready))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not JSON") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. {"code": 7}')
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text[:16]!r} is not a port: 0 to 65535 (0 picks one)")
    return port


def main(argv: list[str] | None = None, *, prog: str = "python -m lookup.mockapi") -> None:
    """``python -m lookup.mockapi``: serve synthetic orders with fault knobs until stopped."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Mock order API on loopback (synthetic data)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=_port, default=8080, help="0 picks a free port")
    parser.add_argument("--orders", metavar="FILE", help="CSV with header phone,total")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--jitter-ms", type=float, default=0)
    parser.add_argument("--error-rate", type=float, default=0)
    parser.add_argument("--reset-rate", type=float, default=0)
    parser.add_argument("--hang-rate", type=float, default=0)
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    parser.add_argument("--retry-after", type=float, default=None, help="seconds to send on 429")
    parser.add_argument(
        "--rate-limit-style",
        choices=get_args(RateLimitStyle),
        default="429",
        help="above --rate-limit: 429 with Retry-After, 429 without, or a 200 throttle body",
    )
    parser.add_argument(
        "--throttle-body",
        type=_json_object,
        default=None,
        metavar="JSON",
        help='the body of --rate-limit-style body (default {"code": 429, ...})',
    )
    parser.add_argument(
        "--outage-after",
        type=int,
        default=None,
        metavar="N",
        help="serve N order requests, then answer --outage-status for --outage-seconds",
    )
    parser.add_argument("--outage-seconds", type=float, default=10.0, metavar="S")
    parser.add_argument("--outage-status", type=int, default=503)
    parser.add_argument(
        "--outage-retry-after", type=float, default=None, help="Retry-After on outage answers"
    )
    parser.add_argument("--token", default=None, help="require Authorization: Bearer TOKEN")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        config = MockConfig(
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
            error_rate=args.error_rate,
            reset_rate=args.reset_rate,
            hang_rate=args.hang_rate,
            rate_limit=args.rate_limit,
            retry_after=args.retry_after,
            rate_limit_style=args.rate_limit_style,
            throttle_body=args.throttle_body,
            outage_after=args.outage_after,
            outage_seconds=args.outage_seconds,
            outage_status=args.outage_status,
            outage_retry_after=args.outage_retry_after,
            token=args.token,
            seed=args.seed,
        )
        asyncio.run(_serve_until_signal(args.orders, config, args.host, args.port))
    except (ValueError, OSError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        sys.exit(130)


if __name__ == "__main__":
    main()
