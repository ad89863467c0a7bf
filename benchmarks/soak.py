"""Soak: does the service stay correct, lean and fast under steady load for a long time?

Usage: python benchmarks/soak.py [--minutes 10] [--load 0.8] [--postgres] [--threads 8]

Starts the real service (uvicorn, one process, as ``make run``) on a fresh database, measures
its maximum throughput for a few seconds (closed loop, ``--threads`` clients flat out), then
sends single predictions at ``--load`` x that rate for ``--minutes``. Prints one row per
minute (requests, errors, achieved rate, latency p50/p95/p99, service RSS) and a summary:
errors by kind, RSS at the start (after warm-up and the probe) and end, its growth, and
whether every prediction the client received reached the database exactly once.

The client runs on the same machine: the maximum measured is that of client and service
together, and latency includes the client's own scheduling. Pacing is per thread; a thread
more than one slot late skips the missed slots (no catch-up burst), so under saturation the
load degrades to closed loop and latency understates queueing (coordinated omission): compare
the achieved rate with the target before reading the tail.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the service and load helpers live with the reliability tests

from tests.reliability.service import (  # noqa: E402
    Load,
    Result,
    Service,
    free_port,
    ok_ids,
    percentile,
    poll,
    service_env,
    stored_once,
    uvicorn_command,
)

from nexus_ml.ml.sources import ensure_bundled_models  # noqa: E402

POSTGRES_URL = os.environ.get(
    "NEXUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
WARMUP_SECONDS = 5.0
RSS_SAMPLE_SECONDS = 5.0


def _ms(seconds: float) -> float:
    return seconds * 1000


def per_minute(
    results: list[Result], begin: float, seconds: float, rss: dict[int, int]
) -> list[dict[str, float]]:
    """One row per minute of the run (the last requests, sent on the boundary, count in it)."""
    minutes = max(1, math.ceil(seconds / 60))
    buckets: list[list[Result]] = [[] for _ in range(minutes)]
    for r in results:
        buckets[min(minutes - 1, max(0, int((r.sent - begin) // 60)))].append(r)
    rows = []
    for m, part in enumerate(buckets):
        ok = [r.seconds for r in part if r.status == 200]
        rows.append(
            {
                "minute": m + 1,
                "requests": len(part),
                "errors": len(part) - len(ok),
                "rate": len(part) / min(60.0, seconds - m * 60),
                "p50_ms": _ms(percentile(ok, 50)),
                "p95_ms": _ms(percentile(ok, 95)),
                "p99_ms": _ms(percentile(ok, 99)),
                "rss_mb": rss.get(m, 0) / 2**20,
            }
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, object]:
    """The whole soak; returns the figures printed."""
    tmp = Path(tempfile.mkdtemp(prefix="nexus-soak-"))
    models = tmp / "models"
    ensure_bundled_models(models)
    schema = None
    if args.postgres:
        schema = f"soak_{secrets.token_hex(4)}"
        admin = create_engine(POSTGRES_URL, poolclass=NullPool)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        database_url = url.render_as_string(hide_password=False)
    else:
        database_url = f"sqlite:///{tmp / 'data' / 'nexus.db'}"
    port = free_port()
    env = service_env(
        models=models,
        data_dir=tmp / "data",
        database_url=database_url,
        ML_LOG_LEVEL="WARNING",
        ML_WRITER_FLUSH_SECONDS="0.5",  # the production default, not the tests' fast flush
    )
    service = Service(uvicorn_command(port, 20), env, port, tmp / "service.log")
    try:
        service.start()
        with Load(service.base, rate=100, max_seconds=WARMUP_SECONDS, threads=4) as warm:
            time.sleep(WARMUP_SECONDS)  # a fixed warm-up period, not a wait for a condition
        probe = Load(service.base, rate=0, max_seconds=args.probe_seconds, threads=args.threads)
        probe.start()
        time.sleep(args.probe_seconds)
        probed = probe.stop()
        max_rate = sum(r.status == 200 for r in probed) / args.probe_seconds
        target = max(1.0, args.load * max_rate)
        print(f"max throughput {max_rate:.0f}/s (closed loop, {args.threads} clients, "
              f"{args.probe_seconds:.0f} s); soak at {target:.0f}/s for {args.minutes} min",
              flush=True)  # fmt: skip

        seconds = args.minutes * 60
        rss_start = service.rss()
        n_minutes = max(1, math.ceil(args.minutes))
        rss_by_minute: dict[int, int] = {}
        rss_samples = [rss_start]
        load = Load(service.base, rate=target, max_seconds=seconds, threads=args.threads)
        begin = time.monotonic()
        load.start()
        # Bounded: the load stops itself after `seconds`; this loop too.
        while time.monotonic() - begin < seconds + 1:
            time.sleep(RSS_SAMPLE_SECONDS)
            rss = service.rss()
            rss_samples.append(rss)
            rss_by_minute[min(n_minutes - 1, int((time.monotonic() - begin) // 60))] = rss
        results = load.stop()
        rss_end = service.rss()
        rows = per_minute(results, begin, seconds, rss_by_minute)
        received = ok_ids([*warm.results, *probed, *results])
        stored = bool(
            poll(lambda: stored_once(database_url, received), timeout=120, what="all stored")
        )
        errors = Counter(r.error or str(r.status) for r in results if r.status != 200)
        ok = [r.seconds for r in results if r.status == 200]
        summary = {
            "max_rate": max_rate,
            "target_rate": target,
            "achieved_rate": len(results) / seconds,
            "requests": len(results),
            "errors": dict(errors),
            "p50_ms": _ms(percentile(ok, 50)),
            "p95_ms": _ms(percentile(ok, 95)),
            "p99_ms": _ms(percentile(ok, 99)),
            "rss_start_mb": rss_start / 2**20,
            "rss_end_mb": rss_end / 2**20,
            "rss_max_mb": max(rss_samples) / 2**20,
            "rss_growth_pct": 100 * (rss_end - rss_start) / rss_start,
            "all_received_stored_once": stored,
            "database": "postgresql" if args.postgres else "sqlite",
            "per_minute": rows,
        }
    finally:
        service.stop()
        if schema is not None:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()
    return summary


def print_report(s: dict[str, object]) -> None:
    """The per-minute table and the summary."""
    print(f"{'min':>3} {'requests':>9} {'errors':>6} {'rate/s':>7} "
          f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'RSS MB':>7}")  # fmt: skip
    for r in s["per_minute"]:  # type: ignore[attr-defined]
        print(
            f"{r['minute']:>3} {r['requests']:>9} {r['errors']:>6} {r['rate']:>7.0f} "
            f"{r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['rss_mb']:>7.1f}"
        )
    print(
        f"\n{s['requests']} requests on {s['database']} at {s['achieved_rate']:.0f}/s "
        f"(target {s['target_rate']:.0f}/s = load x max {s['max_rate']:.0f}/s); "
        f"errors: {s['errors'] or 'none'}\n"
        f"latency p50 {s['p50_ms']:.2f} ms, p95 {s['p95_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms\n"
        f"RSS start {s['rss_start_mb']:.1f} MB, end {s['rss_end_mb']:.1f} MB, "
        f"max {s['rss_max_mb']:.1f} MB, growth {s['rss_growth_pct']:+.1f} %\n"
        f"every received prediction stored exactly once: {s['all_received_stored_once']}"
    )


def main() -> None:
    """Parse arguments, run, print (and optionally save JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.8, help="share of measured max rate")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--probe-seconds", type=float, default=5.0)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    summary = run(args)
    print_report(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
