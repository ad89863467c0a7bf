"""Does every monitoring endpoint answer in under 100 ms (p50) whatever PostgreSQL stores?

Run: ``python benchmarks/bench_monitoring_scale.py --size 1000000 [--size 10000000 ...]
[--database bench_scale] [--days 30] [--rounds 15] [--fresh] [--fill-only]``.

Fills a dedicated PostgreSQL database (created if missing on the server of
``NEXUS_TEST_POSTGRES_URL``; never a test database) up to each ``--size`` stored predictions,
spread evenly over the last ``--days`` days for the two bundled models, one in ten labelled,
then serves every monitoring endpoint in-process (the app of ``create_app``, a TestClient: no
network, the whole request path including auth and serialisation) ``--rounds`` times each and
prints p50/p95 in milliseconds, the server's RSS and the table sizes.

The fill is a fast path: one transaction per UTC day of data, generated inside PostgreSQL
(``generate_series`` into a staging table), holding the INSERT of its predictions and labels
and the additive upserts of exactly their aggregates, computed in SQL with the bins of
storage/bins.py; a check then compares the aggregates of the last two hours with the rows
through the service's own reads (counts and classes exact, percentiles within the bound). To
keep the fill inside the time budget of a 2-core shared host, the
predictions older than the last two hours carry an empty feature map (the drift window and the
labelled rows the quality job reads in those two hours carry the models' full features); no
endpoint measured here reads a feature map. The model-quality job is run once before the
measurement so that ``/performance/clinical`` has its stored result.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from nexus_ml.api.app import create_app
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import BUNDLED_DATASETS
from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.ml.sources import ensure_bundled_models
from nexus_ml.storage import Store, aggregates, bins, make_engine, migrate
from nexus_ml.storage.partitions import create_days

POSTGRES_URL = os.environ.get(
    "NEXUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
KEY = "monitor-bench-" + uuid.uuid4().hex  # made per run: no example credential
ADMIN_KEY = "admin-bench-" + uuid.uuid4().hex
LABELLED_SHARE = 0.1
FULL_FEATURES_HOURS = 2

M = "/api/v1/monitoring"
ENDPOINTS = [
    ("health", "/health", {}),
    ("alerts", "/alerts", {}),
    ("status", "/status", {}),
    ("metrics/summary", "/metrics/summary", {}),
    ("metrics/predictions (24 h)", "/metrics/predictions", {}),
    ("metrics/predictions (30 d)", "/metrics/predictions", {"hours": 720}),
    ("timeline (1 h per minute)", "/metrics/predictions/timeline", {}),
    ("timeline (24 h per hour)", "/metrics/predictions/timeline",
     {"hours": 24, "step_seconds": 3600}),
    ("metrics/training", "/metrics/training", {}),
    ("performance/system", "/performance/system", {}),
    ("performance/models (7 d)", "/performance/models", {}),
    ("performance/clinical (job's)", "/performance/clinical", {"model": "diagnostic"}),
    ("data-quality/overview", "/data-quality/overview", {}),
    ("config/thresholds", "/config/thresholds", {}),
    ("reports/summary (24 h)", "/reports/summary", {}),
    ("reports/summary (30 d)", "/reports/summary", {"hours": 720}),
]  # fmt: skip


def database_url(name: str, fresh: bool) -> str:
    """The URL of database ``name`` on the test server, created (or recreated) here."""
    base = make_url(POSTGRES_URL)
    if name.startswith("test_"):
        raise SystemExit("refusing to fill a test database: pick another --database")
    admin = create_engine(base.set(database="postgres"), poolclass=NullPool)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        if fresh and exists.first():
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            exists = None
        if (
            fresh
            or not conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
        ):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def load_models(folder: Path) -> list[LoadedModel]:
    """The bundled models, trained once into ``folder``."""
    ensure_bundled_models(folder, names=BUNDLED_DATASETS)
    registry = ModelRegistry(folder)
    registry.load_all()
    return [registry.get(n) for n in BUNDLED_DATASETS]


FILL_SQL = """
CREATE TEMP TABLE stage ON COMMIT DROP AS
SELECT lpad(to_hex((extract(epoch FROM s.ts) * 1000)::bigint), 12, '0')
       || substr(md5(random()::text || clock_timestamp()::text || g::text), 1, 20) AS id,
       CASE WHEN s.u < 2.0 / 3 THEN :m1 ELSE :m2 END AS model,
       CASE WHEN s.u < 2.0 / 3 THEN :v1 ELSE :v2 END AS version,
       s.ts AS created_at,
       CASE WHEN s.ts < :full_after THEN '{}'::jsonb
            ELSE (SELECT jsonb_object_agg(f, round((10 + 3 * random())::numeric, 3))
                  FROM unnest(CASE WHEN s.u < 2.0 / 3 THEN CAST(:f1 AS text[])
                                   ELSE CAST(:f2 AS text[]) END) AS f) END AS features,
       CASE WHEN s.p >= 0.5 THEN (CASE WHEN s.u < 2.0 / 3 THEN :pos1 ELSE :pos2 END)
            ELSE (CASE WHEN s.u < 2.0 / 3 THEN :neg1 ELSE :neg2 END) END AS predicted_class,
       greatest(s.p, 1 - s.p) AS confidence,
       jsonb_build_object(CASE WHEN s.u < 2.0 / 3 THEN :neg1 ELSE :neg2 END, 1 - s.p,
                          CASE WHEN s.u < 2.0 / 3 THEN :pos1 ELSE :pos2 END, s.p) AS probabilities,
       exp(-6.0 + 0.6 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS latency_seconds,
       s.label < :labelled AS labelled,
       s.agree < 0.9 AS agree,
       (CASE WHEN s.u < 2.0 / 3 THEN :pos1 ELSE :pos2 END) AS pos,
       (CASE WHEN s.u < 2.0 / 3 THEN :neg1 ELSE :neg2 END) AS neg
FROM generate_series(1, :n) AS g
CROSS JOIN LATERAL (
    SELECT random() AS u, random() AS p, random() AS label, random() AS agree,
           least(:lo + random() * (:hi - :lo), :now - random() * interval '60 seconds') AS ts
    WHERE g > 0
) AS s;

INSERT INTO predictions (id, model, version, created_at, features, predicted_class, confidence,
                         probabilities, latency_seconds)
SELECT id, model, version, created_at, features, predicted_class, confidence, probabilities,
       latency_seconds FROM stage;

CREATE TEMP TABLE stage_fb ON COMMIT DROP AS
SELECT id, model, version, created_at, predicted_class,
       CASE WHEN agree THEN predicted_class
            WHEN predicted_class = pos THEN neg ELSE pos END AS actual
FROM stage WHERE labelled;

INSERT INTO feedback (prediction_id, actual, correct, received_at, prediction_created_at)
SELECT id, actual, actual = predicted_class, least(created_at + interval '1 hour', :now),
       created_at
FROM stage_fb;

INSERT INTO prediction_rollups AS t (span_seconds, model, bucket_start, version, predictions,
    latency_sum, latency_max, confidence_sum, feedback, correct)
SELECT sp.span, s.model, to_timestamp(floor(extract(epoch FROM s.created_at) / sp.span) * sp.span),
       s.version, count(*), sum(s.latency_seconds), max(s.latency_seconds), sum(s.confidence),
       count(f.id), count(f.id) FILTER (WHERE f.actual = f.predicted_class)
FROM stage s LEFT JOIN stage_fb f ON f.id = s.id
CROSS JOIN (VALUES (60), (3600), (86400)) AS sp(span)
GROUP BY 1, 2, 3, 4
ON CONFLICT (span_seconds, model, bucket_start, version) DO UPDATE SET
    predictions = t.predictions + excluded.predictions,
    latency_sum = t.latency_sum + excluded.latency_sum,
    latency_max = greatest(t.latency_max, excluded.latency_max),
    confidence_sum = t.confidence_sum + excluded.confidence_sum,
    feedback = t.feedback + excluded.feedback,
    correct = t.correct + excluded.correct;

INSERT INTO prediction_rollup_bins AS t (span_seconds, model, bucket_start, version, kind, key,
                                         count)
SELECT sp.span, s.model, to_timestamp(floor(extract(epoch FROM s.created_at) / sp.span) * sp.span),
       s.version, k.kind, k.key, count(*)
FROM stage s
CROSS JOIN (VALUES (60), (3600), (86400)) AS sp(span)
CROSS JOIN LATERAL (VALUES
    ('class', s.predicted_class),
    ('latency', (CASE WHEN s.latency_seconds <= :floor THEN :floor_index
                 ELSE greatest(:floor_index + 1,
                               ceil(ln(s.latency_seconds) / :ln_gamma)::int) END)::text),
    ('confidence', least(greatest(width_bucket(s.confidence, CAST(:edges AS float8[])) - 1, 0),
                         :last_bin)::text)
) AS k(kind, key)
GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (span_seconds, model, bucket_start, version, kind, key) DO UPDATE SET
    count = t.count + excluded.count
"""


class Filler:
    """Adds predictions, labels and their aggregates, one transaction per UTC day of data.

    Generated inside PostgreSQL (``generate_series`` into a staging table) to fill ten million
    rows within the time budget of a shared 2-core host; the aggregates are computed in SQL
    with the bins of storage/bins.py and added with the writer's additive upserts, and
    :meth:`verify` checks them against the rows through the service's own reads.
    """

    def __init__(self, url: str, models: list[LoadedModel]) -> None:
        self.engine = make_engine(url)
        migrate(self.engine)
        self.models = models

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM predictions")).scalar_one())

    def fill(self, target: int, days: int, now: datetime) -> float:
        """Add predictions until ``target`` are stored; returns rows added per second."""
        add = target - self.count()
        if add <= 0:
            return 0.0
        day = timedelta(days=1)
        first = aggregates.floor_to(now - timedelta(days=days), 86400)
        chunks = -(-(now - first) // day)
        a, b = self.models
        params: dict[str, Any] = {
            "m1": a.name, "m2": b.name, "v1": a.version, "v2": b.version,
            "f1": list(a.schema.names), "f2": list(b.schema.names),
            "neg1": a.classes[0], "pos1": a.classes[-1],
            "neg2": b.classes[0], "pos2": b.classes[-1],
            "labelled": LABELLED_SHARE, "now": now,
            "full_after": now - timedelta(hours=FULL_FEATURES_HOURS),
            "floor": bins.LATENCY_FLOOR, "floor_index": bins.latency_bin(0.0),
            "ln_gamma": math.log(bins.GAMMA), "edges": bins.CONFIDENCE_EDGES[:-1],
            "last_bin": bins.CONFIDENCE_BINS - 1,
        }  # fmt: skip
        # The day partitions a service running through these days would have made ahead
        # (ensure_partitions); without them every row fell into the DEFAULT partition.
        with self.engine.begin() as conn:
            create_days(conn, [(first + d * day).date() for d in range(chunks + 1)])
        t0 = time.perf_counter()
        done = 0
        for c in range(chunks):
            n = add * (c + 1) // chunks - add * c // chunks
            lo = first + c * day
            with self.engine.begin() as conn:
                for stmt in FILL_SQL.split(";\n"):
                    hi = min(lo + day, now)  # today's chunk ends now, not at midnight
                    conn.execute(text(stmt), {**params, "n": n, "lo": lo, "hi": hi})
            done += n
            rate = done / (time.perf_counter() - t0)
            print(f"  filled {done:,} of {add:,} ({rate:,.0f} rows/s)", flush=True)
        return add / (time.perf_counter() - t0)

    def verify(self, now: datetime) -> None:
        """The aggregates of the last two hours equal the raw-row computation (per model)."""
        store = Store(self.engine)
        since, until = aggregates.align(now - timedelta(hours=2), now)
        aggs = store.window_aggregates(None, since, until)
        raw = store.prediction_stats(None, since, until)
        assert set(aggs) == set(raw), (set(aggs), set(raw))
        for name, r in raw.items():
            g = aggs[name]
            assert g.count == r.count and g.class_counts == r.class_counts, name
            exact = np.percentile(r.latencies, [50, 95, 99], method="linear")
            est = bins.quantiles(g.latency_bins, (0.5, 0.95, 0.99), bins.latency_value)
            for e, x in zip(est, exact, strict=True):
                assert e is not None and abs(e - x) <= bins.ALPHA * x, (name, e, x)
        n = sum(r.count for r in raw.values())
        print(f"  verified: aggregates of the last 2 h equal the rows ({n:,} rows)")

    def sizes(self) -> dict[str, str]:
        # Autocommit: in the connection's implicit transaction, closed with a rollback, the
        # statistics ANALYZE gathered were thrown away (the planner then guessed 1 row a
        # partition and the quality job's join took seconds; autovacuum keeps them in service).
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)), "
                    "reltuples::bigint FROM pg_class WHERE relname IN ('predictions', 'feedback', "
                    "'prediction_rollups', 'prediction_rollup_bins')"
                )
            ).all()
        return {name: f"{size} (~{tuples:,} rows)" for name, size, tuples in rows}


def measure(url: str, model_dir: Path, data_dir: Path, rounds: int) -> dict[str, list[float]]:
    """Milliseconds per request for every endpoint, ``rounds`` times each."""
    settings = Settings(
        database_url=url,
        model_path=model_dir,
        data_dir=data_dir,
        api_keys=f"monitor:{KEY},admin:{ADMIN_KEY}",
        drift_interval_seconds=86400.0,
        alert_interval_seconds=3600.0,
    )
    out: dict[str, list[float]] = {}
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        t = time.perf_counter()
        r = client.post(M + "/drift/run", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert r.status_code == 200, r.text
        print(f"  quality job: {time.perf_counter() - t:.1f} s", flush=True)
        headers = {"Authorization": f"Bearer {KEY}"}
        for label, path, params in ENDPOINTS:
            r = client.get(M + path, params=params, headers=headers)  # warm
            assert r.status_code == 200, (label, r.text)
            if path == "/performance/clinical":
                assert r.json()["source"] == "quality_job", r.json()
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                r = client.get(M + path, params=params, headers=headers)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
            out[label] = times
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, action="append", required=True)
    ap.add_argument("--database", default="bench_scale")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--fresh", action="store_true", help="drop and recreate the database first")
    ap.add_argument("--fill-only", action="store_true")
    ap.add_argument(
        "--models", type=Path, default=Path(tempfile.gettempdir()) / "nexus-bench-models"
    )
    args = ap.parse_args()
    url = database_url(args.database, args.fresh)
    models = load_models(args.models)
    filler = Filler(url, models)
    now = datetime.now(UTC)
    for size in sorted(args.size):
        print(f"== {size:,} stored predictions", flush=True)
        rate = filler.fill(size, args.days, now)
        if rate:
            print(f"  fill: {rate:,.0f} rows/s (generated in SQL with aggregates, a day a time)")
        filler.verify(now)
        for name, size_text in sorted(filler.sizes().items()):
            print(f"  {name}: {size_text}")
        if args.fill_only:
            continue
        with tempfile.TemporaryDirectory() as data:
            times = measure(url, args.models, Path(data), args.rounds)
        print(f"  {'endpoint':<32} {'p50 ms':>8} {'p95 ms':>8}")
        for label, ms in times.items():
            p95 = statistics.quantiles(ms, n=20)[-1] if len(ms) > 1 else ms[0]
            print(f"  {label:<32} {statistics.median(ms):>8.1f} {p95:>8.1f}")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"  peak RSS of this process (filler + server): {rss:,.0f} MB", flush=True)
    filler.engine.dispose()


if __name__ == "__main__":
    main()
