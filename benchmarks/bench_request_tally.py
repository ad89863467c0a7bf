"""What does counting each request for the in-process anomaly bands add to the middleware?

Usage: python benchmarks/bench_request_tally.py [--rounds 7] [--requests 20000]

The request middleware (api/middleware.py) around a trivial ASGI app that answers 200, driven
in process without a server, alternately without and with a ``RequestTally``: CPU time of the
process per request (``time.process_time``; the host is shared), median and range over the
rounds; and ``RequestTally.add`` alone. The difference is what the tally adds per request.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from prometheus_client import CollectorRegistry

from nexus_ml.api.middleware import RequestMiddleware
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.monitoring.request_tally import RequestTally

SCOPE = {"type": "http", "method": "GET", "path": "/health", "headers": [], "root_path": ""}


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _send(message: Any) -> None:
    return None


async def _drive(middleware: RequestMiddleware, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        await middleware(dict(SCOPE), _receive, _send)
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    metrics = build_metrics(CollectorRegistry())
    variants = {
        "middleware without tally": RequestMiddleware(_app, metrics),
        "middleware with tally": RequestMiddleware(_app, metrics, tally=RequestTally()),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    tally = RequestTally()
    add: list[float] = []
    for _ in range(args.rounds):
        for name, middleware in variants.items():  # alternated, side by side
            times[name].append(asyncio.run(_drive(middleware, args.requests)))
        start = time.process_time()
        for i in range(args.requests):
            tally.add(200, 0.004 + (i % 7) * 0.01)
        add.append((time.process_time() - start) / args.requests * 1e6)
    load = open("/proc/loadavg").read().split()[:3]  # noqa: SIM115 - one read
    print(f"host load (1, 5, 15 min): {' '.join(load)}")
    print("| variant | µs CPU per request, median | range |\n|---|---:|---:|")
    for name, values in [*times.items(), ("RequestTally.add alone", add)]:
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f}–{max(values):.2f} |")


if __name__ == "__main__":
    main()
