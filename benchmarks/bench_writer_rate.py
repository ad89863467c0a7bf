"""How many prediction records per second does the writer's insert store into PostgreSQL,
aggregates included, and what bounds it?

Run: ``python benchmarks/bench_writer_rate.py [--records 40000] [--batches 200,1000,5000]
[--features 30] [--sqlite]``.

Calls ``Store.insert_predictions`` (what the ``RecordWriter`` calls in its thread: one
transaction per batch holding the INSERT of the rows and the upserts of their aggregates) in a
loop, one thread, on a fresh schema; records carry ``--features`` numeric features (the
diagnostic model has 30) and arrive over one hour, as at 10+ records/s. Prints records/s per
batch size for SQLAlchemy's ORM INSERT (``orm``) and the store's fast path (``copy``: COPY on
PostgreSQL; ``rows``: one multi-row INSERT per chunk on SQLite), and the fast path with the
aggregates switched off (what they cost), and the share of the time the database process
spends vs this process (CPU seconds of each side; SQLite runs in this process: 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# The tests' PostgreSQL helpers (NEXUS_TEST_POSTGRES_URL, a schema per run).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, text
from tests.helpers import postgres_schema_url

from nexus_ml.storage import PredictionRecord, Store, make_engine, migrate, new_id

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@contextmanager
def database(sqlite: bool, tmp: Path) -> Iterator[str]:
    """A fresh SQLite file, or a throw-away PostgreSQL schema."""
    if sqlite:
        yield f"sqlite:///{tmp / f'{secrets.token_hex(4)}.db'}"
        return
    # The tests' throw-away schema: created here, dropped on exit.
    yield from postgres_schema_url()


def make_records(n: int, features: int, seed: int = 1) -> list[PredictionRecord]:
    """``n`` records of two models spread over one hour (sorted by time, as a writer sees)."""
    rng = random.Random(seed)
    names = [f"f{i}" for i in range(features)]
    out = []
    for i in range(n):
        conf = rng.uniform(0.5, 1.0)
        out.append(
            PredictionRecord(
                id=new_id(),
                model="diagnostic" if i % 3 else "diabetes_risk",
                version="v1",
                created_at=T0 + timedelta(seconds=3600 * i / n),
                features={k: round(rng.gauss(10, 3), 4) for k in names},
                predicted_class=rng.choice(["benign", "malignant"]),
                confidence=conf,
                probabilities={"benign": conf, "malignant": 1 - conf},
                latency_seconds=rng.lognormvariate(-6.5, 0.5),
            )
        )
    return out


def server_cpu(engine: Engine) -> float:
    """CPU seconds used so far by the PostgreSQL backends serving this database (/proc; the
    benchmark's own connections: other databases' work on the host is not counted)."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run(
    url: str, records: list[PredictionRecord], batch: int, aggregates: bool, fast: bool
) -> dict[str, float]:
    engine = make_engine(url)
    migrate(engine)
    store = Store(engine)
    store.fast_insert = fast
    patch = (
        contextlib.nullcontext()
        if aggregates
        else mock.patch("nexus_ml.storage.aggregates.add_records", lambda *a, **k: None)
    )
    with patch:
        store.insert_predictions(records[:batch])  # warm the connection and statement caches
        rest = records[batch:]
        cpu0, srv0, t0 = time.process_time(), server_cpu(engine), time.perf_counter()
        stored = 0
        for i in range(0, len(rest), batch):
            stored += store.insert_predictions(rest[i : i + batch])
        wall = time.perf_counter() - t0
        cpu, srv = time.process_time() - cpu0, server_cpu(engine) - srv0
    engine.dispose()
    assert stored == len(rest), (stored, len(rest))
    return {"rate": len(rest) / wall, "wall": wall, "client_cpu": cpu, "server_cpu": srv}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=40_000)
    ap.add_argument("--batches", default="200,1000,5000")
    ap.add_argument("--features", type=int, default=30)
    ap.add_argument("--sqlite", action="store_true")
    args = ap.parse_args()
    records = make_records(args.records, args.features)
    print(f"{'store':<10} {'batch':>6} {'insert':>7} {'aggregates':>10} {'records/s':>10} "
          f"{'wall s':>7} {'client µs/rec':>13} {'server µs/rec':>13}")  # fmt: skip
    # Side by side, on the same data: SQLAlchemy's ORM INSERT vs the driver-level fast path
    # (COPY on PostgreSQL, one multi-row INSERT per chunk on SQLite), with and without the
    # aggregates.
    modes = [(False, True), (True, True), (True, False)]
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (int(b) for b in args.batches.split(",")):
            for fast, aggregates in modes:
                with database(args.sqlite, Path(tmp)) as url:
                    r = run(url, records, batch, aggregates, fast)
                n = len(records) - batch
                path = ("rows" if args.sqlite else "copy") if fast else "orm"
                print(
                    f"{'sqlite' if args.sqlite else 'postgresql':<10} {batch:>6} "
                    f"{path:>7} {'yes' if aggregates else 'no':>10} "
                    f"{r['rate']:>10,.0f} {r['wall']:>7.2f} {r['client_cpu'] / n * 1e6:>13.0f} "
                    f"{r['server_cpu'] / n * 1e6:>13.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
