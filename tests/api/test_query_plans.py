"""Every query the service runs against predictions/feedback, EXPLAINed on a filled PostgreSQL:
no sequential scan of predictions (partition pruning by time, then an index).

The queries are not listed here: a ``before_cursor_execute`` listener records every statement
the service issues while it predicts, takes feedback, answers every monitoring endpoint and
runs the quality job, so a query someone adds later is checked without touching this file.
Then the table is filled (30 days, one partition a day), ANALYZEd, and each captured
statement is EXPLAINed with the parameters it ran with.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from tests.api.test_predictions import diagnostic_row
from tests.helpers import auth

from nexus_ml.service.wiring import Service
from nexus_ml.storage.partitions import create_days

# ~3,300 rows per daily partition over FILL_MODELS models (the two served are among them, as
# in a hospital serving several): a sequential scan would be the planner's own choice, not a
# tie on a tiny table or a filter that keeps half the rows.
FILL_ROWS = 100_000
FILL_DAYS = 30
FILL_MODELS = 20
TOUCHES = re.compile(r"\b(predictions|feedback)\b", re.IGNORECASE)
M = "/api/v1/monitoring"
MONITORING_GETS = [
    "/metrics/predictions?hours=24",
    "/metrics/predictions/timeline?hours=24&step_seconds=3600",
    "/performance/models?hours=24",
    "/performance/clinical?model=diagnostic",
    "/performance/clinical?model=diagnostic&hours=24",
    "/data-quality/overview",
    "/reports/summary?hours=24",
    "/anomalies",
    "/status",
    "/health",
]
# A sequential scan of an empty partition (default: its rows move to their day when the day
# is created; the days ahead: not yet written) reads nothing: such scans are allowed.
EMPTY = "SELECT relname FROM pg_class WHERE relname LIKE 'predictions%' AND reltuples = 0"


def _scans(plan: Any) -> list[tuple[str, str]]:
    """(node type, relation) of every scan node in a JSON plan."""
    found = []
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.append((plan["Node Type"], plan["Relation Name"]))
        for value in plan.values():
            found += _scans(value)
    elif isinstance(plan, list):
        for value in plan:
            found += _scans(value)
    return found


def _exercise(client: TestClient) -> None:
    """Everything the service does with predictions and feedback, once."""
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    ids = []
    for i in range(3):
        r = client.post(
            "/api/v1/models/diagnostic/predict",
            json={"features": diagnostic_row(i)},
            headers=auth("predict"),
        )
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    r = client.post(
        "/api/v1/models/diagnostic/predict",
        json={"instances": [diagnostic_row(i) for i in range(3, 8)]},
        headers=auth("predict"),
    )
    assert r.status_code == 200, r.text
    client.portal.call(service.writer.flush)  # type: ignore[union-attr]
    for pid in ids:
        r = client.post(
            f"/api/v1/predictions/{pid}/feedback",
            json={"actual": "benign"},
            headers=auth("predict"),
        )
        assert r.status_code == 201, r.text
    for path in MONITORING_GETS:
        r = client.get(M + path, headers=auth("monitor"))
        assert r.status_code == 200, (path, r.text)
    r = client.post(M + "/drift/run", headers=auth("admin"))
    assert r.status_code == 200, r.text


def _fill(service: Service) -> None:
    # Whole days up to tonight's midnight: today's partition is as full as the others (as late
    # in a day), so no partition is small enough for a sequential scan to be the right plan.
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    with service.store.engine.begin() as conn:
        create_days(conn, [(end - timedelta(days=d)).date() for d in range(1, FILL_DAYS + 1)])
        step = FILL_DAYS * 86400 / FILL_ROWS
        conn.execute(
            text(
                "INSERT INTO predictions (id, model, version, created_at, features, "
                "predicted_class, confidence, probabilities, latency_seconds) "
                "SELECT md5('fill' || i), CASE i % :m WHEN 0 THEN 'diagnostic' WHEN 1 THEN "
                "'diabetes_risk' ELSE 'other_' || (i % :m) END, "
                "'fill', :now - i * make_interval(secs => :step), "
                "'{}'::jsonb, 'benign', 0.9, '{}'::jsonb, 0.01 "
                "FROM generate_series(1, :n) AS i"
            ),
            {"now": end, "step": step, "n": FILL_ROWS, "m": FILL_MODELS},
        )
        conn.execute(
            text(
                "INSERT INTO feedback (prediction_id, prediction_created_at, actual, correct, "
                "received_at) SELECT id, created_at, 'benign', true, created_at FROM predictions "
                "WHERE version = 'fill' AND right(id, 1) = '0'"
            )
        )
    with service.store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_no_query_of_the_service_scans_predictions_sequentially(client: TestClient) -> None:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    engine = service.store.engine
    captured: dict[str, Any] = {}

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool):
        if TOUCHES.search(statement) and not statement.lstrip().upper().startswith("EXPLAIN"):
            first = params[0] if many and isinstance(params, list | tuple) and params else params
            captured.setdefault(statement, first)

    event.listen(engine, "before_cursor_execute", record)
    try:
        _exercise(client)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    reads = [s for s in captured if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert len(reads) >= 5, sorted(captured)  # the capture saw the service's reads

    _fill(service)
    offenders = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(EMPTY)
        empty = {name for (name,) in cursor.fetchall()}
        for statement, params in captured.items():
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            seq = [
                rel
                for node, rel in _scans(plan)
                if node == "Seq Scan" and rel.startswith("predictions") and rel not in empty
            ]
            if seq:
                offenders.append((statement, seq))
        raw.rollback()
    finally:
        raw.close()
    assert not offenders, "\n\n".join(f"{s}\n-> Seq Scan on {r}" for s, r in offenders)
