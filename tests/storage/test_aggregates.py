"""The aggregates equal the raw-row computation on the same data (SQLite and PostgreSQL).

Counts, class counts, sums, the maximum and the 20-bin confidence histogram are exact; the
percentiles are within the bound storage/bins.py states (relative ALPHA for latency, absolute
CONFIDENCE_ERROR for confidence).
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from alembic import command
from sqlalchemy import Engine, Integer, func, insert, select
from sqlalchemy.orm import Session

from nexus_ml.storage import PredictionRecord, Store, bins, migrate, new_id
from nexus_ml.storage.aggregates import align
from nexus_ml.storage.migrate import alembic_config
from nexus_ml.storage.models import Feedback, Prediction, PredictionRollup, PredictionRollupBin

T0 = datetime(2026, 11, 30, 21, 37, 13, tzinfo=UTC)
QS = (0.5, 0.95, 0.99)
# The records span two day boundaries (UTC), so windows read daily, hourly and minute rows.
SPAN = timedelta(hours=60)


def _records(n: int, seed: int = 7) -> list[PredictionRecord]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        # Lognormal latencies over several decades; confidences that often sit exactly on
        # a 20-bin edge (multiples of 0.05, as a 20-tree forest gives) or elsewhere.
        latency = rng.lognormvariate(-6.0, 1.5)
        conf = rng.choice([rng.randint(10, 20) / 20, rng.uniform(0.34, 1.0)])
        out.append(
            PredictionRecord(
                id=new_id(),
                model=rng.choice(["heart", "heart", "diabetes"]),
                version=rng.choice(["v1", "v2"]),
                created_at=T0 + timedelta(seconds=rng.uniform(0, SPAN.total_seconds())),
                features={"age": 50},
                predicted_class=rng.choice(["disease", "healthy", "other"]),
                confidence=conf,
                probabilities={"disease": conf},
                latency_seconds=latency,
            )
        )
    return out


def _raw(store: Store, model: str, since: datetime, until: datetime) -> dict[str, object]:
    """What the monitoring computed from the rows before the aggregates."""
    with store.session() as s:
        rows = s.execute(
            select(
                Prediction.latency_seconds, Prediction.confidence, Prediction.predicted_class
            ).where(
                Prediction.model == model,
                Prediction.created_at >= since,
                Prediction.created_at < until,
            )
        ).all()
        labels = s.execute(
            select(func.count(), func.coalesce(func.sum(func.cast(Feedback.correct, Integer)), 0))
            .join(Prediction, Prediction.id == Feedback.prediction_id)
            .where(
                Prediction.model == model,
                Prediction.created_at >= since,
                Prediction.created_at < until,
            )
        ).one()
    lat = np.array([r[0] for r in rows])
    conf = np.array([r[1] for r in rows])
    classes: dict[str, int] = {}
    for r in rows:
        classes[r[2]] = classes.get(r[2], 0) + 1
    hist, _ = np.histogram(conf, bins=20, range=(0.0, 1.0))
    return {
        "count": len(rows),
        "classes": classes,
        "lat_q": np.percentile(lat, [q * 100 for q in QS], method="linear") if len(rows) else None,
        "lat_sum": float(lat.sum()),
        "lat_max": float(lat.max()) if len(rows) else None,
        "conf_q": np.percentile(conf, [q * 100 for q in QS], method="linear")
        if len(rows)
        else None,
        "conf_sum": float(conf.sum()),
        "hist": [int(c) for c in hist],
        "labels": (int(labels[0]), int(labels[1])),
    }


WINDOWS = [
    (T0, T0 + SPAN),  # all of it
    (T0 + timedelta(minutes=7, seconds=20), T0 + timedelta(hours=55, minutes=3)),  # days + edges
    (T0 + timedelta(minutes=7, seconds=20), T0 + timedelta(hours=2, minutes=3)),  # hours + edges
    (T0 + timedelta(minutes=30), T0 + timedelta(minutes=50)),  # minutes only
    (T0 + SPAN + timedelta(hours=5), T0 + SPAN + timedelta(hours=6)),  # empty
]


def test_aggregates_equal_the_raw_rows(store: Store) -> None:
    records = _records(2000)
    # Inserted in batches, some twice (a replay must not be counted twice).
    for i in range(0, len(records), 700):
        store.insert_predictions(records[i : i + 700])
    assert store.insert_predictions(records[:500]) == 0
    for r in records[::10]:
        store.add_feedback(r.id, "disease", r.predicted_class == "disease")
    for window in WINDOWS:
        _check_window(store, window)


def _check_window(store: Store, window: tuple[datetime, datetime]) -> None:
    since, until = align(*window)
    aggs = store.window_aggregates(None, *window)
    for model in ("heart", "diabetes"):
        raw = _raw(store, model, since, until)
        agg = aggs.get(model)
        if raw["count"] == 0:
            assert agg is None or agg.count == 0
            continue
        assert agg is not None
        assert agg.count == raw["count"]
        assert agg.class_counts == raw["classes"]
        assert (agg.feedback, agg.correct) == raw["labels"]
        assert agg.latency_sum == pytest.approx(raw["lat_sum"], rel=1e-9)
        assert agg.latency_max == raw["lat_max"]
        assert agg.confidence_sum == pytest.approx(raw["conf_sum"], rel=1e-9)
        assert bins.coarse_confidence(agg.confidence_bins) == raw["hist"]
        lat_q = bins.quantiles(agg.latency_bins, QS, bins.latency_value)
        for est, exact in zip(lat_q, raw["lat_q"], strict=True):
            assert est is not None
            assert abs(est - exact) <= bins.ALPHA * exact + 1e-12
        conf_q = bins.quantiles(agg.confidence_bins, QS, bins.confidence_value)
        for est, exact in zip(conf_q, raw["conf_q"], strict=True):
            assert est is not None
            assert abs(est - exact) <= bins.CONFIDENCE_ERROR + 1e-12


def test_one_model_filter_reads_only_that_model(store: Store) -> None:
    records = _records(400)
    store.insert_predictions(records)
    aggs = store.window_aggregates("heart", T0, T0 + SPAN)
    assert set(aggs) == {"heart"}
    assert aggs["heart"].count == sum(r.model == "heart" for r in records)


def test_timeline_counts_equal_the_rows_per_bucket(store: Store) -> None:
    records = _records(1000)
    store.insert_predictions(records)
    since, until = T0, T0 + SPAN
    for step in (60, 600, 3600, 86400):
        got: dict[tuple[str, datetime], int] = {}
        for model, at, n in store.window_counts(None, since, until, step):
            key = (model, at - timedelta(seconds=(at.timestamp() % step)))
            got[key] = got.get(key, 0) + n
        want: dict[tuple[str, datetime], int] = {}
        lo, hi = align(since, until)
        for r in records:
            if lo <= r.created_at < hi:
                start = r.created_at - timedelta(seconds=r.created_at.timestamp() % step)
                key = (r.model, start)
                want[key] = want.get(key, 0) + 1
        assert got == want, step


def test_a_label_conflict_adds_nothing_to_the_aggregates(store: Store) -> None:
    (record,) = _records(1)
    store.insert_predictions([record])
    store.add_feedback(record.id, "disease", True)
    with pytest.raises(Exception, match="already has feedback"):
        store.add_feedback(record.id, "healthy", False)
    agg = store.window_aggregates(record.model, T0, T0 + SPAN)[record.model]
    assert (agg.feedback, agg.correct) == (1, 1)


def test_the_migration_backfills_what_was_stored_before_it(engine: Engine) -> None:
    with engine.connect() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004-1")  # just before the aggregates
        conn.commit()
    records = _records(500)
    with Session(engine) as s, s.begin():
        s.execute(insert(Prediction), [r.to_row() for r in records])
        s.execute(
            insert(Feedback),
            [
                {"prediction_id": r.id, "actual": "x", "correct": i % 2 == 0, "received_at": T0}
                for i, r in enumerate(records[::4])
            ],
        )
    migrate(engine)
    store = Store(engine)
    since, until = T0, T0 + SPAN
    aggs = store.window_aggregates(None, since, until)
    for model in ("heart", "diabetes"):
        raw = _raw(store, model, since, until)
        assert aggs[model].count == raw["count"]
        assert aggs[model].class_counts == raw["classes"]
        assert (aggs[model].feedback, aggs[model].correct) == raw["labels"]


def test_latency_bins_keep_the_relative_error_bound() -> None:
    for x in np.geomspace(1.1e-6, 1e4, 5000):
        rep = bins.latency_value(bins.latency_bin(float(x)))
        assert abs(rep - x) <= bins.ALPHA * x * (1 + 1e-12)


def test_confidence_bins_follow_numpys_histogram_on_edges() -> None:
    values = [k / 20 for k in range(21)] + [k / 100 for k in range(101)] + [0.15000000000000002]
    fine = {}
    for v in values:
        i = bins.confidence_bin(v)
        fine[i] = fine.get(i, 0) + 1
    hist, _ = np.histogram(values, bins=20, range=(0.0, 1.0))
    assert bins.coarse_confidence(fine) == [int(c) for c in hist]


def test_copy_and_values_paths_store_and_count_alike(store: Store) -> None:
    # PostgreSQL inserts with COPY; the VALUES path (SQLite's, and PostgreSQL's with
    # fast_insert off) must agree with it: the same rows new, the same aggregates.
    records = _records(600)
    store.fast_insert = True
    assert store.insert_predictions(records[:400]) == 400
    store.fast_insert = False
    assert store.insert_predictions(records[200:]) == 200  # 200 replayed, 200 new
    store.fast_insert = True
    assert store.insert_predictions(records) == 0
    since, until = T0, T0 + SPAN
    aggs = store.window_aggregates(None, since, until)
    for model in ("heart", "diabetes"):
        raw = _raw(store, model, since, until)
        assert aggs[model].count == raw["count"] == sum(r.model == model for r in records)
        assert aggs[model].class_counts == raw["classes"]


def _rollup_table(store: Store, model: str) -> tuple[list[tuple[object, ...]], list[object]]:
    """Every summary and bin row of ``model``, in key order, without the model column."""
    t, b = PredictionRollup.__table__, PredictionRollupBin.__table__
    with store.session() as s:
        summary = s.execute(
            select(t).where(t.c.model == model).order_by(*t.primary_key.columns)
        ).all()
        counts = s.execute(
            select(b).where(b.c.model == model).order_by(*b.primary_key.columns)
        ).all()
    drop = ("model",)
    return (
        [tuple(v for k, v in r._mapping.items() if k not in drop) for r in summary],
        [tuple(v for k, v in r._mapping.items() if k not in drop) for r in counts],
    )


def test_a_batch_counts_as_its_records_one_by_one(store: Store) -> None:
    # The writer pre-aggregates a batch (one upsert per key, minutes added into hours and
    # days) before it touches the tables; record by record must give the same rows: counts,
    # maxima and bins exactly, sums up to rounding.
    records = [r for r in _records(1500) if r.model == "heart"]
    store.insert_predictions(records)
    for r in records:
        store.insert_predictions([dataclasses.replace(r, id=new_id(), model="one_by_one")])
    batch, single = _rollup_table(store, "heart"), _rollup_table(store, "one_by_one")
    assert len(batch[0]) == len(single[0]) > 3 * 60
    assert batch[1] == single[1]
    for a, b in zip(batch[0], single[0], strict=True):
        # (span, bucket, version, predictions, latency_sum, latency_max, confidence_sum, ...)
        assert a[:3] == b[:3]
        assert a[3] == b[3] and a[5] == b[5] and a[7:] == b[7:]
        assert a[4] == pytest.approx(b[4], rel=1e-12)
        assert a[6] == pytest.approx(b[6], rel=1e-12)
