"""What does one clinical answer cost, from stored rows to segments? Store reads and evaluation.

Run: ``python benchmarks/bench_clinical_service.py [--rounds 3] [--sizes 1000,10000,100000]``.

The bundled ``diagnostic`` model (30 features) with 16 declared segment groups (two numeric
features, seven bins and `other` each), n stored predictions, all of them labelled: what
``GET /monitoring/performance/clinical`` does for a window holding them (the job evaluates the
same way, on its own windows). Reported per size, median of ``rounds`` (wall seconds):

* ``one read``: ``Store.scored_rows`` on SQLite — the window's predictions with their labels,
  what the endpoint reads;
* ``two reads, before``: ``Store.labelled_predictions(..., with_features=True)`` and
  ``Store.recent_predictions(since=..., until=...)``, what it read before (every labelled
  feature map twice);
* ``evaluate``: ``ClinicalEvaluator.evaluate`` (row conversion, segment masks, ``realised`` and
  ``estimated`` for ``all`` and each group, positive rates).

Target: the whole answer for 10,000 rows under 1 s; 100,000 rows (the store's window cap) is
reported, not targeted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.ml.segments import SegmentIndex, parse_segments
from nexus_ml.ml.sources import ensure_bundled_models
from nexus_ml.service.clinical import ClinicalEvaluator
from nexus_ml.stats.performance import ConfidenceEstimator
from nexus_ml.storage.db import make_engine
from nexus_ml.storage.migrate import migrate
from nexus_ml.storage.models import Feedback
from nexus_ml.storage.records import PredictionRecord, new_id, utcnow
from nexus_ml.storage.repositories import Store

SEGMENTS = "mean_radius:0-10-11-12-13-14-16-40,mean_texture:0-14-16-18-19-21-23-50"


def model(folder: Path) -> LoadedModel:
    ensure_bundled_models(folder, names=("diagnostic",))
    registry = ModelRegistry(folder)
    registry.load_all()
    return registry.get("diagnostic")


def fill(store: Store, loaded: LoadedModel, n: int, seed: int) -> None:
    """n stored predictions of reference-like rows, each labelled (90 % agree)."""
    rng = np.random.default_rng(seed)
    names = list(loaded.schema.names)
    now = utcnow()
    X = rng.normal(size=(n, len(names)))
    X[:, names.index("mean_radius")] = rng.uniform(7, 28, n)
    X[:, names.index("mean_texture")] = rng.uniform(10, 39, n)
    p = rng.uniform(size=n)
    neg, pos = loaded.classes
    records = [
        PredictionRecord(
            id=new_id(),
            model=loaded.name,
            version=loaded.version,
            created_at=now - timedelta(seconds=0.1 * (n - i)),
            features=dict(zip(names, map(float, X[i]), strict=True)),
            predicted_class=pos if p[i] >= 0.5 else neg,
            confidence=float(max(p[i], 1 - p[i])),
            probabilities={neg: float(1 - p[i]), pos: float(p[i])},
            latency_seconds=0.001,
        )
        for i in range(n)
    ]
    for start in range(0, n, 5000):
        store.insert_predictions(records[start : start + 5000])
    flips = rng.uniform(size=n) < 0.1
    labels = []
    for r, flip in zip(records, flips, strict=True):
        actual = (neg if r.predicted_class == pos else pos) if flip else r.predicted_class
        labels.append(
            {
                "prediction_id": r.id,
                "actual": actual,
                "correct": actual == r.predicted_class,
                "received_at": now,
            }
        )
    # One statement, not n add_feedback calls: only the reads are measured.
    with store.session() as session:
        session.execute(insert(Feedback), labels)
        session.commit()


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def one_answer(
    store: Store, evaluator: ClinicalEvaluator, name: str, n: int
) -> tuple[float, float, float]:
    """Seconds to read the window as the endpoint does (one query), as it did before (labelled
    rows and window rows apart), and to evaluate."""
    since, until = utcnow() - timedelta(days=1), utcnow()
    t1, rows = timed(lambda: store.scored_rows(name, since, until))
    t2, _ = timed(
        lambda: (
            store.labelled_predictions(name, since, until, with_features=True),
            store.recent_predictions(name, since=since, until=until),
        )
    )
    labelled = [r for r in rows if r.actual is not None]
    t3, result = timed(lambda: evaluator.evaluate(labelled, rows))
    assert result["segments"][0]["labelled"] == n  # the window held them all
    return t1, t2, t3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        loaded = model(Path(tmp) / "models")
        schema = loaded.info.feature_schema()
        # The bench declares its own segments on the bundled model (the same pipeline).
        evaluator = ClinicalEvaluator(
            classes=loaded.classes,
            positive_class=loaded.info.positive_class,
            threshold=None,
            calibration=ConfidenceEstimator.from_profile(loaded.metadata["profile"]),
            segmenter=SegmentIndex(parse_segments(SEGMENTS, schema), schema).masks,
            min_count=30,
            max_groups=16,
        )
        print("| rows | one read (s) | two reads, before (s) | evaluate (s) | total (s) |")
        print("|---:|---:|---:|---:|---:|")
        for n in (int(s) for s in args.sizes.split(",")):
            engine = make_engine(f"sqlite:///{tmp}/bench-{n}.db")
            migrate(engine)
            store = Store(engine)
            fill(store, loaded, n, seed=n)
            reads, windows, evals = [], [], []
            for _ in range(args.rounds):
                t1, t2, t3 = one_answer(store, evaluator, loaded.name, n)
                reads.append(t1)
                windows.append(t2)
                evals.append(t3)
            r, w, e = (statistics.median(x) for x in (reads, windows, evals))
            print(f"| {n:,} | {r:.3f} | {w:.3f} | {e:.3f} | {r + e:.3f} |")
            engine.dispose()


if __name__ == "__main__":
    main()
