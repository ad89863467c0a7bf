"""Where the CPU time of one ``POST /api/v1/models/diagnostic/predict`` goes, in process.

Usage: python benchmarks/bench_predict.py [--rounds 7] [--requests 2000] [--iterations 20000]

Part 1 drives the real app (``create_app``, lifespan started, SQLite) through a minimal ASGI
driver, no server and no sockets, and toggles one stage per variant: the compiled predictor
against scikit-learn's ``predict_proba`` (answers checked identical first, as
tests/ml/test_predictor.py does for every row), the middleware stack, observation, the record
hand-off, and an ``async def`` against a ``def`` endpoint (FastAPI runs the latter in a thread).
Part 2 times each stage's function alone. Both are interleaved (each round runs every
candidate once, in a rotating order) and report the median and range over rounds of
``time.process_time_ns`` (CPU of the whole process, all threads) and wall time per request.

The record writer is set never to flush on its own (huge batch, hour-long period) and is flushed
between candidates, untimed: its database write is a background cost, timed separately as
``store.insert_predictions`` per record. orjson is used when importable (it is not a dependency:
``PYTHONPATH=/tmp/orjson_bench`` after ``pip install --target /tmp/orjson_bench orjson``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Body, Response
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from nexus_ml.api.app import create_app
from nexus_ml.api.auth import PredictKey
from nexus_ml.api.deps import ServingDep
from nexus_ml.api.hot_path import HotRoute
from nexus_ml.api.routes.predictions import parse_json
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.predictor import Predictor
from nexus_ml.ml.schema import validate_instance
from nexus_ml.ml.sources import ensure_bundled_models
from nexus_ml.storage.records import PredictionRecord, new_id, utcnow

try:
    import orjson
except ImportError:  # not a dependency: measured only when present
    orjson = None

MODEL = "diagnostic"
KEY = "predict-key-0123456789abcdef"
PATH = f"/api/v1/models/{MODEL}/predict"


# -- a minimal ASGI driver ----------------------------------------------------------------------


def make_scope(app: Any, path: str, body: bytes) -> dict[str, Any]:
    """An HTTP/1.1 POST scope like uvicorn's (``app`` set so the router alone can run)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8001"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {KEY}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8001),
        "state": {},
        "app": app,
    }


async def call(asgi: Any, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
    """One request; returns the status and the response body."""
    message = {"type": "http.request", "body": body, "more_body": False}
    done = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return message
        await asyncio.sleep(3600)  # a client that stays connected (never reached here)
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    await asgi(dict(scope), receive, send)
    return status, b"".join(chunks)


# -- the app under test -------------------------------------------------------------------------


def bench_router() -> APIRouter:
    """The same work behind an ``async def`` and a ``def`` endpoint (FastAPI parses the body)."""
    router = APIRouter()
    body = Body()  # one default object (ruff B008)

    def answer(serving: Any, name: str, payload: dict[str, Any]) -> Response:
        loaded = serving.model(name)
        return Response(json.dumps(serving.predict_one(loaded, payload["features"])))

    @router.post("/bench/async/{name}")
    async def predict_async(
        name: str, serving: ServingDep, _key: PredictKey, payload: dict[str, Any] = body
    ) -> Response:
        return answer(serving, name, payload)

    @router.post("/bench/sync/{name}")
    def predict_sync(
        name: str, serving: ServingDep, _key: PredictKey, payload: dict[str, Any] = body
    ) -> Response:
        return answer(serving, name, payload)

    return router


def bare_app() -> Any:
    """A bare Starlette route answering a constant JSON body: the framework's floor."""

    async def constant(request: Request) -> JSONResponse:
        return JSONResponse({"predicted_class": "benign"})

    return Starlette(routes=[Route(PATH, constant, methods=["POST"])])


class NullBins:
    """Per-bin input counting switched off."""

    def add(self, row: Any) -> None:
        pass

    def add_many(self, rows: Any) -> None:
        pass


class NullObserver:
    """Observation switched off (the per-bin counters with it)."""

    bins = NullBins()

    def observe(self, *args: Any) -> None:
        pass


async def interleave(
    candidates: dict[str, Callable[[int], Awaitable[int]]],
    rounds: int,
    between: Callable[[], Awaitable[None]],
) -> dict[str, tuple[list[float], list[float]]]:
    """Run every candidate once per round in a rotating order; µs per call (cpu, wall)."""
    out: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            await between()
            cpu0, wall0 = time.process_time_ns(), time.perf_counter_ns()
            n = await candidates[name](r)
            cpu, wall = time.process_time_ns() - cpu0, time.perf_counter_ns() - wall0
            out[name][0].append(cpu / n / 1000)
            out[name][1].append(wall / n / 1000)
    return out


def print_table(title: str, results: dict[str, tuple[list[float], list[float]]]) -> None:
    """Median and range over rounds."""
    print(f"\n{title}")
    header = f"{'candidate':<52} {'cpu µs':>8} {'range':>15} {'wall µs':>8} {'range':>15}"
    print(header)
    print("-" * len(header))
    for name, (cpu, wall) in results.items():
        print(
            f"{name:<52} {statistics.median(cpu):>8.1f} {min(cpu):>7.1f}–{max(cpu):<7.1f}"
            f" {statistics.median(wall):>8.1f} {min(wall):>7.1f}–{max(wall):<7.1f}"
        )


async def run(args: argparse.Namespace, folder: Path) -> None:
    """Build the app, check answers, then time requests and stages."""
    ensure_bundled_models(folder / "models")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'nexus.db'}",
        model_path=folder / "models",
        data_dir=folder / "data",
        api_keys=f"predict:{KEY}",
        # The writer flushes only when told to (between candidates, untimed).
        writer_batch_size=10_000_000,
        writer_flush_seconds=3600.0,
        writer_max_pending=10_000_000,
        system_interval_seconds=3600.0,
        alert_interval_seconds=3600.0,
        drift_interval_seconds=3600.0,
        drift_first_run_seconds=3600.0,
    )
    app = create_app(settings, registry=CollectorRegistry())
    app.include_router(bench_router())
    async with app.router.lifespan_context(app):
        await requests_and_stages(app, args)


