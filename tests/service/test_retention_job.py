"""The retention job: once a day cluster-wide (lock + last audited purge), audited with counts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry
from tests.helpers import aged_record

from nexus_ml.config import Settings
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.retention_job import LOCK_KEY, RetentionJob
from nexus_ml.storage import PredictionRecord, Store, make_engine, migrate
from nexus_ml.storage.locks import try_advisory_lock

SECRET_FEATURE = 4242.4242


def _record(days_ago: float) -> PredictionRecord:
    return aged_record(days_ago, {"chol": SECRET_FEATURE})


@pytest.fixture
def store(make_settings: Callable[..., Settings]) -> Iterator[Store]:
    s = Store(make_engine(make_settings().resolved_database_url))
    migrate(s.engine)
    yield s
    s.engine.dispose()


def _job(store: Store, settings: Settings) -> RetentionJob:
    return RetentionJob(settings=settings, store=store, metrics=build_metrics(CollectorRegistry()))


def test_check_purges_once_a_day_and_audits_counts_only(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    job = _job(store, make_settings(retention_days=30))
    old = [_record(40), _record(31)]
    store.insert_predictions([*old, _record(29), _record(1)])
    store.add_feedback(old[0].id, "healthy")

    first = job.check()

    assert first["ran"] is True
    assert first["result"]["predictions"] == 2 and first["result"]["feedback"] == 1
    assert store.count_predictions() == 2
    (entry,) = store.list_audit(action="purge")
    assert (entry.actor, entry.target) == ("service", "predictions")
    assert entry.details is not None and entry.details["predictions"] == 2
    assert str(SECRET_FEATURE) not in repr(entry)  # counts, never values
    # Another instance (or this one, an hour later) finds today's purge done.
    store.insert_predictions([_record(45)])
    second = _job(store, make_settings(retention_days=30)).check()
    assert second["ran"] is False and "less than a day" in second["reason"]
    assert store.count_predictions() == 3
    assert len(store.list_audit(action="purge")) == 1


def test_check_skips_while_another_instance_holds_the_lock(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    job = _job(store, make_settings())
    store.insert_predictions([_record(400)])
    held, release = threading.Event(), threading.Event()

    def other_instance() -> None:
        with try_advisory_lock(store.engine, LOCK_KEY) as got:
            assert got
            held.set()
            release.wait(10)

    thread = threading.Thread(target=other_instance)
    thread.start()
    try:
        assert held.wait(10)
        result = job.check()
    finally:
        release.set()
        thread.join()
    assert result["ran"] is False and "lock" in result["reason"]
    assert store.count_predictions() == 1
    assert job.check()["ran"] is True
    assert store.count_predictions() == 0


def test_retention_zero_keeps_everything(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    job = _job(store, make_settings(retention_days=0))
    store.insert_predictions([_record(4000)])
    result = job.check()
    assert result["ran"] is False and "forever" in result["reason"]
    assert store.count_predictions() == 1
    assert store.list_audit(action="purge") == []


def test_settings_refuse_a_negative_retention() -> None:
    with pytest.raises(ValueError, match="retention_days"):
        Settings(retention_days=-1)
