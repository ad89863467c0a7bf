"""HTTP throughput of one worker: the prediction route against a bare Starlette route answering
a constant JSON body, on the same server, under wrk.

Usage: python benchmarks/bench_predict_http.py [--rounds 3] [--seconds 10] [--connections 32]
       [--variants bare,hot,fastapi] (add h11 for the asyncio + h11 stack,
       floor for the irreducible work without monitoring)

Each round starts one server per variant, in a rotating order (A B C, C B A, ...), warms it up
for 2 s, then runs ``wrk -t1 -c32 -d10s --latency`` POSTing one diagnostic row to
``/api/v1/models/diagnostic/predict`` with the predict key. Every variant runs on the stack
``nexus-ml serve`` runs (uvicorn, one worker, uvloop, the bounded httptools protocol of
``api/edge.py``), SQLite in a temporary folder, access log off by level:

* ``bare``: a Starlette app whose only route answers that POST with a constant JSON body,
  without reading it (no middleware, no auth): the server's and framework's floor;
* ``hot``: the service as shipped (``nexus_ml.api.asgi:app_from_env``: every middleware, the
  key check, validation, the durable record, the metrics), predictions on api/hot_path.py;
* ``fastapi``: the same service with the hot path off (``create_app(..., hot_path=False)``);
* ``h11``: the service as shipped on asyncio + h11 instead;
* ``floor``: what no prediction service can skip, in a bare Starlette route (no middleware):
  the body parsed (``parse_json``), checked against the model's schema (``check_instance``),
  scored by the served predictor, its record made (``prediction_record``) and written to a
  journal file as one line (``journal.encode``, one ``write(2)``), the answer sent (orjson).
  Without the key check, the request id, every metric and the observer, and the database
  insert: the ceiling of any service doing this work on this server (issue 16's bar, half of
  ``bare``, measured against it).

wrk and the server share the host's cores, so the absolute figures depend on the host;
compare the variants within a run (the ratio to ``bare`` is the figure of issue 16). p99 is
host noise on a shared 2-core machine: reported, not a target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nexus_ml.api.app import create_app
from nexus_ml.api.edge import PROTOCOL
from nexus_ml.api.logs import configure_logging
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.registry import load_model
from nexus_ml.ml.schema import check_instance
from nexus_ml.ml.sources import ensure_bundled_models
from nexus_ml.service.recording import prediction_record
from nexus_ml.storage.journal import encode
from nexus_ml.storage.records import utcnow

HERE = Path(__file__).resolve().parent
KEY = "predict-key-0123456789abcdef"
PATH = "/api/v1/models/diagnostic/predict"
SERVE = ["--loop", "uvloop", "--http", PROTOCOL]  # what `nexus-ml serve` runs
SERVICE = "nexus_ml.api.asgi:app_from_env"
VARIANTS = {
    "bare": ("bench_predict_http:bare_app", SERVE),
    "hot": (SERVICE, SERVE),
    "fastapi": ("bench_predict_http:fastapi_route_app", SERVE),
    "h11": (SERVICE, ["--loop", "asyncio", "--http", "h11"]),
    "floor": ("bench_predict_http:floor_app", SERVE),
}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request_body() -> str:
    """One real diagnostic row, as the request body."""
    data = load_dataset("diagnostic")
    return json.dumps(
        {"features": dict(zip(data.feature_names, map(float, data.X[0]), strict=True))}
    )


def lua_script(folder: Path) -> Path:
    """A wrk script that POSTs one real diagnostic row with the predict key."""
    body = request_body()
    path = folder / "predict.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    return path


def bare_app() -> Starlette:
    """Factory: one route answering the predict POST with a constant JSON body."""

    async def constant(request: Request) -> JSONResponse:
        return JSONResponse({"model": "diagnostic", "predicted_class": "benign"})

    return Starlette(routes=[Route(PATH, constant, methods=["POST"])])


def floor_app() -> Starlette:
    """Factory: the irreducible work of a prediction (see the module docstring), no monitoring."""
    # Imported here: the other variants also run against code older than parse_json.
    from nexus_ml.api.routes.predictions import parse_json

    settings = Settings()
    loaded = load_model(settings.model_path, "diagnostic")
    # In the run's data folder (ML_DATA_DIR), which the benchmark's temporary folder holds.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / "journal.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    async def predict(request: Request) -> Response:
        features = parse_json(await request.body())["features"]
        row, warnings = check_instance(loaded.schema, features)
        start = time.perf_counter()
        index, probabilities = loaded.predictor.predict_one(row)
        record = prediction_record(
            loaded,
            sent=features,
            index=index,
            probabilities=probabilities,
            latency=time.perf_counter() - start,
            at=utcnow(),
            request_id=None,
        )
        os.write(fd, encode(record))
        answer = {"id": record.id, "predicted_class": record.predicted_class,
                  "confidence": record.confidence, "warnings": warnings}  # fmt: skip
        return Response(orjson.dumps(answer), media_type="application/json")

    return Starlette(routes=[Route(PATH, predict, methods=["POST"])])


def fastapi_route_app() -> FastAPI:
    """Factory: the service from the environment, predictions on the FastAPI route alone."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings, hot_path=False)


