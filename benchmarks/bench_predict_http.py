"""HTTP throughput of one worker: uvloop + httptools (uvicorn's, and the bounded subclass
``nexus-ml serve`` runs) against asyncio + h11, under wrk.

Usage: python benchmarks/bench_predict_http.py [--rounds 3] [--seconds 10] [--connections 32]

Each round starts ``uvicorn --factory nexus_ml.api.asgi:app_from_env`` (one worker, SQLite in a
temporary folder, the bundled models) once per server stack, in a rotating order (A, B, B, A,
...), warms it up for 2 s, then runs ``wrk -t1 -c32 -d10s --latency`` with a POST of one
diagnostic row to ``/api/v1/models/diagnostic/predict``. wrk and the server share the host's
cores, so the absolute figures depend on the host; compare the stacks within a run. p99 is
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

from nexus_ml.api.edge import PROTOCOL
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.training import ensure_bundled_models

KEY = "predict-key-0123456789abcdef"
PATH = "/api/v1/models/diagnostic/predict"
STACKS = {
    "uvloop+httptools": ["--loop", "uvloop", "--http", "httptools"],
    "uvloop+bounded httptools": ["--loop", "uvloop", "--http", PROTOCOL],
    "asyncio+h11": ["--loop", "asyncio", "--http", "h11"],
}
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def free_port() -> int:
    """An unused loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def lua_script(folder: Path) -> Path:
    """A wrk script that POSTs one real diagnostic row with the predict key."""
    data = load_dataset("diagnostic")
    body = json.dumps(
        {"features": dict(zip(data.feature_names, map(float, data.X[0]), strict=True))}
    )
    path = folder / "predict.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {KEY}"\n'
    )
    return path


def start_server(stack: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """uvicorn with ``stack``'s loop and HTTP flags; returns once /health/live answers."""
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "nexus_ml.api.asgi:app_from_env",
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
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
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
    """Round-robin the stacks and print one row per run and the medians."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (apt-get install wrk)")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in STACKS}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        folder = Path(tmp)
        ensure_bundled_models(folder / "models")
        script = lua_script(folder)
        names = list(STACKS)
        print(f"{'round':>5} {'stack':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                env = {
                    **os.environ,
                    "ML_MODEL_PATH": str(folder / "models"),
                    "ML_DATA_DIR": str(folder / f"data-{name}-{r}"),
                    "ML_API_KEYS": f"predict:{KEY}",
                    "ML_LOG_LEVEL": "WARNING",
                }
                env.pop("PROMETHEUS_MULTIPROC_DIR", None)
                port = free_port()
                proc = start_server(STACKS[name], port, env)
                try:
                    run_wrk(port, script, 2, args.connections)  # warm-up, not counted
                    res = run_wrk(port, script, args.seconds, args.connections)
                finally:
                    stop_server(proc)
                results[name].append(res)
                print(
                    f"{r + 1:>5} {name:<26} {res['rps']:>9.0f} {res['p50_ms']:>8.2f}"
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
            f"{name:<26} {m['rps']:>9.0f} req/s  p50 {m['p50_ms']:.2f} ms  p99 {m['p99_ms']:.2f} ms"
        )
    first = names[0]
    for name in names[1:]:
        print(f"{name} / {first} throughput: {med[name]['rps'] / med[first]['rps']:.2f}x")


if __name__ == "__main__":
    main()
