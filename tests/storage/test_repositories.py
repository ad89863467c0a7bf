"""Every repository function, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from nexus_ml.storage import (
    Conflict,
    NotFound,
    PredictionRecord,
    Store,
    insert_many,
    repositories,
    utcnow,
)
from nexus_ml.storage.models import Prediction
from nexus_ml.storage.records import CHALLENGER, LabelledPrediction, challenger_id
from nexus_ml.storage.repositories import MAX_WINDOW

RecordFactory = Callable[..., PredictionRecord]


def test_insert_is_idempotent_on_id(store: Store, make_record: RecordFactory) -> None:
    records = [make_record() for _ in range(5)]
    assert store.insert_predictions(records) == 5
    again = [*records[:3], make_record()]
    assert store.insert_predictions(again) == 1
    assert store.insert_predictions([records[0], records[0]]) == 0
    assert store.insert_predictions([]) == 0
    assert store.count_predictions() == 6


def test_traceability_columns_round_trip(store: Store, make_record: RecordFactory) -> None:
    traced = make_record(request_id="req:1", profile_hash="c" * 64, role="challenger")
    plain = make_record()
    store.insert_predictions([traced, plain])
    assert store.get_prediction(traced.id) == traced
    got = store.get_prediction(plain.id)
    assert (got.request_id, got.profile_hash, got.role) == (None, None, "champion")


def test_a_role_outside_champion_and_challenger_is_refused(
    store: Store, make_record: RecordFactory
) -> None:
    with pytest.raises(IntegrityError):
        store.insert_predictions([make_record(role="boss")])
    assert store.count_predictions() == 0


def test_insert_many_large_batch(engine: Engine, make_record: RecordFactory) -> None:
    records = [make_record() for _ in range(5000)]  # > SQLite's bound-parameter limit per row set
    assert insert_many(engine, records) == 5000
    assert insert_many(engine, records) == 0
    assert Store(engine).count_predictions("heart") == 5000


def test_get_prediction_round_trips(store: Store, make_record: RecordFactory) -> None:
    created = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    record = make_record(created_at=created, features={"age": 61, "note": "é", "x": None})
    store.insert_predictions([record])
    got = store.get_prediction(record.id)
    assert got == record
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    with pytest.raises(NotFound):
        store.get_prediction("0" * 32)


def test_non_utc_times_are_stored_as_the_same_instant(
    store: Store, make_record: RecordFactory
) -> None:
    plus2 = timezone(timedelta(hours=2))
    record = make_record(created_at=datetime(2026, 3, 1, 14, 0, tzinfo=plus2))
    store.insert_predictions([record])
    assert store.get_prediction(record.id).created_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_naive_datetimes_are_refused(store: Store, make_record: RecordFactory) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        store.insert_predictions([make_record(created_at=datetime(2026, 1, 1))])


def test_recent_predictions_newest_first_and_bounded(
    store: Store, make_record: RecordFactory
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    records = [make_record(created_at=base + timedelta(minutes=i)) for i in range(10)]
    records.append(make_record(model="other", created_at=base + timedelta(hours=5)))
    records.append(make_record(version="v2", created_at=base + timedelta(hours=6)))
    store.insert_predictions(records)

    window = store.recent_predictions("heart", limit=4)
    assert [w.created_at for w in window] == [
        base + timedelta(hours=6),
        *(base + timedelta(minutes=i) for i in (9, 8, 7)),
    ]
    assert window[1].features == records[9].features
    assert window[1].confidence == records[9].confidence
    assert window[1].predicted_class == records[9].predicted_class
    assert window[1].probabilities == records[9].probabilities

    since = store.recent_predictions("heart", since=base + timedelta(minutes=8), version="v1")
    assert [w.created_at.minute for w in since] == [9, 8]
    # until is exclusive, like every window of the monitoring API.
    until = store.recent_predictions(
        "heart", since=base + timedelta(minutes=2), until=base + timedelta(minutes=5)
    )
    assert [w.created_at.minute for w in until] == [4, 3, 2]
    assert len(store.recent_predictions("heart")) == 11
    assert store.recent_predictions("heart", limit=10**9)  # clamped, not an error
    assert MAX_WINDOW >= 1000
    assert store.recent_predictions("nobody") == []


def test_prediction_stats_raw_arrays_per_model(store: Store, make_record: RecordFactory) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    store.insert_predictions(
        [
            make_record(
                created_at=base + timedelta(minutes=1),
                latency_seconds=0.1,
                confidence=0.9,
                predicted_class="a",
            ),
            make_record(
                created_at=base + timedelta(minutes=2),
                latency_seconds=0.2,
                confidence=0.8,
                predicted_class="a",
            ),
            make_record(
                created_at=base + timedelta(minutes=3),
                latency_seconds=0.3,
                confidence=0.7,
                predicted_class="b",
            ),
            make_record(model="m2", created_at=base, latency_seconds=1.0, confidence=0.5),
        ]
    )
    stats = store.prediction_stats()
    assert set(stats) == {"heart", "m2"}
    assert stats["heart"].count == 3
    assert sorted(stats["heart"].latencies) == [0.1, 0.2, 0.3]
    assert sorted(stats["heart"].confidences) == [0.7, 0.8, 0.9]
    assert stats["heart"].class_counts == {"a": 2, "b": 1}
    window = store.prediction_stats(
        "heart", since=base + timedelta(minutes=2), until=base + timedelta(minutes=3)
    )
    assert list(window) == ["heart"]
    assert window["heart"].count == 1
    assert window["heart"].latencies == [0.2]


def test_feedback_not_found_and_conflict(store: Store, make_record: RecordFactory) -> None:
    record = make_record(predicted_class="disease")
    store.insert_predictions([record])
    with pytest.raises(NotFound):
        store.add_feedback("f" * 32, "disease")
    fb = store.add_feedback(record.id, "disease")
    assert fb.correct is True and fb.prediction_id == record.id
    with pytest.raises(Conflict):
        store.add_feedback(record.id, "healthy")
    other = make_record(predicted_class="disease")
    store.insert_predictions([other])
    assert store.add_feedback(other.id, "healthy").correct is False
    explicit = make_record()
    store.insert_predictions([explicit])
    assert store.add_feedback(explicit.id, "whatever", correct=True).correct is True


def test_labelled_join_uses_prediction_time(store: Store, make_record: RecordFactory) -> None:
    now = utcnow()
    old = make_record(created_at=now - timedelta(days=10), predicted_class="a")
    recent = make_record(created_at=now - timedelta(days=1), predicted_class="a")
    unlabelled = make_record(created_at=now - timedelta(hours=1))
    other_model = make_record(model="m2", created_at=now - timedelta(hours=2))
    store.insert_predictions([old, recent, unlabelled, other_model])
    # Labelled just now: filtering on the label time would wrongly include the old prediction.
    store.add_feedback(old.id, "a")
    store.add_feedback(recent.id, "b")
    store.add_feedback(other_model.id, "x")

    rows = store.labelled_predictions("heart", now - timedelta(days=7))
    assert [r.prediction_id for r in rows] == [recent.id]
    assert rows[0].correct is False and rows[0].actual == "b"
    assert rows[0].created_at == recent.created_at
    assert rows[0].received_at > recent.created_at
    both = store.labelled_predictions("heart", now - timedelta(days=30))
    assert [r.prediction_id for r in both] == [old.id, recent.id]  # oldest first
    until = store.labelled_predictions(
        "heart", now - timedelta(days=30), until=now - timedelta(days=5)
    )
    assert [r.prediction_id for r in until] == [old.id]
    # Features and probabilities only when asked for (the clinical metrics' segments).
    assert rows[0].features is None and rows[0].probabilities is None
    detailed = store.labelled_predictions("heart", now - timedelta(days=30), with_features=True)
    assert [(r.features, r.probabilities) for r in detailed] == [
        (old.features, old.probabilities),
        (recent.features, recent.probabilities),
    ]
    assert [r.prediction_id for r in detailed] == [old.id, recent.id]


def test_scored_rows_carry_their_label_or_none(store: Store, make_record: RecordFactory) -> None:
    now = utcnow()
    rows = [make_record(created_at=now - timedelta(minutes=m)) for m in (50, 40, 30, 20, 10)]
    other_model = make_record(model="m2", created_at=now - timedelta(minutes=25))
    store.insert_predictions([*rows, other_model])
    store.add_feedback(rows[1].id, "healthy")
    store.add_feedback(rows[3].id, "disease")
    store.add_feedback(other_model.id, "x")

    # [since, until): the 50- and 10-minute-old predictions fall outside; newest first.
    got = store.scored_rows("heart", now - timedelta(minutes=45), now - timedelta(minutes=15))
    assert [r.created_at for r in got] == [rows[3].created_at, rows[2].created_at,
                                           rows[1].created_at]  # fmt: skip
    assert [r.actual for r in got] == ["disease", None, "healthy"]
    assert got[0].features == rows[3].features
    assert got[0].probabilities == rows[3].probabilities
    assert got[0].predicted_class == rows[3].predicted_class
    assert store.scored_rows("nobody", now - timedelta(days=1), now) == []


def test_scored_rows_are_the_champions_in_since_until_newest_first_up_to_the_limit(
    store: Store, make_record: RecordFactory
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    until = t0 + timedelta(hours=1)
    tick = timedelta(microseconds=1)
    at_since = make_record(created_at=t0)
    tied = sorted((make_record(created_at=t0 + timedelta(minutes=5)) for _ in range(4)),
                  key=lambda r: r.id)  # fmt: skip
    last = make_record(created_at=until - tick)
    outside = [make_record(created_at=t0 - tick), make_record(created_at=until)]
    shadow = make_record(created_at=t0 + timedelta(minutes=7), role=CHALLENGER)
    # Stored in neither id order nor its reverse: only the query's own order by id sorts them.
    store.insert_predictions([at_since, tied[1], tied[3], tied[0], tied[2], last, *outside, shadow])

    def times(limit: int = 100) -> list[datetime]:
        return [r.created_at for r in store.scored_rows("heart", t0, until, limit)]

    # since is in, until is out, a challenger's score is not an answer; equal times by id.
    expected = [last, *tied[::-1], at_since]
    assert times() == [r.created_at for r in expected]
    got = store.scored_rows("heart", t0, until)
    assert [r.features for r in got] == [r.features for r in expected]
    assert times(2) == [last.created_at, tied[3].created_at]
    assert times(0) == [] and times(-1) == []  # not "no limit"


def test_a_labelled_prediction_carries_the_prediction_and_its_label(
    store: Store, make_record: RecordFactory
) -> None:
    """What accuracy per version and the calibration read: the prediction's version, class and
    confidence beside the label's class, correctness and time."""
    first = make_record(version="v3", predicted_class="healthy", confidence=0.625)
    second = make_record(version="v4", predicted_class="disease", confidence=0.875)
    store.insert_predictions([first, second])
    label = store.add_feedback(first.id, "disease")
    store.add_feedback(second.id, "healthy", correct=True)

    rows = store.labelled_predictions("heart", first.created_at - timedelta(seconds=1))
    assert rows == [
        LabelledPrediction(
            prediction_id=first.id,
            created_at=first.created_at,
            version="v3",
            predicted_class="healthy",
            confidence=0.625,
            actual="disease",
            correct=False,
            received_at=label.received_at,
        ),
        LabelledPrediction(
            prediction_id=second.id,
            created_at=second.created_at,
            version="v4",
            predicted_class="disease",
            confidence=0.875,
            actual="healthy",
            correct=True,
            received_at=rows[1].received_at,
        ),
    ]


