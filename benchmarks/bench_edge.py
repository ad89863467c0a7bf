"""Does a hostile request head stall the service? Huge headers and URLs, many headers, slow and
idle connections, against each HTTP protocol, with ``/health/live`` polled throughout.

Usage: python benchmarks/bench_edge.py [--http ours|httptools|h11] [--mib 32] [--slow 200]
                                       [--slow-seconds 15] [--header-timeout 10]

Starts the real service (``uvicorn --factory nexus_ml.api.asgi:app_from_env``, one process,
SQLite, the bundled models) with the chosen protocol: ``ours`` is
``nexus_ml.api.edge:BoundedHttpToolsProtocol`` (what ``nexus-ml serve`` runs), ``httptools`` and
``h11`` are uvicorn's own. Then, one at a time: one header of ``--mib`` MiB, a URL of ``--mib``
MiB, 20 000 small headers, ``--slow`` connections trickling a header line every second for
``--slow-seconds``, and as many idle connections. During each, a thread GETs ``/health/live``
on a fresh connection every 50 ms. Prints one row per attack: what the client got (status or
"closed"), after how long, how much of the request the server let in, and the liveness
latency (p50 / max, and failures).

Everything runs on 127.0.0.1, bounded in bytes, connections and time. The client shares the
host's cores with the server: latencies include its own scheduling.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the service and attack helpers live with the reliability tests

from tests.reliability.attacks import (  # noqa: E402
    LivenessProbe,
    SlowHeaders,
    big_header_request,
    long_url_request,
    many_headers_request,
    send_request,
)
from tests.reliability.service import (  # noqa: E402
    Service,
    free_port,
    percentile,
    service_env,
    uvicorn_command,
)

from nexus_ml.api.edge import PROTOCOL  # noqa: E402
from nexus_ml.ml.sources import ensure_bundled_models  # noqa: E402

PROTOCOLS = {"ours": PROTOCOL, "httptools": "httptools", "h11": "h11"}
MiB = 1 << 20


def _row(name: str, outcome: str, probe: LivenessProbe) -> str:
    lat = probe.latencies
    return (
        f"| {name} | {outcome} | {percentile(lat, 50) * 1000:.1f} ms | {probe.worst:.3f} s | "
        f"{probe.failures} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--http", choices=sorted(PROTOCOLS), default="ours")
    parser.add_argument("--mib", type=int, default=32, help="size of the huge header and URL")
    parser.add_argument("--slow", type=int, default=200, help="slow (and idle) connections")
    parser.add_argument("--slow-seconds", type=float, default=15.0)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    ensure_bundled_models(root / "models")
    port = free_port()
    env = service_env(
        models=root / "models",
        data_dir=root / "data",
        database_url=f"sqlite:///{root / 'nexus.db'}",
        ML_HEADER_TIMEOUT_SECONDS=str(args.header_timeout),
    )
    command = uvicorn_command(port, 5)
    command[command.index("--http") + 1] = PROTOCOLS[args.http]
    size = args.mib * MiB
    heads: list[tuple[str, Callable[[], bytes]]] = [
        (f"one {args.mib} MiB header", lambda: big_header_request("/health/live", size)),
        (f"{args.mib} MiB URL", lambda: long_url_request("/health/live", size)),
        ("20 000 headers", lambda: many_headers_request("/health/live", 20_000)),
    ]
    print(f"protocol: {PROTOCOLS[args.http]}, header timeout {args.header_timeout:g} s")
    print()
    print("| attack | client got | /health/live p50 | max | failed |")
    print("|---|---|---:|---:|---:|")
    with Service(command, env, port, root / "service.log") as svc:
        svc.start()
        with LivenessProbe(port, interval=0.05) as probe:
            time.sleep(2)
        print(_row("none (baseline, 2 s)", "—", probe))
        for name, make in heads:
            request = make()
            with LivenessProbe(port, interval=0.05) as probe:
                o = send_request(port, request, timeout=120)
            got = f"{o.status or 'closed'} after {o.seconds:.2f} s, {o.sent / MiB:.2f} MiB sent"
            print(_row(name, got, probe), flush=True)
        for name, start, interval in (
            (f"{args.slow} slow-header connections", None, 1.0),
            (f"{args.slow} idle connections", b"", None),
        ):
            slow = SlowHeaders(port, args.slow, interval=interval)
            if start is not None:
                slow.start = start
            with LivenessProbe(port, interval=0.05) as probe:
                slow.run(args.slow_seconds)
            closed = [t for t in slow.closed_after if t is not None]
            statuses = sorted({str(s or "none") for s in slow.statuses})
            got = f"{len(closed)}/{args.slow} closed within {args.slow_seconds:g} s" + (
                f" (after {min(closed):.1f}–{max(closed):.1f} s, answer {statuses})"
                if closed
                else ""
            )
            print(_row(name, got, probe), flush=True)


if __name__ == "__main__":
    main()
