"""What do daily partitions cost a look-up by prediction id (feedback)?

Ids are time-ordered (``new_id``: Unix milliseconds first), so ``Store._find_prediction`` looks
in the partitions around the id's time first; the rows here have such ids.

Run: ``python benchmarks/bench_partition_lookup.py [--days 190] [--rows-per-day 2000]
[--lookups 300]``.

Two schemas in the PostgreSQL of ``NEXUS_TEST_POSTGRES_URL``: one migrated (predictions
partitioned, ``--days`` day partitions: 190 is the 180-day default plus the days ahead), one
with the same rows in a plain table keyed by id (the layout before migration 0005). The figure
is the median time of ``Store.get_prediction`` over ``--lookups`` random stored ids on each,
measured alternately in one run, and their ratio. Also the time of a purge that drops one day
partition against one that deletes the same day's rows from the plain table.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from nexus_ml.storage import Store, make_engine, migrate
from nexus_ml.storage.partitions import create_days
from nexus_ml.storage.retention import purge_database

POSTGRES_URL = os.environ.get(
    "NEXUS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Ids as new_id makes them: the Unix milliseconds of the record in 12 hex digits, then random.
FILL = (
    "INSERT INTO predictions (id, model, version, created_at, features, predicted_class, "
    "confidence, probabilities, latency_seconds) SELECT lpad(to_hex((extract(epoch FROM t) "
    "* 1000)::bigint), 12, '0') || substr(md5('b' || i), 1, 20), 'heart', 'v1', t, "
    "'{\"age\": 50}', 'healthy', 0.9, '{\"healthy\": 0.9}', 0.01 FROM generate_series(1, :n) "
    "AS i, LATERAL (SELECT :end - i * make_interval(secs => :step) AS t) AS at"
)


def _schema_engine(admin: Engine, name: str) -> Engine:
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {name}"))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
    return make_engine(url)


def _timed(store: Store, ids: list[str]) -> float:
    start = time.perf_counter()
    for pid in ids:
        store.get_prediction(pid)
    return (time.perf_counter() - start) / len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=190)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--lookups", type=int, default=300)
    args = parser.parse_args()
    admin = make_engine(POSTGRES_URL)
    tag = secrets.token_hex(4)
    names = {"partitioned": f"bench_part_{tag}", "plain": f"bench_plain_{tag}"}
    engines = {k: _schema_engine(admin, v) for k, v in names.items()}
    try:
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        n = args.days * args.rows_per_day
        step = 86400 / args.rows_per_day
        for kind, engine in engines.items():
            migrate(engine)
            with engine.begin() as conn:
                if kind == "plain":  # the layout before 0005: one table, key on id alone
                    conn.execute(text("DROP TABLE predictions CASCADE"))
                    conn.execute(
                        text(
                            "CREATE TABLE predictions (id varchar(32) PRIMARY KEY, model "
                            "varchar(100) NOT NULL, version varchar(64) NOT NULL, created_at "
                            "timestamptz NOT NULL, features jsonb NOT NULL, predicted_class "
                            "varchar(200) NOT NULL, confidence float NOT NULL, probabilities "
                            "jsonb NOT NULL, latency_seconds float NOT NULL, request_id "
                            "varchar(64), profile_hash varchar(64), role varchar(16) NOT NULL "
                            "DEFAULT 'champion')"
                        )
                    )
                    conn.execute(text("CREATE INDEX ON predictions (model, created_at)"))
                else:
                    create_days(
                        conn, [(end - timedelta(days=d)).date() for d in range(1, args.days + 1)]
                    )
                conn.execute(text(FILL), {"end": end, "step": step, "n": n})
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
        recent_since = end - timedelta(days=3)
        with engines["plain"].connect() as conn:
            rows = conn.execute(text("SELECT id, created_at FROM predictions")).all()
        ages = {
            "made in the last 3 days": [i for i, t in rows if t >= recent_since],
            "made any time": [i for i, _ in rows],
        }
        rng = random.Random(7)
        stores = {k: Store(e) for k, e in engines.items()}
        print(f"rows {n:,} over {args.days} days; get_prediction, median of 5 alternated rounds")
        for label, ids in ages.items():
            times: dict[str, list[float]] = {k: [] for k in stores}
            for _ in range(5):  # alternate: the machine is shared, compare side by side
                sample = rng.sample(ids, min(args.lookups, len(ids)))
                for kind, store in stores.items():
                    times[kind].append(_timed(store, sample))
            part, plain = (statistics.median(times[k]) for k in ("partitioned", "plain"))
            print(
                f"  ids {label}: plain {plain * 1e3:.2f} ms, partitioned {part * 1e3:.2f} ms "
                f"(ratio {part / plain:.1f}x)"
            )
        cutoff = end - timedelta(days=args.days - 1)
        for kind, engine in engines.items():
            start = time.perf_counter()
            result = purge_database(engine, cutoff)
            took = time.perf_counter() - start
            print(
                f"  purge of the oldest day ({result.predictions:,} rows), {kind}: "
                f"{took * 1e3:.0f} ms, partitions dropped {result.partitions_dropped}"
            )
    finally:
        for engine in engines.values():
            engine.dispose()
        with admin.begin() as conn:
            for name in names.values():
                conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