def test_feedback_cascades_with_prediction(engine: Engine, make_record: RecordFactory) -> None:
    store = Store(engine)
    record = make_record()
    store.insert_predictions([record])
    store.add_feedback(record.id, "a")
    with store.session() as session:
        session.delete(session.get(Prediction, record.id))
        session.commit()
        assert session.scalars(select(Prediction)).all() == []
    assert store.labelled_predictions("heart", utcnow() - timedelta(days=400)) == []


def test_training_run_lifecycle(store: Store) -> None:
    run = store.create_training_run("heart", "fp:abc123")
    assert run.status == "queued" and run.started_at is None and len(run.id) == 32
    running = store.update_training_run(run.id, status="running")
    assert running.status == "running" and running.started_at is not None
    done = store.update_training_run(
        run.id, status="succeeded", version="v2", metrics={"accuracy": 0.91}
    )
    assert done.finished_at is not None and done.version == "v2"
    assert store.get_training_run(run.id) == done
    with pytest.raises(Conflict):
        store.update_training_run(run.id, status="running")
    with pytest.raises(NotFound):
        store.get_training_run("nope")
    with pytest.raises(NotFound):
        store.update_training_run("nope", status="running")

    failed = store.create_training_run("heart", "fp:abc123")
    out = store.update_training_run(failed.id, status="failed", error="x" * 10_000)
    assert out.error is not None and len(out.error) == 2000
    store.create_training_run("m2", "fp:zzz")
    assert [r.id for r in store.list_training_runs("heart")] == [failed.id, run.id]
    assert [r.id for r in store.list_training_runs(status="failed")] == [failed.id]
    assert len(store.list_training_runs(limit=2)) == 2


