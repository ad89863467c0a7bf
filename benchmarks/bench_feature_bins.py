"""What the per-bin input counters add to one 30-feature prediction, side by side.

Run: python benchmarks/bench_feature_bins.py [--features 30] [--calls 20000] [--repeat 7]
Target: at most 5 µs added per prediction (issue 17).

Three variants of the observer's work per answered instance, timed alternately in one process
so they share the machine's load (2 cores shared by others: read the ratio, not the absolute):

* ``without``: ``ModelObserver.observe`` as before the counters;
* ``with``: the same plus ``bins.add(row)``, the rows binned in blocks of ``HOLD_ROWS`` (the
  cost of binning and of incrementing the counters is included: every block is flushed);
* ``per row`` (with ``--per-row``): binning every row at once (``hold=1``), for comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import timeit
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from nexus_ml.ml.profile import build_profile
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.monitoring.feature_bins import HOLD_ROWS
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.observer import ModelObserver


@dataclasses.dataclass
class _Loaded:
    """The parts of a LoadedModel the observer reads."""

    name: str
    version: str
    classes: tuple[str, ...]
    schema: FeatureSchema
    metadata: dict[str, Any]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--calls", type=int, default=HOLD_ROWS * 80)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--per-row", action="store_true", help="also bin each row at once")
    args = parser.parse_args()
    names = [f"f{i}" for i in range(args.features)]
    ref = np.random.default_rng(0).normal(size=(10_000, args.features))
    loaded = _Loaded(
        name="bench",
        version="1",
        classes=("a", "b"),
        schema=FeatureSchema.from_training(ref, names),
        metadata={"profile": build_profile(ref, names)},
    )
    rows = np.random.default_rng(1).normal(size=(args.calls, args.features))
    observers = {
        label: ModelObserver(build_metrics(CollectorRegistry()), loaded, hold=hold)  # type: ignore[arg-type]
        for label, hold in (("without", HOLD_ROWS), ("with", HOLD_ROWS), ("per row", 1))
        if args.per_row or label != "per row"
    }

    def run(label: str) -> None:
        obs = observers[label]
        observe, add = obs.observe, obs.bins.add
        if label == "without":
            for _ in rows:
                observe([], "a", 0.9, 0.001)
            return
        for row in rows:
            observe([], "a", 0.9, 0.001)
            add(row)
        obs.bins.flush()

    best: dict[str, float] = {label: float("inf") for label in observers}
    for _ in range(args.repeat):  # alternate, so a busy moment hits every variant alike
        for label in observers:
            # CPU time of this process: on a shared host, wall time mostly measures the others.
            seconds = timeit.timeit(
                lambda label=label: run(label), number=1, timer=time.process_time
            )
            best[label] = min(best[label], seconds / args.calls)
    base = best["without"]
    for label, per_call in best.items():
        added = per_call - base
        print(
            f"{label:>8}, {args.features} features: {per_call * 1e6:6.2f} µs per prediction"
            + ("" if label == "without" else f"  (+{added * 1e6:.2f} µs)")
        )


if __name__ == "__main__":
    main()
