"""How a refused batch is split: what it costs, what is counted, and each way it can end.

A batch the database refuses is bisected: each half that fails is halved again until the
records it refuses stand alone. Every stored record is counted once as written; a record refused
alone for no known reason is tried once more before it is parked; an outage while splitting,
or parked records that cannot be written to disk, leave the batch queued, nothing lost.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine
from tests.storage.test_writer import fast_writer, poll, row_count, stored_ids
from tests.storage.test_writer_poison import NO_BACKOFF, Counting, Rejections, rejected_ids
from tests.storage.test_writer_retries import WRITER_LOG

from nexus_ml.storage import DatabaseUnavailable, PredictionRecord, Store

RecordFactory = Callable[..., PredictionRecord]
SHORT_BACKOFF = {"backoff_initial": 0.01, "backoff_max": 0.02}


class Refusing:
    """Insert function that fails every batch holding ``bad`` with ``errors`` in turn."""

    def __init__(self, store: Store, bad: PredictionRecord, errors: list[BaseException]) -> None:
        self.store, self.bad, self.errors = store, bad, errors
        self.alone = 0  # calls with the bad record alone

    def __call__(self, records: Sequence[PredictionRecord]) -> int:
        if any(r.id == self.bad.id for r in records):
            self.alone += len(records) == 1
            if self.errors:
                raise self.errors.pop(0)
        return self.store.insert_predictions(records)


def test_bisection_costs_one_insert_per_half_and_counts_each_stored_record_once(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    insert, events = Counting(store), Rejections()
    flushes: list[tuple[int, float]] = []
    batch = [make_record() for _ in range(8)]
    batch[5] = make_record(predicted_class=None)  # NOT NULL: refused for its values

    async def main() -> None:
        writer = fast_writer(
            insert, tmp_path, batch_size=8, flush_seconds=3600, **NO_BACKOFF,
            on_flush=lambda n, s: flushes.append((n, s)),
            on_rejected=events.kwargs()["on_rejected"],
        )  # fmt: skip
        await writer.start()
        writer.submit_many(batch)  # a full batch: written at once
        await poll(lambda: row_count(engine) == 7 and not writer.pending)
        assert await writer.stop(5) == 0

    started = time.perf_counter()
    asyncio.run(main())
    took = time.perf_counter() - started
    # The batch; its halves [0:4] (stored) and [4:8]; [4:6] and [6:8] (stored); [4] and [5].
    assert insert.calls == 7
    assert [n for n, _ in flushes] == [7]
    assert all(0 <= s <= took for _, s in flushes)
    assert rejected_ids(tmp_path) == [batch[5].id]
    assert events.rejected == {("heart", "integrity"): 1}


def test_a_poisoned_record_alone_in_its_batch_is_parked(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    insert, events = Counting(store), Rejections()
    bad, good = make_record(confidence=None), make_record()

    async def main() -> None:
        writer = fast_writer(insert, tmp_path, batch_size=1, **NO_BACKOFF, **events.kwargs())
        await writer.start()
        writer.submit(bad)
        writer.submit(good)
        await poll(lambda: row_count(engine) == 1 and not writer.pending)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert rejected_ids(tmp_path) == [bad.id]
    assert stored_ids(engine) == [good.id]
    assert insert.calls == 3  # bad as its batch, bad alone, good
    assert events.rejected == {("heart", "integrity"): 1}


def unknown() -> BaseException:
    return RuntimeError("relation does not exist")


@pytest.mark.parametrize("passes_on_retry", [False, True])
def test_a_record_refused_alone_for_no_known_reason_is_tried_once_more_then_parked(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory,
    passes_on_retry: bool,
) -> None:  # fmt: skip
    events = Rejections()
    flushed: list[int] = []
    batch = [make_record() for _ in range(4)]
    # The whole batch three times (POISON_AFTER), the half [2:4], the bad record alone, then
    # its last chance.
    insert = Refusing(store, batch[2], [unknown() for _ in range(5 if passes_on_retry else 6)])

    async def main() -> None:
        writer = fast_writer(
            insert, tmp_path, batch_size=4, **SHORT_BACKOFF,
            on_flush=lambda n, s: flushed.append(n),
            on_error=events.kwargs()["on_error"], on_rejected=events.kwargs()["on_rejected"],
        )  # fmt: skip
        await writer.start()
        writer.submit_many(batch)
        await poll(lambda: not writer.pending)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert insert.alone == 2
    assert events.errors == [("insert", "other")] * 3
    if passes_on_retry:
        assert sorted(stored_ids(engine)) == sorted(r.id for r in batch)
        assert rejected_ids(tmp_path) == [] and events.rejected == {}
        assert flushed == [4]
    else:
        assert sorted(stored_ids(engine)) == sorted(r.id for r in batch if r is not batch[2])
        assert rejected_ids(tmp_path) == [batch[2].id]
        assert events.rejected == {("heart", "other"): 1}
        assert flushed == [3]


def test_a_batch_is_split_after_exactly_poison_after_unexplained_refusals_in_a_row(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    """The count starts at zero after every success and after every outage."""
    events = Rejections()
    first, batch = [make_record() for _ in range(4)], [make_record() for _ in range(4)]
    # Whole batch: two refusals, an outage, three refusals (POISON_AFTER in a row); then the
    # split: the half [2:4], the record alone, its last chance.
    errors = [unknown(), unknown(), DatabaseUnavailable("down"), *[unknown() for _ in range(6)]]
    insert = Refusing(store, batch[2], errors)

    async def main() -> None:
        writer = fast_writer(insert, tmp_path, batch_size=4, **SHORT_BACKOFF, **events.kwargs())
        await writer.start()
        writer.submit_many(first)
        await poll(lambda: row_count(engine) == 4)  # a success first
        writer.submit_many(batch)
        await poll(lambda: not writer.pending)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert errors == []
    assert events.errors == [
        ("insert", "other"),
        ("insert", "other"),
        ("insert", "connection"),
        ("insert", "other"),
        ("insert", "other"),
        ("insert", "other"),
    ]
    assert rejected_ids(tmp_path) == [batch[2].id]
    assert row_count(engine) == 7


def test_a_record_refused_on_its_last_chance_for_its_values_is_parked_for_that_reason(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    events = Rejections()
    batch = [make_record() for _ in range(4)]
    refused = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("not null"))
    insert = Refusing(store, batch[2], [*(unknown() for _ in range(5)), refused])

    async def main() -> None:
        writer = fast_writer(insert, tmp_path, batch_size=4, **SHORT_BACKOFF, **events.kwargs())
        await writer.start()
        writer.submit_many(batch)
        await poll(lambda: not writer.pending)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert rejected_ids(tmp_path) == [batch[2].id]
    assert events.rejected == {("heart", "integrity"): 1}


def test_an_outage_on_the_last_chance_parks_nothing_and_loses_nothing(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    events = Rejections()
    batch = [make_record() for _ in range(4)]
    errors = [unknown() for _ in range(5)] + [DatabaseUnavailable("down")]
    insert = Refusing(store, batch[2], errors)

    async def main() -> None:
        writer = fast_writer(insert, tmp_path, batch_size=4, **SHORT_BACKOFF, **events.kwargs())
        await writer.start()
        writer.submit_many(batch)
        await poll(lambda: row_count(engine) == 4 and not writer.pending)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert rejected_ids(tmp_path) == [] and events.rejected == {}
    assert events.errors == [("insert", "other")] * 3 + [("insert", "connection")]


def test_refused_records_that_cannot_be_kept_stay_queued_until_they_can(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    events = Rejections()
    bad = make_record(predicted_class=None, features={"note": "secret-note"})
    good = [make_record() for _ in range(3)]

    async def main() -> None:
        writer = fast_writer(store.insert_predictions, tmp_path, **SHORT_BACKOFF, **events.kwargs())
        add = writer._rejected.add
        denied = [PermissionError(errno.EACCES, "Permission denied")]

        def add_once_denied(records: Sequence[PredictionRecord]) -> Path:
            if denied:
                raise denied.pop()
            return add(records)

        writer._rejected.add = add_once_denied  # type: ignore[method-assign]
        await writer.start()
        writer.submit_many([good[0], bad, *good[1:]])
        await poll(lambda: not writer.pending)
        assert await writer.stop(5) == 0

    with caplog.at_level(logging.INFO, logger=WRITER_LOG):
        asyncio.run(main())
    assert rejected_ids(tmp_path) == [bad.id]
    assert sorted(stored_ids(engine)) == sorted(r.id for r in good)
    assert events.errors == [("insert", "data"), ("journal", "other"), ("insert", "data")]
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("ERROR", "record writer: cannot keep refused records (PermissionError)") in messages
    parked = [m for level, m in messages if "database refused" in m]
    assert len(parked) == 1
    assert re.fullmatch(
        r"record writer: database refused 1 records, kept in rejected-[0-9a-f-]+\.jsonl",
        parked[0],
    )
    assert "secret-note" not in caplog.text and bad.id not in caplog.text
