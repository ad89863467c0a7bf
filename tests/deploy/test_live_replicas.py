"""Three replicas on one PostgreSQL, scraped by a real Prometheus (issue 16).

Three services under uvicorn (separate processes, ports and data folders, as on separate
machines) share one database; ``nexus-ml stack up`` scrapes all three. Proven, with polls
against deadlines and bounded traffic:

- every prediction is stored exactly once, whichever instance made it;
- the monitoring API of every instance answers for the whole cluster (the aggregates);
- feedback sent at once to another instance than the one that made the prediction is
  accepted (its record still waits in the other's writer: the bounded look-again);
- the model-quality job runs in one process cluster-wide (a PostgreSQL advisory lock held
  elsewhere makes every instance skip), and every instance then exports its result;
- Prometheus' sums over the instances equal what was sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from tests.deploy.live_helpers import PromClient, ServiceProcess, free_port, poll, run_cli
from tests.helpers import KEYS, auth, postgres_schema_url, require_binary

from nexus_ml.cli.stack import stop_stack
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.service.quality_job import LOCK_KEY
from nexus_ml.storage.locks import lock_id
from nexus_ml.thresholds import JOB

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.postgres]

REPLICAS = 3
MODEL = "diagnostic"
N = 120  # predictions, 40 per instance: enough to decide a drift window of 100
SUM = f'sum(ml_model_predictions_total{{job="{JOB}",model="{MODEL}"}})'
FEEDBACK = f'sum by (instance) (ml_model_feedback_total{{job="{JOB}",model="{MODEL}"}})'


@dataclass
class Cluster:
    """The three services, Prometheus, and the database they share."""

    services: list[ServiceProcess]
    clients: list[httpx.Client]
    prom: PromClient
    db_url: str


@pytest.fixture
def cluster(tmp_path: Path, model_dir: Path) -> Iterator[Cluster]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    db_url = next(schema := postgres_schema_url())
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ML_")},
        "DATABASE_URL": db_url,
        "ML_MODEL_PATH": str(model_dir),
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
        # Records wait up to a second in their instance's writer: long enough that a label
        # sent at once to another instance finds nothing stored without the look-again.
        "ML_WRITER_FLUSH_SECONDS": "1.0",
        "ML_DRIFT_WINDOW_SIZE": "300",
        "ML_DRIFT_MIN_WINDOW": "100",
        "ML_DRIFT_INTERVAL_SECONDS": "3600",
        "ML_DRIFT_FIRST_RUN_SECONDS": "1",  # warm-up rounds and the gauge sync: every second
        "ML_SHUTDOWN_GRACE_SECONDS": "5",
    }
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)
    services = [
        ServiceProcess(
            {**base, "ML_DATA_DIR": str(tmp_path / f"data-{i}")},
            free_port(),
            tmp_path / f"service-{i}.log",
        )
        for i in range(REPLICAS)
    ]
    state_dir = tmp_path / "stack"
    prom_port = free_port()
    prom = PromClient(f"http://127.0.0.1:{prom_port}")
    clients: list[httpx.Client] = []
    try:
        for s in services:  # all three start at once, as a rollout would (migrations lock)
            s.start()
        targets = [a for s in services for a in ("--service-target", f"127.0.0.1:{s.port}")]
        up = run_cli(
            "stack", "up", "--state-dir", str(state_dir),
            "--prometheus-port", str(prom_port), "--alertmanager-port", str(free_port()),
            "--receiver-port", str(free_port()), *targets,
            "--scrape-interval", "1s", "--evaluation-interval", "1s", "--fast",
            env=base,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        for s in services:
            s.wait_ready()
        poll(
            lambda: prom.query(f'count(up{{job="{JOB}"}} == 1) == {REPLICAS}'),
            timeout=30,
            what="Prometheus scrapes all three instances",
        )
        clients = [
            httpx.Client(base_url=s.url, headers=auth("admin"), timeout=15) for s in services
        ]
        yield Cluster(services, clients, prom, db_url)
    finally:
        for c in clients:
            c.close()
        prom.close()
        try:
            stop_stack(state_dir, grace=5)
        finally:
            for s in services:
                s.stop()
            schema.close()  # drops the schema


def _rows(n: int) -> list[dict[str, float]]:
    data = load_dataset(MODEL)
    return [
        dict(zip(data.feature_names, map(float, data.X[i % len(data.X)]), strict=True))
        for i in range(n)
    ]


def _stored(db_url: str) -> tuple[int, int, int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*), count(DISTINCT id) FROM predictions"
            n, distinct = conn.execute(text(query)).one()
            labels = conn.execute(text("SELECT count(*) FROM feedback")).scalar_one()
    finally:
        engine.dispose()
    return int(n), int(distinct), int(labels)


def _run_job(client: httpx.Client) -> dict[str, Any]:
    r = client.post("/api/v1/monitoring/drift/run")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_three_replicas_store_once_share_labels_and_one_job(cluster: Cluster) -> None:
    clients, prom = cluster.clients, cluster.prom
    sent: list[str] = []
    for i, row in enumerate(_rows(N)):
        made_by, labelled_by = clients[i % REPLICAS], clients[(i + 1) % REPLICAS]
        r = made_by.post(f"/api/v1/models/{MODEL}/predict", json={"features": row})
        assert r.status_code == 200, r.text
        answer = r.json()
        sent.append(answer["id"])
        # At once, to the next instance: the record is still in the first one's writer.
        fb = labelled_by.post(
            f"/api/v1/predictions/{answer['id']}/feedback",
            json={"actual": answer["predicted_class"]},
        )
        assert fb.status_code == 201, (i, fb.text)
    assert len(set(sent)) == N

    # Every prediction stored exactly once, every label once.
    poll(lambda: _stored(cluster.db_url) == (N, N, N), timeout=30, what="stored once each")

    # The monitoring API of any instance answers for the whole cluster (shared aggregates),
    # not for the third of the traffic it served itself.
    for client in clients:
        r = client.get("/api/v1/monitoring/metrics/predictions", params={"hours": 1})
        assert r.status_code == 200, r.text
        assert r.json()["total"] == N, r.text
        r = client.get("/api/v1/monitoring/performance/models", params={"hours": 1})
        assert r.status_code == 200, r.text
        model = next(m for m in r.json()["models"] if m["model"] == MODEL)
        assert model["predictions"] == N and model["accuracy"] == {"value": 1.0, "n": N}

    # Prometheus: each instance counted what it served and the sum is the whole.
    poll(lambda: prom.query(f"{SUM} == {N}"), timeout=30, what=f"sum over instances = {N}")
    per_instance = prom.query(
        f'sum by (instance) (ml_model_predictions_total{{job="{JOB}",model="{MODEL}"}})'
    )
    assert sorted(float(s["value"][1]) for s in per_instance) == [N / REPLICAS] * REPLICAS
    poll(
        lambda: (
            sorted(float(s["value"][1]) for s in prom.query(FEEDBACK)) == [N / REPLICAS] * REPLICAS
        ),
        timeout=30,
        what="feedback counted where it was received",
    )

    # One quality job cluster-wide: while another session holds the job's advisory lock,
    # every instance skips its round (the lock is the database's, not a process's).
    engine = create_engine(cluster.db_url)
    try:
        with engine.connect() as holder:
            # A warm-up round may hold it this moment: take it as soon as it is free.
            poll(
                lambda: holder.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_id(LOCK_KEY)}
                ).scalar_one(),
                timeout=30,
                what="the job's advisory lock taken by the test",
            )
            holder.commit()
            results = [_run_job(c) for c in clients]
            assert [r["ran"] for r in results] == [False] * REPLICAS
            holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id(LOCK_KEY)})
            holder.commit()
    finally:
        engine.dispose()

    # Released: a round runs (on demand here, or a warm-up round of any instance) and decides.
    def decided() -> dict[str, Any] | None:
        body = _run_job(clients[0])
        model = body.get("models", {}).get(MODEL, {}) if body["ran"] else {}
        return model if (model.get("drift") or {}).get("decided") else None

    result = poll(decided, timeout=30, what="a decided round")
    assert result["window_size"] == N and result["accuracy"]["accuracy"] == 1.0

    # Every instance exports the latest stored result, whichever process computed it, so
    # an aggregation over instances sees one answer.
    accuracy = f'ml_model_accuracy{{job="{JOB}",model="{MODEL}"}}'
    poll(
        lambda: (
            len(found := prom.query(accuracy)) == REPLICAS
            and {float(s["value"][1]) for s in found} == {1.0}
        ),
        timeout=30,
        what="ml_model_accuracy exported by all three instances",
    )
    share = prom.query(f'count(ml_data_drift_share{{job="{JOB}",model="{MODEL}"}})')
    assert float(share[0]["value"][1]) == REPLICAS
