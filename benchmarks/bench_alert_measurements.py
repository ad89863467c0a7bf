"""What does one in-process alert tick cost once the clinical gauges are exported?

Run: ``python benchmarks/bench_alert_measurements.py [--rounds 15] [--models 3]``.

A registry with every metric of ``build_metrics`` and, per model, the clinical gauges at
their cap: 16 segment groups plus ``all``, two classes (as the quality job exports them), the
baseline and the positive class. Each round records one snapshot (``MetricHistory.record``)
and evaluates every alert on it (``measurements()`` + ``AlertEvaluator.evaluate``), after an
hour of 15 s snapshots has been recorded (the history the service keeps); the registry's own
``collect()`` is timed apart (the service collects through its own families). Medians of the
rounds; the history's size is the snapshots' arrays.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nexus_ml.monitoring.alerting import AlertEvaluator
from nexus_ml.monitoring.measurements import MetricHistory
from nexus_ml.monitoring.metrics import CLINICAL_GAUGES, build_metrics
from nexus_ml.thresholds import Thresholds

CLASSES = ("high", "low")
SEGMENTS = ("all", *(f"age={i}-{i + 5}" for i in range(0, 80, 5)))  # 16 groups + all


def registry(models: int) -> tuple[CollectorRegistry, int]:
    m = build_metrics(CollectorRegistry())
    per_class = [f for f, (_, _, labels) in CLINICAL_GAUGES.items() if "class" in labels]
    per_segment = [
        f for f, (_, _, labels) in CLINICAL_GAUGES.items() if labels == ("model", "segment")
    ]
    for i in range(models):
        name = f"model_{i}"
        m.model_accuracy.labels(name).set(0.9)
        m.model_accuracy_samples.labels(name).set(500)
        for segment in SEGMENTS:
            for field in per_segment:
                getattr(m, field).labels(name, segment).set(0.5)
            for cls in CLASSES:
                for field in per_class:
                    if field not in ("model_baseline", "model_positive_class"):
                        getattr(m, field).labels(name, cls, segment).set(0.5)
        for b in range(1, 11):
            m.model_reliability_predicted.labels(name, f"{b / 10:.1f}").set(0.5)
            m.model_reliability_observed.labels(name, f"{b / 10:.1f}").set(0.5)
        for cls in CLASSES:
            m.model_positive_class.labels(name, cls).set(float(cls == "high"))
            for metric in ("recall", "precision"):
                m.model_baseline.labels(name, metric, cls).set(0.9)
        for metric in ("accuracy", "calibration_error"):
            m.model_baseline.labels(name, metric, "").set(0.05)
    samples = sum(len(f.samples) for f in m.registry.collect())
    return m.registry, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--models", type=int, default=3)
    args = parser.parse_args()
    reg, samples = registry(args.models)
    history = MetricHistory()
    names = [f"model_{i}" for i in range(args.models)]
    now = 1_900_000_000.0
    for _ in range(240):  # an hour of 15 s snapshots
        now += 15
        history.record(reg.collect(), now)
    evaluator = AlertEvaluator(Thresholds(), clock=lambda: now, wall_clock=lambda: now)
    collect, record, evaluate = [], [], []
    for _ in range(args.rounds):
        now += 15
        t0 = time.perf_counter()
        families = list(reg.collect())
        t1 = time.perf_counter()
        history.record(families, now)
        t2 = time.perf_counter()
        evaluator.evaluate(history.measurements(names, now))
        t3 = time.perf_counter()
        collect.append(t1 - t0)
        record.append(t2 - t1)
        evaluate.append(t3 - t2)
    size = sum(s.itemsize * len(s) for s in history._snaps)  # the snapshots themselves
    print(f"{args.models} models, {samples} samples per snapshot")
    print(f"collect (prometheus_client): {statistics.median(collect) * 1e3:.1f} ms")
    print(f"record:                   {statistics.median(record) * 1e3:.1f} ms")
    print(f"measurements + evaluate:  {statistics.median(evaluate) * 1e3:.1f} ms")
    print(f"one hour of snapshots:    {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
