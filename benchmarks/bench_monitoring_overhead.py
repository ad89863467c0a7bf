"""What does monitoring cost on /predict? Ours vs none vs two popular peers, side by side.

Run: ``python benchmarks/bench_monitoring_overhead.py [--rounds 31] [--batch 400] [--models DIR]``
(peers: ``pip install -e '.[bench]'``, i.e. prometheus-fastapi-instrumentator and
starlette-exporter).

Method: the ASGI apps are called directly (scope/receive/send built here, no
HTTP, no sockets), so the figures are the apps' own work. Each variant runs in its
own spawned process (one app per heap, like a worker); every round asks each
process for one batch in turn (interleaved, one at a time), so drift in CPU
frequency or a noisy neighbour hits all alike. Figures are medians over rounds;
an overhead is the median over rounds of (variant − baseline) for batches of the
same round, a paired difference that cancels a shared machine's slow drift.
Two clocks: ``time.process_time_ns`` per batch (all threads: the whole cost, including
anything FastAPI hands to its thread pool) and, per request,
``time.thread_time_ns`` of the event-loop thread, where every piece of our
monitoring runs (middleware, observer, hand-off); its median request ignores
preemptions and GC passes, which on a loaded 2-core host swamp a 10 µs signal.
Wall time is shown for context only.

(a) A bare FastAPI app with one trivial ``POST /api/v1/models/{name}/predict``:
    no HTTP middleware vs our ``RequestMiddleware`` (metrics and request id; no limits) vs
    prometheus-fastapi-instrumentator
    (defaults) vs starlette-exporter (defaults). Isolates the HTTP-middleware cost.
(b) The real service (``create_app`` with a fresh registry, models loaded, lifespan
    running, SQLite) on the real predict route. "off" means exactly: RequestMiddleware
    removed from the middleware list (since issue 16 it also holds the request id and the
    request limits, which go with it); ``service.publisher.observer`` returns a no-op observer (no
    prediction counter, latency and confidence histograms, data-quality check or quality
    score); ``writer.submit`` is a no-op (no journal line, no queue, nothing stored).
    Everything else (auth, validation, the model, building the record and the response)
    is identical. Partial variants switch one part on at a time. The writer's background
    insert into SQLite runs outside the timed window (the writer only flushes when the
    benchmark tells it to, after each batch) and is reported on its own line, per record,
    since it happens off the request path. The model watcher is slowed to once an hour.

Decorator-only overhead is in ``benchmarks/bench_decorator.py``; /metrics render time
with 2 workers in ``benchmarks/bench_metrics_render.py``; HTTP end to end in
``benchmarks/bench_wrk.sh`` (which serves the apps built here via :func:`wrk_app`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nexus_ml.api.app import create_app
from nexus_ml.api.middleware import RequestMiddleware
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.sources import ensure_bundled_models
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service import wiring

PREDICT = "/api/v1/models/diagnostic/predict"
KEY = "predict-key-0123456789abcdef"
BARE_VARIANTS = ("none", "ours", "instrumentator", "starlette_exporter")
BARE_TARGETS = {"ours": "<= 30", "instrumentator": "≈ 90-110", "starlette_exporter": "≈ 150-200"}
# (name, middleware, observer, hand-off)
NEXUS_VARIANTS = (
    ("off", False, False, False),
    ("+ middleware only", True, False, False),
    ("+ observer only", False, True, False),
    ("+ writer hand-off only", False, False, True),
    ("all on (as shipped)", True, True, True),
)


def request_body() -> bytes:
    data = load_dataset("diagnostic")
    return json.dumps(
        {"features": dict(zip(data.feature_names, map(float, data.X[0]), strict=True))}
    ).encode()


# -- the apps ---------------------------------------------------------------------


def bare_app(variant: str) -> FastAPI:
    """A FastAPI app with one trivial predict route, instrumented by ``variant``."""
    app = FastAPI()
    answer = json.dumps({"predicted_class": "benign", "confidence": 0.9}).encode()

    @app.post("/api/v1/models/{name}/predict")
    async def predict(name: str, request: Request) -> Response:
        await request.body()
        return Response(answer, media_type="application/json")

    if variant == "ours":
        app.add_middleware(RequestMiddleware, metrics=build_metrics(CollectorRegistry()))
    elif variant == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator(registry=CollectorRegistry()).instrument(app)
    elif variant == "starlette_exporter":
        # It keeps its metrics in a class-level cache on the global REGISTRY: one app only.
        from starlette_exporter import PrometheusMiddleware

        app.add_middleware(PrometheusMiddleware)
    elif variant != "none":
        raise ValueError(variant)
    return app


class _NoObserver:
    def observe(self, row: Any, predicted: str, confidence: float, latency: float) -> None:
        return None

    def rejected(self, problem: Any) -> None:
        return None


def nexus_settings(root: Path, name: str, models: Path, *, manual_flush: bool = True) -> Settings:
    """Settings for one variant: its own SQLite file and data folder, background jobs idle."""
    # With manual_flush the writer inserts only when the benchmark flushes it, after each
    # timed batch; otherwise its inserts would land in whichever variant's batch was running.
    writer = {"writer_batch_size": 1_000_000, "writer_flush_seconds": 3600.0}
    return Settings(
        **(writer if manual_flush else {}),
        database_url=f"sqlite:///{root / name / 'nexus.db'}",
        model_path=models,
        data_dir=root / name / "data",
        api_keys=f"predict:{KEY}",
        system_interval_seconds=3600.0,
        alert_interval_seconds=3600.0,
        drift_interval_seconds=3600.0,
        drift_first_run_seconds=3600.0,
    )


def nexus_app(settings: Settings, *, middleware: bool, observer: bool, handoff: bool) -> FastAPI:
    """The real service with parts of its monitoring switched off (see the module docstring)."""
    app = create_app(settings, registry=CollectorRegistry())
    service = app.state.service
    if not middleware:
        # The middleware stack is built at the first request, so removing it here is clean.
        app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestMiddleware]
    if not observer:
        silent = _NoObserver()
        service.publisher.observer = lambda loaded: silent
    if not handoff:
        service.writer.submit = lambda record: None
    return app


def wrk_app() -> FastAPI:
    """Factory for ``uvicorn --factory``: ``NEXUS_BENCH_VARIANT`` picks the app (bench_wrk.sh)."""
    variant = os.environ["NEXUS_BENCH_VARIANT"]
    if variant in BARE_VARIANTS:
        return bare_app(variant)
    root = Path(os.environ["NEXUS_BENCH_DIR"])
    on = variant == "nexus_on"
    if not on and variant != "nexus_off":
        raise ValueError(variant)
    settings = nexus_settings(root, variant, root / "models", manual_flush=False)
    return nexus_app(settings, middleware=on, observer=on, handoff=on)


# -- a minimal ASGI driver ----------------------------------------------------------


@dataclass
class Driver:
    """Calls ``app`` with one POST, as a server would, and checks the status."""

    app: Any
    body: bytes
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def post(cls, app: Any, body: bytes, auth: bool) -> Driver:
        headers = [
            (b"host", b"127.0.0.1:8001"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if auth:
            headers.append((b"authorization", f"Bearer {KEY}".encode()))
        return cls(app, body, headers)

    async def __call__(self) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8001),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "POST",
            "root_path": "",
            "path": PREDICT,
            "raw_path": PREDICT.encode(),
            "query_string": b"",
            "headers": list(self.headers),
            "state": {},
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        return status


async def timed_batch(call: Callable[[], Awaitable[int]], n: int) -> tuple[float, float, float]:
    """Over ``n`` calls, in µs: process CPU per call (mean), loop-thread CPU (median), wall."""
    loop_ns = []
    thread_ns = time.thread_time_ns
    p0, w0 = time.process_time_ns(), time.perf_counter_ns()
    for _ in range(n):
        t0 = thread_ns()
        await call()
        loop_ns.append(thread_ns() - t0)
    p1, w1 = time.process_time_ns(), time.perf_counter_ns()
    # The median request, not the mean: a request preempted by a noisy neighbour or
    # hit by a GC pass says nothing about the variant, and on a shared 2-core host
    # those dominate the spread.
    return (p1 - p0) / n / 1e3, statistics.median(loop_ns) / 1e3, (w1 - w0) / n / 1e3


# -- one process per variant, batches interleaved ------------------------------------
#
# Each variant lives in its own spawned process, like a production worker: one app,
# one heap. (Five services in one process would make every garbage collection scan
# five services' objects, charging it to whichever variant allocated most.) The
# parent asks each process for one batch in turn; only one runs at a time.


@dataclass(frozen=True)
class Variant:
    """What one benchmark process serves: a bare app or the service with some parts on."""

    label: str
    kind: str  # "bare" | "nexus"
    bare: str = "none"
    middleware: bool = False
    observer: bool = False
    handoff: bool = False


def _build(v: Variant, root: Path, models: Path) -> tuple[FastAPI, Driver]:
    body = request_body()
    if v.kind == "bare":
        return (app := bare_app(v.bare)), Driver.post(app, body, auth=False)
    wiring.MODEL_WATCH_SECONDS = 3600.0  # background jobs stay idle (off the request path)
    settings = nexus_settings(root, v.label.replace(" ", "_"), models)
    app = nexus_app(settings, middleware=v.middleware, observer=v.observer, handoff=v.handoff)
    return app, Driver.post(app, body, auth=True)


async def _serve_batches(v: Variant, root: Path, models: Path, conn: Connection) -> None:
    app, call = _build(v, root, models)
    lifespan = app.router.lifespan_context(app) if v.kind == "nexus" else contextlib.nullcontext()
    async with lifespan:
        writer = app.state.service.writer if v.kind == "nexus" and v.handoff else None

        async def flush() -> float:
            # The writer's background insert, timed apart: CPU µs per record written.
            if writer is None:
                return math.nan
            n, start = writer.pending, time.process_time_ns()
            await writer.flush(timeout=60)
            return (time.process_time_ns() - start) / max(n, 1) / 1e3

        for _ in range(100):  # warm-up: routes, label children, caches
            assert await call() == 200, v
        await flush()
        conn.send("ready")
        while (n := conn.recv()) is not None:
            cpu, loop, wall = await timed_batch(call, n)
            conn.send((cpu, loop, wall, await flush()))


def _variant_process(v: Variant, root: str, models: str, conn: Connection) -> None:
    asyncio.run(_serve_batches(v, Path(root), Path(models), conn))


def interleaved(
    variants: list[Variant], batch: int, rounds: int, models: Path
) -> dict[str, dict[str, list[float]]]:
    """Per round, µs per request of every variant (keys cpu/loop/wall/extra), batches in turn."""
    ctx = mp.get_context("spawn")
    keys = ("cpu", "loop", "wall", "extra")
    got: dict[str, dict[str, list[float]]] = {v.label: {k: [] for k in keys} for v in variants}
    with tempfile.TemporaryDirectory() as root:
        procs = []
        try:
            for v in variants:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_variant_process, args=(v, root, str(models), child))
                proc.start()
                procs.append((v, proc, parent))
            for v, _, conn in procs:
                if not conn.poll(120) or conn.recv() != "ready":
                    raise RuntimeError(f"variant {v.label!r} did not start")
            for r in range(rounds):
                # Rotate the starting variant so that none always follows the same one.
                for v, _, conn in procs[r % len(procs) :] + procs[: r % len(procs)]:
                    conn.send(batch)
                    if not conn.poll(300):
                        raise RuntimeError(f"variant {v.label!r} did not answer")
                    for k, value in zip(keys, conn.recv(), strict=True):
                        got[v.label][k].append(value)
            for _, _, conn in procs:
                conn.send(None)
        finally:
            for _, proc, _ in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
    return got


def summarise(got: dict[str, dict[str, list[float]]], base: str) -> dict[str, dict[str, float]]:
    """Medians over rounds, and overheads as the median of per-round differences to ``base``.

    Pairing each round's batch with the baseline's batch of the same round (seconds
    apart) cancels the slow drift of a shared machine, which an unpaired difference of
    medians would keep.
    """
    out = {}
    for label, by_key in got.items():
        row = {k: statistics.median(v) for k, v in by_key.items()}
        for k in ("cpu", "loop"):
            pairs = zip(by_key[k], got[base][k], strict=True)
            row[f"{k}_over"] = statistics.median(a - b for a, b in pairs)
        out[label] = row
    return out


# -- the two comparisons -------------------------------------------------------------


def compare_bare(batch: int, rounds: int, models: Path) -> list[str]:
    variants = [Variant(v, "bare", bare=v) for v in BARE_VARIANTS]
    res = summarise(interleaved(variants, batch, rounds, models), "none")
    out = [
        "| variant | CPU µs/request | overhead µs | target µs | wall µs/request |",
        "|---|---:|---:|---|---:|",
    ]
    for v in BARE_VARIANTS:
        r = res[v]
        over = "—" if v == "none" else f"{r['cpu_over']:.1f}"
        target = BARE_TARGETS.get(v, "")
        out.append(f"| {v} | {r['cpu']:.1f} | {over} | {target} | {r['wall']:.1f} |")
    return out


def compare_nexus(batch: int, rounds: int, models: Path) -> list[str]:
    variants = [
        Variant(name, "nexus", middleware=mw, observer=ob, handoff=ho)
        for name, mw, ob, ho in NEXUS_VARIANTS
    ]
    res = summarise(interleaved(variants, batch, rounds, models), "off")
    out = [
        "| variant | loop-thread CPU µs (median request) | overhead µs (loop thread) "
        "| process CPU µs (mean) | overhead µs (process) | wall µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, *_ in NEXUS_VARIANTS:
        r = res[name]
        over = "—" if name == "off" else f"{r['cpu_over']:.1f}"
        over_loop = "—" if name == "off" else f"{r['loop_over']:.1f}"
        out.append(
            f"| {name} | {r['loop']:.1f} | {over_loop} | {r['cpu']:.1f} | {over} "
            f"| {r['wall']:.1f} |"
        )
    insert = res["all on (as shipped)"]["extra"]
    out.append(
        f"\nBackground insert into SQLite (writer flush, off the request path, not in the "
        f"figures above): {insert:.1f} CPU µs per record. Target for 'all on' overhead: <= 90 µs."
    )
    return out


def run(args: argparse.Namespace) -> None:
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, fastapi {version('fastapi')}, "
        f"starlette {version('starlette')}, prometheus_client {version('prometheus_client')}, "
        f"prometheus-fastapi-instrumentator {version('prometheus-fastapi-instrumentator')}, "
        f"starlette-exporter {version('starlette-exporter')}; "
        f"{args.rounds} rounds, medians of CPU time per request.\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(args.models) if args.models else Path(tmp) / "models"
        ensure_bundled_models(models)
        print(
            f"### (a) HTTP middleware alone: bare FastAPI app, trivial route, batch {args.batch}\n"
        )
        print("\n".join(compare_bare(args.batch, args.rounds, models)))
        batch = max(1, args.batch // 2)
        print(f"\n### (b) The service's predict route, monitoring off vs on, batch {batch}\n")
        print("\n".join(compare_nexus(batch, args.rounds, models)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--models", help="folder with trained bundles (default: train to a tmp)")
    args = parser.parse_args()
    run(args)


if __name__ == "__main__":
    main()