def test_audit_log(store: Store) -> None:
    first = store.audit("fp:1", "train", "heart", {"reason": "drift"})
    second = store.audit("fp:2", "threshold.set", "latency_p95")
    assert second > first
    entries = store.list_audit()
    assert [e.id for e in entries] == [second, first]
    assert entries[1].details == {"reason": "drift"} and entries[0].details is None
    assert [e.action for e in store.list_audit(actor="fp:1")] == ["train"]
    assert [e.actor for e in store.list_audit(action="threshold.set")] == ["fp:2"]
    assert store.list_audit(since=utcnow() + timedelta(minutes=1)) == []
    assert len(store.list_audit(limit=1)) == 1
    assert [e.id for e in store.list_audit(before=second)] == [first]
    assert store.list_audit(before=first) == []
    assert [e.id for e in store.list_audit(target="heart")] == [first]
    assert store.list_audit(target="heart", action="threshold.set") == []


def test_drift_results(store: Store) -> None:
    assert store.latest_drift_result("heart") is None
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.save_drift_result(
        "heart", "v1", window_size=500, drift_share=0.1, results={"age": {"psi": 0.01}},
        computed_at=t0,
    )  # fmt: skip
    newer = store.save_drift_result(
        "heart", "v2", window_size=800, drift_share=0.4, results={"age": {"psi": 0.3}},
        window_start=t0, window_end=t0 + timedelta(hours=1), computed_at=t0 + timedelta(hours=1),
    )  # fmt: skip
    latest = store.latest_drift_result("heart")
    assert latest == newer and latest.results == {"age": {"psi": 0.3}}
    assert latest.window_end == t0 + timedelta(hours=1)
    v1 = store.latest_drift_result("heart", "v1")
    assert v1 is not None and v1.drift_share == 0.1 and v1.window_start is None


