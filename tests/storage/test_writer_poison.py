"""Records the database refuses: isolated at once, parked in capped files, never blocking others.

On SQLite and PostgreSQL. The writers here back off for 60 s after any failure they count as
an outage, so a poisoned record that made the writer back off would fail the polls.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy.exc
from sqlalchemy import Engine
from tests.storage.test_writer import (
    Events,
    RecordFactory,
    dead_pid,
    fast_writer,
    leftover_segment,
    poll,
    row_count,
    stored_ids,
)

from nexus_ml.storage import DatabaseUnavailable, PredictionRecord, Store, Unrecordable
from nexus_ml.storage.errors import error_kind, reject_reason
from nexus_ml.storage.journal import decode, list_segments
from nexus_ml.storage.rejected import PARTS, RejectedFiles

NO_BACKOFF = {"backoff_initial": 60.0, "backoff_max": 60.0}


class Rejections(Events):
    """Events plus the writer's on_rejected callback."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected: dict[tuple[str, str], int] = {}

    def kwargs(self) -> dict[str, object]:
        def on_rejected(model: str, reason: str, count: int) -> None:
            self.rejected[(model, reason)] = self.rejected.get((model, reason), 0) + count

        return {**super().kwargs(), "on_rejected": on_rejected}


class Counting:
    """Insert function in front of a Store that counts calls (and can fail some of them)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls = 0
        self.fail_next: list[BaseException] = []
        self._lock = threading.Lock()

    def __call__(self, records: Sequence[PredictionRecord]) -> int:
        with self._lock:
            self.calls += 1
            failure = self.fail_next.pop(0) if self.fail_next else None
        if failure is not None:
            raise failure
        return self.store.insert_predictions(records)


def poisons(engine: Engine, make_record: RecordFactory) -> list[tuple[PredictionRecord, str]]:
    """Records the database refuses, with the reason expected; PostgreSQL refuses more."""
    bad = [
        (make_record(predicted_class=None), "integrity"),  # NOT NULL, both stores
        (make_record(confidence=None), "integrity"),
        (make_record(model=None), "integrity"),
    ]
    if engine.dialect.name == "postgresql":
        bad += [
            (make_record(predicted_class="a\x00b"), "data"),  # NUL in text
            (make_record(predicted_class="x" * 201), "data"),  # longer than its column
            (make_record(probabilities={"a\x00": 1.0}), "data"),  # NUL in JSONB
        ]
    return bad


def rejected_ids(spill: Path) -> list[str]:
    files = RejectedFiles(spill, max_bytes=1 << 30, max_age_seconds=1e9).files()
    # The id is the first field of a line (decode() would refuse a line holding a None).
    return [json.loads(line)[0] for f in files for line in f.read_bytes().splitlines()]


def test_poisoned_records_are_parked_at_once_and_every_good_one_is_stored(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    insert, events = Counting(store), Rejections()
    bad = poisons(engine, make_record)
    good = [make_record() for _ in range(300)]
    # Spread the poisons over the stream: several batches hold one, one holds two.
    stream = list(good)
    for k, (record, _) in enumerate(bad):
        stream.insert(7 + 41 * k, record)
    stream.insert(9, bad[0][0])  # the same poisoned id twice: parked twice, stored never

    async def main() -> int:
        writer = fast_writer(insert, tmp_path, **NO_BACKOFF, **events.kwargs())
        await writer.start()
        for record in stream:
            writer.submit(record)
        await poll(lambda: row_count(engine) == len(good) and not writer.pending, timeout=30)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in good)
    assert sorted(rejected_ids(tmp_path)) == sorted([r.id for r, _ in bad] + [bad[0][0].id])
    expected: dict[tuple[str, str], int] = {}
    for record, reason in [*bad, bad[0]]:
        key = (str(record.model), reason)
        expected[key] = expected.get(key, 0) + 1
    assert events.rejected == expected
    # Data errors, never outages; and the bisection is cheap: about 2 log2(25) inserts
    # per poisoned batch on top of one per batch.
    assert {kind for _, kind in events.errors} == {"data"}
    batches = -(-len(stream) // 25)
    assert insert.calls <= batches + 2 * 5 * len(bad)
    assert list_segments(tmp_path) == []  # every journal segment was released


def test_poisoned_lines_of_a_dead_process_journal_are_parked_and_the_rest_replayed(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    events = Rejections()
    good = [make_record() for _ in range(60)]
    bad = make_record(predicted_class=None)
    leftover = leftover_segment(tmp_path, [*good[:30], bad, *good[30:]], dead_pid())

    async def main() -> int:
        writer = fast_writer(store.insert_predictions, tmp_path, **NO_BACKOFF, **events.kwargs())
        await writer.start()
        await poll(lambda: row_count(engine) == 60 and not leftover.exists())
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in good)
    assert rejected_ids(tmp_path) == [bad.id]
    assert events.rejected == {("heart", "integrity"): 1}
    assert ("replay", "data") in events.errors


def test_an_outage_while_splitting_parks_nothing_and_loses_nothing(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    insert, events = Counting(store), Rejections()
    bad = make_record(confidence=None)
    good = [make_record() for _ in range(20)]

    async def main() -> int:
        writer = fast_writer(
            insert, tmp_path, backoff_initial=0.01, backoff_max=0.05, **events.kwargs()
        )
        await writer.start()
        # The whole batch is refused for its data; then the database goes away mid-split.
        insert.fail_next = [
            sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("not null")),
            DatabaseUnavailable("down"),
            DatabaseUnavailable("down"),
        ]
        for record in [*good[:10], bad, *good[10:]]:
            writer.submit(record)
        await poll(lambda: row_count(engine) == 20 and not writer.pending)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in good)
    assert rejected_ids(tmp_path) == [bad.id]  # parked once, after the database came back
    assert events.errors == [
        ("insert", "data"),
        ("insert", "connection"),  # from the split
        ("insert", "connection"),  # from the retry of the whole batch
        ("insert", "data"),  # refused again, for real: now parked
    ]


def test_an_error_of_no_known_kind_never_parks_a_healthy_batch(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    """E.g. a missing table: every record fails alone too, so the fault is not in the records."""
    insert, events = Counting(store), Rejections()
    records = [make_record() for _ in range(30)]

    async def main() -> int:
        writer = fast_writer(insert, tmp_path, **events.kwargs())
        await writer.start()
        insert.fail_next = [RuntimeError("relation does not exist")] * 60
        for record in records:
            writer.submit(record)
        await poll(lambda: row_count(engine) == 30 and not writer.pending, timeout=30)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in records)
    assert rejected_ids(tmp_path) == [] and events.rejected == {}
    assert ("insert", "other") in events.errors


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"confidence": math.nan}, "ValueError"),
        ({"confidence": math.inf}, "ValueError"),
        ({"probabilities": {"benign": -math.inf}}, "ValueError"),
        ({"latency_seconds": math.nan}, "ValueError"),
        # Both at once: each is judged on its own, not by what the other is.
        ({"confidence": math.nan, "latency_seconds": math.inf}, "ValueError"),
        ({"features": {"age": math.nan}}, "ValueError"),
        # Looked for at any depth, and in a float subclass (orjson would write null for both).
        ({"features": {"age": 1.0, "extra": {"deep": [0.5, -math.inf]}}}, "ValueError"),
        ({"features": {"age": np.float64("nan")}}, "ValueError"),
        ({"predicted_class": "\ud800"}, "UnicodeEncodeError"),  # a lone surrogate: not UTF-8
        ({"features": {"note": "\udfff"}}, "UnicodeEncodeError"),
    ],
)
def test_a_record_no_store_can_hold_is_refused_with_its_whole_batch(
    tmp_path: Path, make_record: RecordFactory, bad: dict[str, object], why: str
) -> None:
    async def main() -> None:
        writer = fast_writer(lambda records: len(records), tmp_path)
        await writer.start()
        with pytest.raises(Unrecordable, match=f"^{why}$"):  # the error's type, never the value
            writer.submit(make_record(**bad))
        with pytest.raises(Unrecordable):
            writer.submit_many([make_record(), make_record(), make_record(**bad)])
        assert writer.pending == 0
        assert all(p.stat().st_size == 0 for p in list_segments(tmp_path))
        writer.submit_many([make_record(), make_record()])  # the writer carries on
        assert writer.pending == 2
        assert await writer.stop(5) == 0

    asyncio.run(main())


# -- the rejected-record files ----------------------------------------------------------------


def test_rejected_files_are_private_few_and_read_back(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    files = RejectedFiles(tmp_path, max_bytes=PARTS * 4096, max_age_seconds=3600)
    kept = [[make_record(confidence=math.nan if i % 2 else 0.5)] for i in range(60)]
    for batch in kept:
        files.add(batch)
    paths = files.files()
    # Appended to a current file until it holds max_bytes / PARTS: not one file per batch.
    assert 1 < len(paths) < 60
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
    back = [decode(line) for p in paths for line in p.read_bytes().splitlines()]
    assert [r.id for r in back] == [b[0].id for b in kept]
    assert math.isnan(back[1].confidence)  # kept as refused, NaN included


def test_rejected_files_are_pruned_by_age_then_by_size(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    files = RejectedFiles(tmp_path, max_bytes=PARTS * 2048, max_age_seconds=3600)
    for _ in range(400):
        files.add([make_record()])
    paths = files.files()
    total = sum(p.stat().st_size for p in paths)
    assert total > files.max_bytes  # add() leaves pruning to prune()
    now = time.time()
    os.utime(paths[0], (now - 7200, now - 7200))  # written two hours ago
    pruned = files.prune(now)
    assert pruned.by_age == 1 and pruned.by_size > 0
    left = files.files()
    assert sum(p.stat().st_size for p in left) <= files.max_bytes
    assert left == paths[-len(left) :]  # the newest are kept
    assert files.prune(now + 7200).by_age == len(left)  # all of them too old by then
    assert files.files() == []


def test_the_writer_keeps_rejected_files_within_the_cap(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    events = Rejections()
    cap = PARTS * 1024

    async def main() -> None:
        writer = fast_writer(
            store.insert_predictions, tmp_path, **NO_BACKOFF, **events.kwargs(),
            rejected_max_bytes=cap,
        )  # fmt: skip
        await writer.start()
        for i in range(120):
            writer.submit(make_record(predicted_class=None) if i % 2 else make_record())
        await poll(lambda: row_count(engine) == 60 and not writer.pending)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert events.rejected == {("heart", "integrity"): 60}
    sizes = [p.stat().st_size for p in tmp_path.glob("rejected-*.jsonl")]
    assert sizes and sum(sizes) <= cap


# -- classification ---------------------------------------------------------------------------


def _wrapped(cls: type[sqlalchemy.exc.DBAPIError], orig: BaseException) -> BaseException:
    return cls("INSERT", {}, orig)


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (_wrapped(sqlalchemy.exc.IntegrityError, sqlite3.IntegrityError("NOT NULL")), "data",
         "integrity"),
        (_wrapped(sqlalchemy.exc.DataError, psycopg.errors.StringDataRightTruncation()), "data",
         "data"),
        (psycopg.errors.UntranslatableCharacter(), "data", "data"),
        (psycopg.errors.NotNullViolation(), "data", "integrity"),
        (sqlite3.IntegrityError("NOT NULL"), "data", "integrity"),
        (sqlalchemy.exc.StatementError("bind", "INSERT", {}, ValueError("naive")), "data", "data"),
        (_wrapped(sqlalchemy.exc.OperationalError, sqlite3.OperationalError("locked")),
         "connection", None),
        (psycopg.OperationalError("reset"), "connection", None),
        (TimeoutError(), "connection", None),
        (DatabaseUnavailable("down"), "connection", None),
        (_wrapped(sqlalchemy.exc.ProgrammingError, sqlite3.ProgrammingError("no table")),
         "other", None),
        (RuntimeError("bug"), "other", None),
    ],
)  # fmt: skip
def test_errors_are_told_apart(exc: BaseException, kind: str, reason: str | None) -> None:
    assert error_kind(exc) == kind
    assert reject_reason(exc) == reason


def test_encoded_lines_are_strict_json(make_record: RecordFactory) -> None:
    from nexus_ml.storage.journal import encode

    def refuse(constant: str) -> object:
        raise AssertionError(constant)

    line = encode(make_record(features={"x": 1.7e308}, probabilities={"é": 1.0}))
    assert json.loads(line, parse_constant=refuse)[4] == {"x": 1.7e308}
