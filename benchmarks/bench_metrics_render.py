"""How long does /metrics take to render: prometheus_client's encoders vs ours?

Run: ``python benchmarks/bench_metrics_render.py [--rounds 31] [--workers 2]``.

Cases: one process (the registry) and N spawned workers (their multiprocess
files), each in the text format and in OpenMetrics. Both sides do a full
``/metrics`` render: negotiation, dead-worker check, merge, encoding. Figures
are the median wall time over interleaved rounds (prometheus_client, then ours,
alternating), so drift in CPU frequency hits both alike. "identical" says
whether the two bodies are byte-for-byte equal. Budget: 5 ms with 2 workers.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decorator import populate  # production-like cardinality, every metric

from nexus_ml.monitoring.exposition import render_metrics
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.monitoring.multiproc import mark_dead_workers, prepare_multiproc_dir

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
Render = Callable[[], bytes]


def prometheus_client_render(
    registry: CollectorRegistry, accept: str | None, folder: Path | None
) -> bytes:
    """What render_metrics did before the fast encoders: prometheus_client end to end."""
    encoder, _ = choose_encoder(accept or "")
    if folder is None:
        return encoder(registry)
    fresh = CollectorRegistry()
    MultiProcessCollector(fresh, path=str(folder))
    mark_dead_workers(folder)
    return encoder(fresh)


def interleaved(theirs: Render, ours: Render, rounds: int) -> tuple[float, float]:
    """Median ms per render of (theirs, ours), alternating."""
    theirs(), ours()  # warm-up: caches, first-call resolution
    a, b = [], []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        theirs()
        a.append(time.perf_counter_ns() - start)
        start = time.perf_counter_ns()
        ours()
        b.append(time.perf_counter_ns() - start)
    return statistics.median(a) / 1e6, statistics.median(b) / 1e6


def _worker(seed: int, ready: Any) -> None:
    populate(build_metrics(CollectorRegistry()), seed)
    ready.set()
    time.sleep(600)


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    single = build_metrics(CollectorRegistry())
    populate(single, 1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mp_dir = prepare_multiproc_dir(Path(tmp) / "prom")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)  # children only: spawned after
        ctx = mp.get_context("spawn")
        procs = []
        try:
            for seed in range(1, args.workers + 1):
                ready = ctx.Event()
                proc = ctx.Process(target=_worker, args=(seed, ready), daemon=True)
                proc.start()
                if not ready.wait(60):
                    raise RuntimeError("worker did not start")
                procs.append(proc)
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            workers = f"{args.workers} workers (files)"
            cases: list[tuple[str, CollectorRegistry, str | None, Path | None]] = [
                ("1 process, text", single.registry, None, None),
                ("1 process, OpenMetrics", single.registry, OPENMETRICS, None),
                (f"{workers}, text", CollectorRegistry(), None, mp_dir),
                (f"{workers}, OpenMetrics", CollectorRegistry(), OPENMETRICS, mp_dir),
            ]
            for label, registry, accept, folder in cases:

                def theirs(r: Any = registry, a: Any = accept, f: Any = folder) -> bytes:
                    return prometheus_client_render(r, a, f)

                def ours(r: Any = registry, a: Any = accept, f: Any = folder) -> bytes:
                    return render_metrics(r, a, f)[0]

                their_ms, our_ms = interleaved(theirs, ours, args.rounds)
                body = ours()
                rows.append((label, their_ms, our_ms, body == theirs(), series(body)))
        finally:
            for proc in procs:
                proc.terminate()
                proc.join()

    print(f"Median of {args.rounds} interleaved rounds, wall ms per /metrics render.\n")
    print("| case | prometheus_client ms | nexus_ml ms | speed-up | identical | series |")
    print("|---|---:|---:|---:|:---:|---:|")
    for label, their_ms, our_ms, same, count in rows:
        speedup = their_ms / our_ms
        print(
            f"| {label} | {their_ms:.2f} | {our_ms:.2f} | {speedup:.1f}x | "
            f"{'yes' if same else 'NO'} | {count} |"
        )


if __name__ == "__main__":
    main()