def test_threshold_overrides(store: Store) -> None:
    assert store.get_threshold_override("latency_p95") is None
    store.set_threshold_override("latency_p95", 0.5, "fp:1")
    store.set_threshold_override("latency_p95", 0.75, "fp:2")
    store.set_threshold_override("error_rate", 0.01, "fp:1")
    assert store.get_threshold_override("latency_p95") == 0.75
    overrides = store.threshold_overrides()
    assert {k: v.value for k, v in overrides.items()} == {"latency_p95": 0.75, "error_rate": 0.01}
    assert overrides["latency_p95"].updated_by == "fp:2"
    assert store.delete_threshold_override("error_rate") is True
    assert store.delete_threshold_override("error_rate") is False
    assert set(store.threshold_overrides()) == {"latency_p95"}


# -- every window: a row exactly at each bound, just inside and just outside -------------------


def test_window_counts_are_half_open_and_per_model(
    store: Store, make_record: RecordFactory
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tick = timedelta(microseconds=1)
    heart = [make_record(created_at=t) for t in (t0 - tick, t0, t0 + timedelta(hours=1) - tick)]
    at_until = make_record(created_at=t0 + timedelta(hours=1))
    other = make_record(model="m2", created_at=t0 + timedelta(minutes=5))
    store.insert_predictions([*heart, at_until, other])

    until = t0 + timedelta(hours=1)
    last = t0 + timedelta(minutes=59)
    assert sorted(store.window_counts("heart", t0, until, 60)) == [
        ("heart", t0, 1),
        ("heart", last, 1),
    ]
    assert sorted(store.window_counts(None, t0, until, 60)) == [
        ("heart", t0, 1),
        ("heart", last, 1),
        ("m2", t0 + timedelta(minutes=5), 1),
    ]
    # A challenger's rows are stored but not counted: the aggregates answer for champions.
    store.insert_predictions([make_record(created_at=t0, role="challenger")])
    assert sorted(store.window_counts("heart", t0, until, 60))[0] == ("heart", t0, 1)


def test_windows_are_capped_at_max_window_exactly(
    store: Store, make_record: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repositories, "MAX_WINDOW", 3)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    records = [make_record(created_at=base + timedelta(minutes=i)) for i in range(5)]
    store.insert_predictions(records)
    for r in records:
        store.add_feedback(r.id, "disease")
    newest = [records[i].created_at for i in (4, 3, 2)]
    assert [w.created_at for w in store.recent_predictions("heart")] == newest
    assert [w.created_at for w in store.recent_predictions("heart", limit=3)] == newest
    assert [w.created_at for w in store.recent_predictions("heart", limit=4)] == newest
    assert [w.created_at for w in store.recent_predictions("heart", limit=2)] == newest[:2]
    assert store.recent_predictions("heart", limit=0) == []
    assert store.recent_predictions("heart", limit=-1) == []  # not "no limit"
    # At the cap, the newest labelled predictions (what the accuracy should be about), oldest
    # first.
    labelled = store.labelled_predictions("heart", base)
    assert [r.prediction_id for r in labelled] == [r.id for r in records[2:]]


def test_equal_times_are_ordered_by_id(store: Store, make_record: RecordFactory) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    records = [make_record(created_at=t) for _ in range(4)]
    store.insert_predictions(records)
    for r in records:
        store.add_feedback(r.id, "disease")
    ids = sorted(r.id for r in records)
    window = store.recent_predictions("heart", limit=2)
    by_id = {r.id: r for r in records}
    assert [w.features for w in window] == [by_id[i].features for i in ids[::-1][:2]]
    assert [r.prediction_id for r in store.labelled_predictions("heart", t)] == ids


def test_labelled_and_stats_windows_include_since_and_exclude_until(
    store: Store, make_record: RecordFactory
) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tick = timedelta(microseconds=1)
    until = t0 + timedelta(hours=1)
    times = (t0 - tick, t0, until - tick, until)
    records = [make_record(created_at=t, latency_seconds=i + 1.0) for i, t in enumerate(times)]
    other = make_record(model="m2", created_at=t0)
    store.insert_predictions([*records, other])
    for r in [*records, other]:
        store.add_feedback(r.id, "disease")

    labelled = store.labelled_predictions("heart", t0, until)
    assert [r.prediction_id for r in labelled] == [records[1].id, records[2].id]
    assert [r.prediction_id for r in store.labelled_predictions("heart", t0)] == [
        r.id for r in records[1:]
    ]
    stats = store.prediction_stats("heart", since=t0, until=until)
    assert list(stats) == ["heart"] and sorted(stats["heart"].latencies) == [2.0, 3.0]
    assert list(store.prediction_stats("m2")) == ["m2"]
    assert store.count_predictions("m2") == 1
    assert store.count_predictions() == 5


def test_refusals_name_the_prediction(store: Store, make_record: RecordFactory) -> None:
    record = make_record()
    store.insert_predictions([record])
    store.add_feedback(record.id, "disease")
    with pytest.raises(NotFound, match=f"^prediction {'f' * 32}$"):
        store.get_prediction("f" * 32)
    with pytest.raises(NotFound, match=f"^prediction {'e' * 32}$"):
        store.add_feedback("e" * 32, "disease")
    with pytest.raises(Conflict, match=f"^prediction {record.id} already has feedback$"):
        store.add_feedback(record.id, "healthy")


def test_feedback_is_stamped_when_received(store: Store, make_record: RecordFactory) -> None:
    record = make_record(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    store.insert_predictions([record])
    before = utcnow()
    fb = store.add_feedback(record.id, "healthy")
    assert before <= fb.received_at <= utcnow()
    assert (fb.actual, fb.prediction_id, fb.id > 0) == ("healthy", record.id, True)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "orm"])
