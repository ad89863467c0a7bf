"""What does one in-process anomaly report (GET /monitoring/anomalies) cost with history?

Usage: python benchmarks/bench_anomalies_report.py [--rounds 5]

Two SQLite databases holding what the report reads after three weeks of service, in the
minutes it reads (the last hours and the hours around the same minute one, two and three weeks
back): both the predictions of two models of two classes (ten a minute), one also the request
counts (four status and latency keys a minute). ``Anomalies.report()`` (the view behind the
endpoint) is timed on each, alternately: wall clock of the whole call (database reads, series,
bands: 2 × (2 + 2) model signals, and 3 request signals where counted), median and range.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.database import Database
from nexus_ml.service.views.anomalies import Anomalies
from nexus_ml.storage import PredictionRecord, Store, make_engine, migrate, new_id
from nexus_ml.storage.aggregates import MINUTE, floor_to
from nexus_ml.storage.records import utcnow

WEEK = 7 * 1440


def _read_minutes() -> list[int]:
    """Minutes back that the report reads (and a margin): recent hours and each season's hour."""
    return [m for m in range(3 * WEEK + 400) if m < 400 or min(m % WEEK, WEEK - m % WEEK) < 200]


def _fill(store: Store, *, requests: bool) -> int:
    end = floor_to(utcnow(), MINUTE)
    minutes = _read_minutes()
    if requests:
        counts = {("status", "2xx"): 100, ("status", "5xx"): 1, ("latency", "0.01"): 90}
        counts[("latency", "0.025")] = 11
        store.add_request_counts({end - timedelta(minutes=m): dict(counts) for m in minutes})
    records = [
        PredictionRecord(
            new_id(),
            model,
            "v1",
            end - timedelta(minutes=m, seconds=-30),
            {},
            cls,
            0.9,
            {cls: 0.9},
            latency_seconds=0.01,
        )
        for m in minutes
        for model in ("a", "b")
        for cls in ("yes", "no") * 5
    ]
    for i in range(0, len(records), 5000):
        store.insert_predictions(records[i : i + 5000])
    return len(minutes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        views: dict[str, Anomalies] = {}
        engines = []
        for name, requests in (("models only", False), ("models and requests", True)):
            engine = make_engine(f"sqlite:///{Path(tmp) / f'{requests}.db'}")
            migrate(engine)
            engines.append(engine)
            store = Store(engine)
            n = _fill(store, requests=requests)
            views[name] = Anomalies(Database(store, build_metrics(CollectorRegistry())))

        async def rounds() -> dict[str, tuple[list[float], int]]:
            out: dict[str, tuple[list[float], int]] = {}
            for view in views.values():
                await view.report()  # warm
            for _ in range(args.rounds):
                for name, view in views.items():  # alternated, side by side
                    start = time.perf_counter()
                    report = await view.report()
                    ms = (time.perf_counter() - start) * 1000
                    out.setdefault(name, ([], len(report.readings)))[0].append(ms)
            return out

        results = asyncio.run(rounds())
        for engine in engines:
            engine.dispose()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"host load (1, 5, 15 min): {' '.join(load)}; {n} minutes stored per series")
    print("| database | readings | median ms | range ms |\n|---|---:|---:|---:|")
    for name, (ms, readings) in results.items():
        print(
            f"| {name} | {readings} | {statistics.median(ms):.0f} | {min(ms):.0f}-{max(ms):.0f} |"
        )


if __name__ == "__main__":
    main()