async def requests_and_stages(app: Any, args: argparse.Namespace) -> None:
    """Part 1 (whole requests, stages toggled) and part 2 (stages alone)."""
    service = app.state.service
    data = load_dataset(MODEL)
    rows = [dict(zip(data.feature_names, map(float, x), strict=True)) for x in data.X[:64]]
    bodies = [json.dumps({"features": r}).encode() for r in rows]
    loaded = service.models.get(MODEL)
    sklearn = Predictor(loaded.predictor.pipeline)
    sklearn.kind = "fallback"  # the same object forced onto pipeline.predict_proba
    as_sklearn = dataclasses.replace(loaded, predictor=sklearn)

    # Same answers from both predictors inside a request, or the timing means nothing.
    for body in bodies[:16]:
        answers = []
        for model in (loaded, as_sklearn):
            service.models._swap(MODEL, model)  # benchmark only: swap the served object in place
            status, out = await call(app, make_scope(app, PATH, body), body)
            assert status == 200, out
            answers.append(json.loads(out)["probabilities"])
        service.models._swap(MODEL, loaded)
        x = np.array([json.loads(body)["features"][f] for f in data.feature_names])
        expected = loaded.predictor.pipeline.predict_proba(x.reshape(1, -1))[0]
        for got in answers:
            assert np.abs(np.array(list(got.values())) - expected).max() <= 1e-9

    n = args.requests

    def requests(
        asgi: Any,
        path: str = PATH,
        setup: Callable[[], Callable[[], None]] | None = None,
        k: int = n,
    ) -> Callable[[int], Awaitable[int]]:
        scopes = [make_scope(app, path, b) for b in bodies]

        async def go(r: int) -> int:
            undo = setup() if setup else None
            try:
                for i in range(k):
                    status, _ = await call(asgi, scopes[i % 64], bodies[i % 64])
                    assert status == 200, status
            finally:
                if undo:
                    undo()
            return k

        return go

    def swap_sklearn() -> Callable[[], None]:
        service.models._swap(MODEL, as_sklearn)
        return lambda: service.models._swap(MODEL, loaded)

    def no_observe() -> Callable[[], None]:
        service.publisher.observer = lambda _loaded: NullObserver()
        return lambda: delattr(service.publisher, "observer")

    def no_record() -> Callable[[], None]:
        service.writer.submit_many = lambda _records: None
        return lambda: delattr(service.writer, "submit_many")

    hot = [r for r in app.router.routes if isinstance(r, HotRoute)]

    def no_short_stack() -> Callable[[], None]:
        # The hot route through the app's whole stack, as before HotApp (api/hot_path.py).
        shortcut = getattr(app, "hot", ())
        app.hot = ()  # type: ignore[attr-defined]
        return lambda: setattr(app, "hot", shortcut)

    def no_hot_path() -> Callable[[], None]:
        # The FastAPI route alone, as before api/hot_path.py (benchmark only: list surgery).
        routes = app.router.routes
        at = routes.index(hot[0])
        del routes[at : at + len(hot)]
        undo_short = no_short_stack()

        def undo() -> None:
            routes[at:at] = hot
            undo_short()

        return undo

    async def between() -> None:
        await service.writer.flush()

    candidates = {
        "full request, hot path (as shipped)": requests(app),
        "full request, FastAPI route (hot path off)": requests(app, setup=no_hot_path),
        "full request, hot path, whole stack (no HotApp)": requests(app, setup=no_short_stack),
        "full request, sklearn predict_proba": requests(app, setup=swap_sklearn, k=max(n // 4, 50)),
        # No middleware at all (error, limits, metrics, exception): the router alone.
        "hot path, router only (no middleware)": requests(app.router),
        "hot path, observe off": requests(app, setup=no_observe),
        "hot path, record submit off": requests(app, setup=no_record),
        "bare Starlette route, constant JSON (no middleware)": requests(bare_app(), k=n),
        "async def endpoint, body via FastAPI": requests(app, f"/bench/async/{MODEL}"),
        "def endpoint (thread hop), body via FastAPI": requests(app, f"/bench/sync/{MODEL}"),
    }
    for c in candidates.values():  # warm-up: lazy imports, route caches, first journal segment
        await c(0)
    print_table(
        f"Part 1 — whole requests through the ASGI app ({n} per round, {args.rounds} rounds)",
        await interleave(candidates, args.rounds, between),
    )
    await between()
    await stages_alone(service, app.state.keys, loaded, rows, bodies, args)


async def stages_alone(
    service: Any,
    keys: Any,
    loaded: Any,
    rows: list[dict[str, float]],
    bodies: list[bytes],
    args: Any,
) -> None:
    """Part 2: each stage's function on its own (µs per call)."""
    schema, predictor = loaded.schema, loaded.predictor
    pipeline = predictor.pipeline
    observer = service.publisher.observer(loaded)
    X = [validate_instance(schema, r) for r in rows]
    serving = service.serving
    answer = serving.predict_one(loaded, rows[0])
    records = [
        PredictionRecord(
            id=new_id(),
            model=loaded.name,
            version=loaded.version,
            created_at=utcnow(),
            features=rows[i % 64],
            predicted_class="benign",
            confidence=0.9,
            probabilities={"malignant": 0.1, "benign": 0.9},
            latency_seconds=1e-5,
        )
        for i in range(200)
    ]
    it = args.iterations

    def loop(fn: Callable[[int], object], k: int = it) -> Callable[[int], Awaitable[int]]:
        async def go(r: int) -> int:
            for i in range(k):
                fn(i)
            return k

        return go

    def insert_batch(_: int) -> None:
        fresh = [dataclasses.replace(rec, id=new_id()) for rec in records]
        service.store.insert_predictions(fresh)

    stages: dict[str, Callable[[int], Awaitable[int]]] = {
        "auth: KeyStore.authenticate": loop(lambda i: keys.authenticate(KEY)),
        "body: json.loads": loop(lambda i: json.loads(bodies[i % 64])),
        "body: parse_json (as shipped: orjson, json.loads fallback)": loop(
            lambda i: parse_json(bodies[i % 64])
        ),
        "validate: validate_instance": loop(lambda i: validate_instance(schema, rows[i % 64])),
        "predict: Predictor.predict_one (compiled)": loop(
            lambda i: predictor.predict_one(X[i % 64])
        ),
        "predict: pipeline.predict_proba (sklearn)": loop(
            lambda i: pipeline.predict_proba(X[i % 64].reshape(1, -1)), max(it // 50, 100)
        ),
        "observe: ModelObserver.observe": loop(lambda i: observer.observe((), "benign", 0.9, 1e-5)),
        "record: new_id + utcnow + PredictionRecord": loop(
            lambda i: PredictionRecord(
                id=new_id(),
                model=loaded.name,
                version=loaded.version,
                created_at=utcnow(),
                features=rows[i % 64],
                predicted_class="benign",
                confidence=0.9,
                probabilities={"malignant": 0.1, "benign": 0.9},
                latency_seconds=1e-5,
            )
        ),
        "record: RecordWriter.submit (journal append)": loop(
            lambda i: service.writer.submit(records[i % 200])
        ),
        "record: store.insert_predictions (per record, bg)": _per_record(
            loop(insert_batch, max(it // 1000, 5)), 200
        ),
        "serving.predict_one (validate..submit)": loop(
            lambda i: serving.predict_one(loaded, rows[i % 64])
        ),
        "response: json.dumps(answer)": loop(lambda i: json.dumps(answer)),
        "response: Response(json.dumps(answer))": loop(
            lambda i: Response(json.dumps(answer), media_type="application/json")
        ),
    }
    if orjson is not None:
        stages["response: orjson.dumps(answer)"] = loop(lambda i: orjson.dumps(answer))
        stages["body: orjson.loads"] = loop(lambda i: orjson.loads(bodies[i % 64]))

    async def between() -> None:
        await service.writer.flush()

    for s in stages.values():
        await s(0)
    print_table(
        f"Part 2 — stages alone ({it} calls per round, {args.rounds} rounds)",
        await interleave(stages, args.rounds, between),
    )


def _per_record(
    fn: Callable[[int], Awaitable[int]], per_call: int
) -> Callable[[int], Awaitable[int]]:
    async def go(r: int) -> int:
        return await fn(r) * per_call

    return go


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args()
    print(f"orjson: {'available ' + orjson.__version__ if orjson else 'not installed'}")
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as folder:
        asyncio.run(run(args, Path(folder)))


if __name__ == "__main__":
    main()
