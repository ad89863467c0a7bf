"""How long does the record writer take to drain a backlog with records the database refuses?

Run: ``python benchmarks/bench_writer_poison.py [--records 4000] [--poison-every 200]
[--postgres]``.

A writer with the service's defaults (batches of 200, flush every 0.5 s, backoff from 0.25 s)
is handed ``--records`` records at once; every ``--poison-every``-th has no class, which both
stores refuse (NOT NULL). The figure is the wall time until every good record is stored and
nothing is pending, with the number of insert calls; the same backlog without poison is the
baseline. Uses only the writer's long-standing constructor, so it runs against older code too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
# The tests' PostgreSQL helpers (NEXUS_TEST_POSTGRES_URL, a schema per run).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from tests.helpers import postgres_schema_url

from nexus_ml.storage import PredictionRecord, RecordWriter, Store, make_engine, migrate, new_id


@contextmanager
def database(postgres: bool, tmp: Path) -> Iterator[str]:
    if not postgres:
        yield f"sqlite:///{tmp / f'{secrets.token_hex(4)}.db'}"
        return
    # The tests' throw-away schema: created here, dropped on exit.
    yield from postgres_schema_url()


def records(n: int, poison_every: int) -> list[PredictionRecord]:
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        poisoned = poison_every > 0 and i % poison_every == poison_every // 2
        out.append(
            PredictionRecord(
                new_id(),
                "diagnostic",
                "v1",
                now,
                {f"f{j}": 0.1 * j for j in range(30)},
                None if poisoned else "benign",  # type: ignore[arg-type]
                0.9,
                {"benign": 0.9, "malignant": 0.1},
                0.0001,
            )
        )
    return out


def run(url: str, spill: Path, backlog: list[PredictionRecord], limit: float) -> dict[str, float]:
    engine = make_engine(url)
    migrate(engine)
    store = Store(engine)
    calls = 0
    lock = threading.Lock()

    def insert(batch: Sequence[PredictionRecord]) -> int:
        nonlocal calls
        with lock:
            calls += 1
        return store.insert_predictions(batch)

    good = sum(r.predicted_class is not None for r in backlog)

    async def main() -> float:
        writer = RecordWriter(insert, spill)  # the service's defaults
        await writer.start()
        await asyncio.sleep(0.1)  # the start-up cycle
        start = time.perf_counter()
        for record in backlog:
            writer.submit(record)
        while store.count_predictions() < good or writer.pending:
            if time.perf_counter() - start > limit:
                break
            await asyncio.sleep(0.01)
        took = time.perf_counter() - start
        await writer.stop(5)
        return took

    took = asyncio.run(main())
    stored = store.count_predictions()
    engine.dispose()
    parked = sum(len(p.read_bytes().splitlines()) for p in spill.glob("rejected-*.jsonl"))
    return {"seconds": took, "calls": calls, "stored": stored, "good": good, "parked": parked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=4000)
    parser.add_argument("--poison-every", type=int, default=200, help="one poisoned per N")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    parser.add_argument("--limit", type=float, default=300.0, help="give up after (s)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # one warning per refused batch otherwise
    print(f"database: {'postgresql' if args.postgres else 'sqlite'}, records: {args.records}")
    print("| poisoned | drained in s | insert calls | calls per 200 | stored/good | parked |")
    print("|---|---:|---:|---:|---|---:|")
    for every in (0, args.poison_every):
        with tempfile.TemporaryDirectory() as tmp, database(args.postgres, Path(tmp)) as url:
            spill = Path(tmp) / "spill"
            r = run(url, spill, records(args.records, every), args.limit)
        label = "none" if not every else f"1 per {every}"
        drained = f"{r['seconds']:.2f}" if r["stored"] == r["good"] else f"> {args.limit:.0f}"
        print(
            f"| {label} | {drained} | {r['calls']:.0f} | {200 * r['calls'] / args.records:.1f} "
            f"| {r['stored']:.0f}/{r['good']:.0f} | {r['parked']:.0f} |"
        )


if __name__ == "__main__":
    main()
