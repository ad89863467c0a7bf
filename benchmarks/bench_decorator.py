"""What does monitoring cost per call? Decorators, label lookups, the middleware, /metrics.

Run: ``python benchmarks/bench_decorator.py [--rounds 21] [--batch 20000]``.

Each figure is the median over rounds of interleaved batches (plain, then
instrumented, alternating), so drift in CPU frequency hits both sides alike.
Overheads are CPU time (``time.process_time_ns``) per call, instrumented minus plain.
Budgets: decorator <= 4 us, middleware <= 30 us, /metrics render (2 workers) <= 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nexus_ml.api.middleware import RequestMiddleware
from nexus_ml.monitoring.decorators import monitor_prediction
from nexus_ml.monitoring.exposition import render_metrics
from nexus_ml.monitoring.metrics import Metrics, build_metrics
from nexus_ml.monitoring.multiproc import prepare_multiproc_dir

RESULT = {"predicted_class": "flu", "confidence": 0.87, "version": "3"}
Row = tuple[str, float, float, float, str]


def cpu_ns(fn: Callable[[], None]) -> int:
    start = time.process_time_ns()
    fn()
    return time.process_time_ns() - start


def interleaved(
    plain: Callable[[], None], instrumented: Callable[[], None], batch: int, rounds: int
) -> tuple[float, float]:
    """Median ns per call of (plain, instrumented) over interleaved batches."""
    plain(), instrumented()  # warm-up: first-call resolution, caches
    a, b = [], []
    for _ in range(rounds):
        a.append(cpu_ns(plain) / batch)
        b.append(cpu_ns(instrumented) / batch)
    return statistics.median(a), statistics.median(b)


def loop_of(fn: Callable[[], Any], batch: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(batch):
            fn()

    return run


def async_loop_of(fn: Callable[[], Any], batch: int) -> Callable[[], None]:
    async def many() -> None:
        for _ in range(batch):
            await fn()

    runner = asyncio.Runner()

    def run() -> None:
        runner.run(many())

    return run


def bench_decorators(batch: int, rounds: int) -> list[Row]:
    m = build_metrics(CollectorRegistry())

    def plain() -> dict[str, Any]:
        return RESULT

    async def aplain() -> dict[str, Any]:
        return RESULT

    decorated = monitor_prediction("diag", metrics=m)(plain)
    adecorated = monitor_prediction("diag", metrics=m)(aplain)
    rows = []
    p, d = interleaved(loop_of(plain, batch), loop_of(decorated, batch), batch, rounds)
    rows.append(("@monitor_prediction, def", p, d, d - p, "<= 4000"))
    p, d = interleaved(
        async_loop_of(aplain, batch), async_loop_of(adecorated, batch), batch, rounds
    )
    rows.append(("@monitor_prediction, async def", p, d, d - p, "<= 4000"))

    counter = m.model_predictions_total
    child = counter.labels("diag", "3", "flu")
    nothing = loop_of(lambda: None, batch)
    p, d = interleaved(
        nothing, loop_of(lambda: counter.labels("diag", "3", "flu").inc(), batch), batch, rounds
    )
    rows.append(("counter.labels(...).inc()", p, d, d - p, ""))
    p, d = interleaved(nothing, loop_of(child.inc, batch), batch, rounds)
    rows.append(("cached child.inc()", p, d, d - p, ""))
    p, d = interleaved(
        nothing, loop_of(lambda: counter.labels("diag", "3", "flu"), batch), batch, rounds
    )
    rows.append((".labels() lookup alone", p, d, d - p, ""))
    return rows


def bench_middleware(batch: int, rounds: int) -> list[Row]:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, Router

    m = build_metrics(CollectorRegistry())
    ok = PlainTextResponse("ok")

    async def endpoint(request: Any) -> PlainTextResponse:
        return ok

    # A real router in both variants, so the difference is the middleware alone.
    router = Router(
        routes=[Route(f"/r{i}/{{x}}", endpoint) for i in range(20)]
        + [Route("/api/v1/models/{name}/predict", endpoint)]
    )
    wrapped = RequestMiddleware(router, m)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/api/v1/models/diag/predict",
            "root_path": "",
            "headers": [],
            "query_string": b"",
        }

    def plain_call() -> Any:
        return router(scope(), receive, send)

    def wrapped_call() -> Any:
        return wrapped(scope(), receive, send)

    small = max(1, batch // 4)
    p, d = interleaved(
        async_loop_of(plain_call, small), async_loop_of(wrapped_call, small), small, rounds
    )
    return [("RequestMiddleware per request", p, d, d - p, "<= 30000")]


def populate(m: Metrics, seed: int) -> None:
    """Every metric, at production-like cardinality."""
    routes = [f"/api/v1/area{i}/{{id}}" for i in range(15)]
    for route in routes:
        for method in ("GET", "POST"):
            for status in ("200", "404", "500"):
                m.api_requests_total.labels(method, route, status).inc(seed)
            m.api_request_duration_seconds.labels(method, route).observe(0.01)
            m.response_size_bytes.labels(method, route).observe(500)
    features = [f"f{i}" for i in range(20)]
    for model in ("diagnostic", "triage"):
        for version in ("1", "2"):
            m.model_info.labels(model, version).set(1)
            m.model_holdout_accuracy.labels(model, version).set(0.9)
            for cls in ("a", "b", "c"):
                m.model_predictions_total.labels(model, version, cls).inc(seed)
        m.model_prediction_duration_seconds.labels(model).observe(0.002)
        m.model_confidence_score.labels(model).observe(0.8)
        m.model_accuracy.labels(model).set(0.9)
        m.model_accuracy_samples.labels(model).set(100)
        m.model_estimated_accuracy.labels(model).set(0.9)
        m.model_estimated_accuracy_stderr.labels(model).set(0.01)
        for correct in ("true", "false"):
            m.model_feedback_total.labels(model, correct).inc()
        m.model_training_duration_seconds.labels(model).observe(30)
        m.model_training_samples.labels(model).set(1000)
        m.model_features_count.labels(model).set(20)
        for outcome in ("success", "failure"):
            m.model_training_runs_total.labels(model, outcome).inc()
        m.model_last_training_timestamp_seconds.labels(model).set(time.time())
        m.data_quality_score.labels(model).set(0.99)
        m.data_drift_share.labels(model).set(0.1)
        m.data_drift_window_size.labels(model).set(1000)
        for feature in features:
            m.data_quality_issues_total.labels(model, feature, "missing").inc()
            m.data_drift_detected.labels(model, feature).set(0)
            for method in ("psi", "ks"):
                m.data_drift_score.labels(model, feature, method).set(0.05)
    for component in ("api", "model", "training", "database"):
        m.errors_total.labels(component, "ValueError").inc()
    for op in ("insert_predictions", "select"):
        m.db_operation_duration_seconds.labels(op).observe(0.003)
        m.db_operation_errors_total.labels(op, "connection").inc()
    m.db_records_pending.set(5)
    m.db_records_spilled.set(0)
    m.db_records_written_total.inc(seed)
    for i in range(10):
        m.alerts_active.labels(f"Alert{i}", "warning").set(0)
    for gauge in (
        m.system_cpu_usage_percent,
        m.system_memory_usage_bytes,
        m.system_memory_total_bytes,
        m.system_memory_usage_ratio,
        m.system_disk_usage_bytes,
        m.system_disk_total_bytes,
        m.system_disk_usage_ratio,
    ):
        gauge.set(1.0)


def _worker(seed: int, ready: Any) -> None:
    populate(build_metrics(CollectorRegistry()), seed)
    ready.set()
    time.sleep(600)


def bench_render(rounds: int) -> list[tuple[str, float, int, int]]:
    """Median wall ms per render, body bytes, series lines."""
    rows = []
    single = build_metrics(CollectorRegistry())
    populate(single, 1)
    with tempfile.TemporaryDirectory() as tmp:
        mp_dir = prepare_multiproc_dir(Path(tmp) / "prom")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp_dir)  # children only: spawned after
        ctx = mp.get_context("spawn")
        procs = []
        try:
            for seed in (1, 2):
                ready = ctx.Event()
                proc = ctx.Process(target=_worker, args=(seed, ready), daemon=True)
                proc.start()
                ready.wait(60)
                procs.append(proc)
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
            cases = [
                ("1 process, text", single.registry, None, None),
                ("1 process, OpenMetrics", single.registry, "application/openmetrics-text", None),
                ("2 workers (files), text", None, None, mp_dir),
                ("2 workers (files), OpenMetrics", None, "application/openmetrics-text", mp_dir),
            ]
            for label, registry, accept, folder in cases:
                reg = registry or CollectorRegistry()
                times = []
                body = b""
                for _ in range(rounds):
                    start = time.perf_counter_ns()
                    body, _ = render_metrics(reg, accept, folder)
                    times.append(time.perf_counter_ns() - start)
                lines = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
                rows.append((label, statistics.median(times) / 1e6, len(body), lines))
        finally:
            for proc in procs:
                proc.terminate()
                proc.join()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--batch", type=int, default=20_000)
    args = parser.parse_args()

    rows = bench_decorators(args.batch, args.rounds) + bench_middleware(args.batch, args.rounds)
    print(f"{'case':34} {'plain ns':>10} {'instr. ns':>10} {'overhead ns':>12} {'budget':>9}")
    for name, plain, instr, over, budget in rows:
        print(f"{name:34} {plain:10.0f} {instr:10.0f} {over:12.0f} {budget:>9}")
    print()
    print(f"{'/metrics render':34} {'median ms':>10} {'bytes':>10} {'series':>12}")
    for name, ms, size, lines in bench_render(args.rounds * 3):
        print(f"{name:34} {ms:10.2f} {size:10d} {lines:12d}")


if __name__ == "__main__":
    main()
