"""Helpers the tests import: keys, PostgreSQL schemas, system binaries, a live service.

Fixtures live in the conftest files; anything a test module imports by name lives here,
so no test imports from a conftest.
"""

from __future__ import annotations

import csv
import functools
import os
import secrets
import shutil
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nexus_ml.monitoring.alerting import ActiveAlert

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from nexus_ml.config import Settings
    from nexus_ml.service.wiring import Service
    from nexus_ml.storage.records import PredictionRecord

IN_CI = os.environ.get("CI", "").lower() == "true"

POSTGRES_URL = os.environ.get(
    "NEXUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_engine() -> Engine:
    return create_engine(POSTGRES_URL, poolclass=NullPool, connect_args={"connect_timeout": 3})


@functools.cache
def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used (None if it can); asked once per session."""
    engine = _admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()} unreachable: {exc!r}"
    finally:
        engine.dispose()
    return None


def require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{problem} (CI=true: PostgreSQL tests must run)")
    pytest.skip(problem)


def postgres_schema_url() -> Iterator[str]:
    """Yield a URL bound to a fresh schema, then drop the schema (generator for fixtures)."""
    require_postgres()
    schema = f"t_{secrets.token_hex(6)}"
    admin = _admin_engine()
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            # Fail rather than hang if a test leaked a connection holding locks in the schema.
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


KEYS = {
    "admin": "admin-key-0123456789abcdef",
    "monitor": "monitor-key-0123456789abcdef",
    "predict": "predict-key-0123456789abcdef",
}


def auth(scope: str) -> dict[str, str]:
    """Headers carrying the test key of ``scope``."""
    return {"Authorization": f"Bearer {KEYS[scope]}"}


def require_binary(name: str) -> str:
    """Path of a system binary; skip (fail under CI=true) when it is missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} not installed (apt-get install the Debian package; .ci/run does)"
        if IN_CI:
            pytest.fail(f"{msg} — CI=true: this test must run")
        pytest.skip(msg)
    return path


@dataclass
class LiveService:
    """A running service: its base URL, parts and metrics registry."""

    url: str
    service: Service
    registry: CollectorRegistry
    settings: Settings


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# A typed training file: the column names a user's CSV has, kept as they are.
# Thresholds unlike the defaults (every `for`, limit and window that two defaults could share),
# for the promtool tests that render rules and their cases afresh: a value rendered from the
# wrong setting shows only where the two settings differ.
PROMTOOL_OVERRIDES: dict[str, Any] = {
    "cpu_usage_high": 70,
    "cpu_usage_high_for": "10m",
    "error_rate_high": 0.02,
    "model_confidence_low": 0.42,
    "training_max_age": "3d",
    "availability_slo": 0.995,
    "memory_usage_high_bytes": 3 * 2**30,
    "disk_usage_high_for": 0,
    "db_connection_errors_window": "10m",
    "db_connection_errors_for": "2m",
    # The clinical limits: at-the-limit cases must hit the rule's float exactly here too.
    "sensitivity_drop_tolerance": 0.08,
    "subgroup_gap_tolerance": 0.15,
    "calibration_error_tolerance": 0.02,
    "accuracy_baseline_tolerance": 0.07,
    "clinical_min_samples": 40,
    "calibration_min_samples": 500,
    "subgroup_gap_for": "5m",
}

WINE = "od280/od315_of_diluted_wines"
MIXED_HEADER = ["age", WINE, "sex", "site", "outcome"]


def write_mixed_csv(path: Path, *, n: int = 240) -> Path:
    """Seeded rows: an integer, a partly missing number, a category, a partly missing one."""
    classes = ("a", "b", "c")
    rng = np.random.default_rng(3)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(MIXED_HEADER)
        for i in range(n):
            k = i % len(classes)
            writer.writerow(
                [
                    int(rng.integers(20, 90)),
                    "" if i % 9 == 0 else round(float(rng.normal(2.0 * k)), 4),
                    ("F", "M")[int(rng.integers(0, 2))],
                    "" if i % 13 == 0 else ("north", "south", "east")[(k + i % 2) % 3],
                    classes[k],
                ]
            )
    return path


def single_openmp_thread() -> Any:
    """A context of one OpenMP thread, for fits in module-scoped fixtures (the function-scoped
    ``one_openmp_thread`` fixture starts too late for them): on a shared 2-core host, boosting's
    default thread team spins against other processes."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def stored_window(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> np.ndarray:
    """Stored predictions' feature dicts as the quality job hands them to drift and quality.

    An object array in ``names`` order holding each value as stored: numbers, category
    strings, None for missing.
    """
    out = np.empty((len(rows), len(names)), dtype=object)
    for i, row in enumerate(rows):
        out[i, :] = [row.get(f) for f in names]
    return out


def active_alert(state: str, name: str = "HighCPU") -> ActiveAlert:
    """A pending or firing alert as the in-process evaluator reports it (fixed texts)."""
    return ActiveAlert(
        name=name,
        severity="warning",
        state=state,  # type: ignore[arg-type]
        labels={},
        summary="s",
        description="d",
        runbook_url="u",
        value=91.0,
        active_since=0.0,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def cli_env(model_path: Path, tmp_path: Path) -> dict[str, str]:
    """The environment a CLI test runs a command in: its own models, data and SQLite file."""
    return {
        "ML_MODEL_PATH": str(model_path),
        "ML_DATA_DIR": str(tmp_path / "data"),
        "ML_DATABASE_URL": f"sqlite:///{tmp_path / 'nexus.db'}",
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
    }


def aged_record(days_ago: float, features: dict[str, Any] | None = None) -> PredictionRecord:
    """A 'heart' prediction record made ``days_ago`` days ago (retention tests)."""
    from datetime import timedelta

    from nexus_ml.storage.records import PredictionRecord as Record
    from nexus_ml.storage.records import new_id, utcnow

    return Record(
        id=new_id(),
        model="heart",
        version="v1",
        created_at=utcnow() - timedelta(days=days_ago),
        features=features if features is not None else {"age": 61},
        predicted_class="healthy",
        confidence=0.9,
        probabilities={"healthy": 0.9, "disease": 0.1},
        latency_seconds=0.01,
    )


def write_wine_csv(path: Path) -> Path:
    """scikit-learn's wine data (13 features, 3 cultivars) as a CSV with target ``cultivar``:
    a schema nothing like the bundled diagnostic model's."""
    from sklearn.datasets import load_wine

    data = load_wine()
    names = [n.replace("/", "_") for n in data.feature_names]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*names, "cultivar"])
        for row, label in zip(data.data, data.target, strict=True):
            writer.writerow([*map(float, row), f"c{label}"])
    return path


def save_candidate(
    model_path: Path,
    name: str,
    *,
    seed: int = 3,
    csv_path: Path | None = None,
    target: str = "cultivar",
) -> str:
    """A new version of ``name`` saved beside the champion without becoming it: a retrain of
    its bundled dataset, or (with ``csv_path``) a model trained on that CSV."""
    from nexus_ml.ml.sources import bundled_candidate, csv_candidate, save_result

    result, source = (
        bundled_candidate(name, seed=seed)
        if csv_path is None
        else csv_candidate(csv_path, target, seed=seed)
    )
    return save_result(model_path, name, result, source, activate=False).version
