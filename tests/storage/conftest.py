"""Storage fixtures built on ``db_url`` (tests/conftest.py: SQLite file or fresh PG schema)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from nexus_ml.storage import PredictionRecord, Store, make_engine, migrate, new_id, utcnow


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated engine on ``db_url``."""
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine) -> Store:
    """A Store over the migrated ``engine``."""
    return Store(engine)


RecordFactory = Callable[..., PredictionRecord]


@pytest.fixture
def make_record() -> RecordFactory:
    """Build PredictionRecords; keyword arguments override fields."""
    counter = iter(range(1_000_000))

    def build(**overrides: object) -> PredictionRecord:
        i = next(counter)
        fields: dict[str, object] = {
            "id": new_id(),
            "model": "heart",
            "version": "v1",
            "created_at": utcnow() - timedelta(seconds=1000 - i % 1000),
            "features": {"age": 40 + i % 30, "chol": 200.5 + i, "sex": "f"},
            "predicted_class": "disease" if i % 3 else "healthy",
            "confidence": 0.5 + (i % 50) / 100,
            "probabilities": {"disease": 0.7, "healthy": 0.3},
            "latency_seconds": 0.001 * (1 + i % 10),
        }
        fields.update(overrides)
        return PredictionRecord(**fields)  # type: ignore[arg-type]

    return build