def start_server(variant: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """uvicorn serving ``variant``; returns once the predict POST answers 200."""
    factory, stack = VARIANTS[variant]
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--app-dir", str(HERE),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *stack,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            r = httpx.post(
                f"http://127.0.0.1:{port}{PATH}",
                content=request_body(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
                timeout=1,
            )
            if r.status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError("server did not start in time")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (graceful: drains the record writer), then SIGKILL if it hangs."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_wrk(port: int, script: Path, seconds: int, connections: int) -> dict[str, float]:
    """req/s, p50/p99 latency (ms) and non-2xx responses of one wrk run."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {
        "rps": rps,
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group(0)), text.lstrip("0123456789.")  # type: ignore[union-attr]
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def main() -> None:
    """Round-robin the variants and print one row per run, the medians and the ratios."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--variants", default="bare,hot,fastapi")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (apt-get install wrk)")
    names = args.variants.split(",")
    unknown = set(names) - set(VARIANTS)
    if unknown:
        sys.exit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        folder = Path(tmp)
        ensure_bundled_models(folder / "models")
        script = lua_script(folder)
        print(
            f"{'round':>5} {'variant':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        )
        for r in range(args.rounds):
            shift = r % len(names)
            order = names[shift:] + names[:shift]
            for name in order if r % 2 == 0 else order[::-1]:
                env = {
                    **os.environ,
                    "ML_MODEL_PATH": str(folder / "models"),
                    "ML_DATA_DIR": str(folder / f"data-{name}-{r}"),
                    "ML_API_KEYS": f"predict:{KEY}",
                    "ML_LOG_LEVEL": "WARNING",
                }
                env.pop("PROMETHEUS_MULTIPROC_DIR", None)
                port = free_port()
                proc = start_server(name, port, env)
                try:
                    run_wrk(port, script, 2, args.connections)  # warm-up, not counted
                    res = run_wrk(port, script, args.seconds, args.connections)
                finally:
                    stop_server(proc)
                results[name].append(res)
                print(
                    f"{r + 1:>5} {name:<10} {res['rps']:>9.0f} {res['p50_ms']:>8.2f}"
                    f" {res['p99_ms']:>8.2f} {res['non2xx']:>8.0f}",
                    flush=True,
                )
    print("\nmedian over rounds")
    med = {
        n: {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        for n, runs in results.items()
    }
    for name, m in med.items():
        print(
            f"{name:<10} {m['rps']:>9.0f} req/s  p50 {m['p50_ms']:.2f} ms  p99 {m['p99_ms']:.2f} ms"
        )
    if "bare" in results:
        for name in names:
            if name != "bare":
                ratios = [
                    x["rps"] / b["rps"] for x, b in zip(results[name], results["bare"], strict=True)
                ]
                print(
                    f"{name} / bare: median {statistics.median(ratios):.2f}"
                    f" (per round {', '.join(f'{q:.2f}' for q in ratios)})"
                )


if __name__ == "__main__":
    main()