def test_both_insert_paths_read_back_every_json_value_alike(
    store: Store, make_record: RecordFactory, fast: bool
) -> None:
    # The fast path (COPY on PostgreSQL, one multi-row INSERT with orjson's JSON on SQLite)
    # and SQLAlchemy's ORM INSERT store values that read back the same, whatever JSON holds.
    features = {
        "tiny": 1e-07,
        "huge": 1e16,
        "neg_zero": -0.0,
        "third": 1 / 3,
        "big_int": 2**63 - 1,
        "flag": True,
        "none": None,
        "text": "ação ✓ \u2028",
        "nested": {"list": [1, 2.5, "x"]},
    }
    records = [make_record(features=features), make_record(features={"past_64_bits": 2**70})]
    store.fast_insert = fast
    assert store.insert_predictions(records) == 2
    assert store.insert_predictions(records) == 0
    for record in records:
        back = store.get_prediction(record.id)
        assert back.features == record.features
        assert back.probabilities == record.probabilities
        assert back.created_at == record.created_at
        assert (back.confidence, back.latency_seconds) == (
            record.confidence,
            record.latency_seconds,
        )


def test_labelled_reads_by_role_version_and_what_a_challenger_scored(
    store: Store, make_record: RecordFactory
) -> None:
    # The champion answered three requests with two versions; a challenger (version c1) also
    # scored two of them, the second only after the window. Each filter keeps its own rows.
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    until = t0 + timedelta(hours=1)
    a = make_record(created_at=t0, version="v1", request_id="req-a")
    b = make_record(created_at=t0 + timedelta(minutes=1), version="v2", request_id="req-b")
    c = make_record(created_at=t0 + timedelta(minutes=2), version="v2", request_id="req-c")
    shadow_a = make_record(
        id=challenger_id(a.id), created_at=a.created_at, version="c1", request_id="req-a",
        role=CHALLENGER,
    )  # fmt: skip
    shadow_late = make_record(
        id=challenger_id(c.id), created_at=until, version="c1", request_id="req-c", role=CHALLENGER
    )
    shadow_other = make_record(
        id=challenger_id(b.id), created_at=b.created_at, version="c2", request_id="req-b",
        role=CHALLENGER,
    )  # fmt: skip
    # An answer by a champion version named like the challenger (promoted since): its request
    # was not scored by the challenger.
    d = make_record(created_at=t0 + timedelta(minutes=3), version="c1", request_id="req-d")
    store.insert_predictions([a, b, c, d, shadow_a, shadow_late, shadow_other])
    store.add_feedback(a.id, "disease", challenger=shadow_a.id)
    store.add_feedback(b.id, "disease", challenger=shadow_other.id)
    store.add_feedback(c.id, "disease")
    store.add_feedback(d.id, "disease")

    def ids(**kwargs: object) -> list[str]:
        return [r.prediction_id for r in store.labelled_predictions("heart", t0, until, **kwargs)]

    assert ids() == [a.id, b.id, c.id, d.id]  # champions only by default
    # The drift window reads the answers only, not a challenger's scores of them.
    assert len(store.recent_predictions("heart")) == 4
    assert ids(role=CHALLENGER) == [shadow_a.id, shadow_other.id]
    # A challenger's label is judged against its own answer, not the champion's.
    scores = store.labelled_predictions("heart", t0, until, role=CHALLENGER)
    assert [r.correct for r in scores] == [
        s.predicted_class == "disease" for s in (shadow_a, shadow_other)
    ]
    assert ids(version="v2") == [b.id, c.id]
    # Requests c1 scored inside the window: req-a only (its req-c score came at `until`).
    assert ids(scored_by="c1") == [a.id]
    assert ids(scored_by="c2") == [b.id]
    assert ids(scored_by="c1", version="v2") == []
    assert [r.prediction_id for r in store.labelled_predictions("heart", t0, scored_by="c1")] == [
        a.id,
        c.id,
    ]  # without `until` the late score counts


def test_minute_totals_are_per_model_and_minute_of_the_pieces_asked(
    store: Store, make_record: RecordFactory
) -> None:
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    records = [
        make_record(created_at=t0 + timedelta(seconds=10), confidence=0.5),
        make_record(created_at=t0 + timedelta(seconds=50), confidence=0.75),
        make_record(created_at=t0 + timedelta(minutes=1, seconds=5), confidence=1.0),
        make_record(model="m2", created_at=t0 + timedelta(seconds=30), confidence=0.25),
        make_record(created_at=t0 + timedelta(minutes=5), confidence=0.5),  # not asked for
    ]
    store.insert_predictions(records)
    got = store.minute_totals([(t0, t0 + timedelta(minutes=2))])
    assert set(got) == {"heart", "m2"}
    heart = got["heart"]
    assert sorted(heart) == [t0, t0 + timedelta(minutes=1)]
    assert (heart[t0].predictions, heart[t0].confidence_sum) == (2, 1.25)
    assert sum(heart[t0].class_counts.values()) == 2
    assert got["m2"][t0].predictions == 1
