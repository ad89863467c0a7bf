"""Does a shadow challenger move the champion's latency? p50 of predict with and without one,
side by side in one run.

Usage: python benchmarks/bench_shadow.py [--requests 3000] [--block 20] [--rounds 3]

Starts two services (``uvicorn --factory nexus_ml.api.asgi:app_from_env``, one process each,
SQLite, copies of the bundled models): **A** serves ``diagnostic`` alone; **B** serves the
same champion with a challenger in ``SHADOW`` (the same pipeline under another decision
threshold, so it does the same work). One client sends one diagnostic row at a time over a
kept-alive connection, in blocks of ``--block`` back-to-back requests to the same service,
alternating A and B, so both see the same host noise and B's challenger work for one request
overlaps the next request to B (as it would under steady traffic). Prints per round and
overall the p50 / p90 / p99 of each, the ratio B/A of p50 (the issue's bar: <= 1.1), and
B's ``ml_shadow_predictions_total`` / ``ml_shadow_dropped_total``, to show the challenger
really scored the traffic.

Everything runs on 127.0.0.1; the client shares the host's cores with both servers.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the service helpers live with the reliability tests

from tests.api.test_shadow import save_challenger  # noqa: E402
from tests.helpers import KEYS  # noqa: E402
from tests.reliability.service import (  # noqa: E402
    Service,
    feature_rows,
    free_port,
    percentile,
    service_env,
    uvicorn_command,
)

from nexus_ml.ml.pointers import set_shadow  # noqa: E402
from nexus_ml.ml.sources import ensure_bundled_models  # noqa: E402

MODEL = "diagnostic"
PATH = f"/api/v1/models/{MODEL}/predict"
WARMUP = 300


def add_challenger(model_dir: Path) -> str:
    """The champion's pipeline again at a 0.9 threshold (as the tests make it), in SHADOW."""
    version = save_challenger(model_dir)
    set_shadow(model_dir, MODEL, version)
    return version


def shadow_counts(base: str) -> tuple[float, float]:
    """(scored, dropped) by the challenger, from /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=10).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M))

    return total("ml_shadow_predictions_total"), total("ml_shadow_dropped_total")


def run_round(
    clients: dict[str, httpx.Client], rows: list[dict[str, float]], n: int, block: int
) -> dict[str, list[float]]:
    """``n`` timed requests per service, in alternating blocks; seconds per request."""
    times: dict[str, list[float]] = {name: [] for name in clients}
    headers = {"Authorization": f"Bearer {KEYS['predict']}"}
    i = 0
    while min(len(t) for t in times.values()) < n:
        for name, client in clients.items():
            for _ in range(block):
                row = rows[i % len(rows)]
                i += 1
                start = time.perf_counter()
                r = client.post(PATH, json={"features": row}, headers=headers)
                elapsed = time.perf_counter() - start
                if r.status_code != 200:
                    raise SystemExit(f"{name}: {r.status_code} {r.text[:200]}")
                times[name].append(elapsed)
    return times


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1000:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per service")
    parser.add_argument("--block", type=int, default=20, help="back-to-back requests per turn")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        root = Path(tmp)
        ensure_bundled_models(root / "bundled", names=(MODEL,))
        services: dict[str, Service] = {}
        for name in ("A: no shadow", "B: with shadow"):
            folder = root / name[0]
            shutil.copytree(root / "bundled", folder / "models")
            if name.startswith("B"):
                challenger = add_challenger(folder / "models")
            port = free_port()
            env = service_env(
                models=folder / "models",
                data_dir=folder / "data",
                database_url=f"sqlite:///{folder / 'nexus.db'}",
                ML_LOG_LEVEL="WARNING",
            )
            services[name] = Service(uvicorn_command(port, 5), env, port, folder / "service.log")
        try:
            for svc in services.values():
                svc.start()
            clients = {name: httpx.Client(base_url=svc.base) for name, svc in services.items()}
            rows = feature_rows(64, MODEL)
            run_round(clients, rows, WARMUP, args.block)
            overall: dict[str, list[float]] = {name: [] for name in clients}
            print(f"challenger {challenger}; {args.requests} requests per service per round, "
                  f"blocks of {args.block}")  # fmt: skip
            print("| round | service | p50 ms | p90 ms | p99 ms |")
            print("|---|---|---:|---:|---:|")
            ratios = []
            for k in range(1, args.rounds + 1):
                times = run_round(clients, rows, args.requests, args.block)
                for name, t in times.items():
                    overall[name] += t
                    print(f"| {k} | {name} | {_ms(t, 50)} | {_ms(t, 90)} | {_ms(t, 99)} |")
                a, b = (percentile(t, 50) for t in times.values())
                ratios.append(b / a)
            for name, t in overall.items():
                print(f"| all | {name} | {_ms(t, 50)} | {_ms(t, 90)} | {_ms(t, 99)} |")
            a, b = (percentile(t, 50) for t in overall.values())
            print(f"\np50 ratio B/A per round: {', '.join(f'{r:.3f}' for r in ratios)}; "
                  f"overall {b / a:.3f} (bar: <= 1.1)")  # fmt: skip
            time.sleep(0.5)  # the last requests' challenger scores (a few ms of work)
            scored, dropped = shadow_counts(services["B: with shadow"].base)
            total = WARMUP + args.rounds * args.requests
            print(f"B's challenger scored {scored:.0f} of {total} instances, dropped {dropped:.0f}")
            for c in clients.values():
                c.close()
        finally:
            for svc in services.values():
                svc.stop()


if __name__ == "__main__":
    main()
