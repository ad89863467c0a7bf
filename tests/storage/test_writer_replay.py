"""RecordWriter replaying journal segments: a segment goes only once its records are stored.

Orphans (segments of dead processes) and this writer's own spilled segments are replayed in
batches; while the database is down they stay on disk and are retried with backoff; damaged
lines anywhere in a segment are counted and the segment quarantined, never deleted; what is
logged carries counts and file names, never a record's values.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.storage.test_writer import (
    Events,
    Hook,
    dead_pid,
    fast_writer,
    leftover_segment,
    poll,
    row_count,
    stored_ids,
)
from tests.storage.test_writer_retries import WRITER_LOG, Clock

from nexus_ml.storage import DatabaseUnavailable, PredictionRecord, Store
from nexus_ml.storage.journal import CORRUPT_SUFFIX, Segment, encode, list_segments
from nexus_ml.storage.rejected import RejectedFiles

RecordFactory = Callable[..., PredictionRecord]


def corrupt_files(spill: Path) -> list[Path]:
    return sorted(spill.glob(f"*{CORRUPT_SUFFIX}"))


def test_an_orphan_replayed_while_the_database_is_down_stays_until_its_records_are_in(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    spill, hook, events = tmp_path / "spill", Hook(store), Events()
    hook.down = DatabaseUnavailable("down")
    orphaned = [make_record() for _ in range(30)]
    path = leftover_segment(spill, orphaned, dead_pid())

    async def main() -> None:
        # The clock never moves: the scan that failed must be retried, not wait a period.
        writer = fast_writer(hook, spill, scan_seconds=30, clock=Clock(), **events.kwargs())
        await writer.start()
        await poll(lambda: hook.failures >= 3)
        assert path.exists()
        hook.down = None
        await poll(lambda: row_count(engine) == 30 and not path.exists())
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert sorted(stored_ids(engine)) == sorted(r.id for r in orphaned)
    assert set(events.errors) == {("replay", "connection")}


def test_an_orphan_behind_a_live_writers_segment_is_replayed(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    live = Segment.create(spill, 1, "zz")  # older, and its writer still holds it
    live.append(encode(make_record()))
    orphaned = [make_record() for _ in range(5)]
    path = leftover_segment(spill, orphaned, dead_pid())
    assert list_segments(spill) == [live.path, path]

    async def main() -> None:
        writer = fast_writer(store.insert_predictions, spill)
        await writer.start()
        await poll(lambda: row_count(engine) == 5 and not path.exists())
        assert await writer.stop(5) == 0

    try:
        asyncio.run(main())
        assert list_segments(spill) == [live.path]
    finally:
        live.close()


def test_a_clean_replay_quarantines_nothing_and_logs_its_count(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    spill, events = tmp_path / "spill", Events()
    path = leftover_segment(spill, [make_record() for _ in range(30)], dead_pid())

    async def main() -> None:
        writer = fast_writer(store.insert_predictions, spill, **events.kwargs())
        await writer.start()
        await poll(lambda: row_count(engine) == 30 and not path.exists())
        assert await writer.stop(5) == 0

    with caplog.at_level(logging.INFO, logger=WRITER_LOG):
        asyncio.run(main())
    assert corrupt_files(spill) == [] and events.errors == []
    assert "record writer: replayed 30 journaled records" in [
        r.getMessage() for r in caplog.records
    ]


def test_damaged_lines_early_in_an_orphan_are_counted_and_it_is_quarantined(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    spill, events = tmp_path / "spill", Events()
    good = [make_record() for _ in range(30)]
    lines = [encode(r) for r in good]
    lines[2:2] = [b'{"torn\n', b"not json\n"]  # both in the first batch of 25; none later
    spill.mkdir()
    path = spill / leftover_segment(spill, [], dead_pid()).name
    path.write_bytes(b"".join(lines))

    async def main() -> None:
        writer = fast_writer(store.insert_predictions, spill, **events.kwargs())
        await writer.start()
        await poll(lambda: row_count(engine) == 30 and not path.exists())
        await poll(lambda: len(events.pending) >= 3)  # a few more cycles: nothing else to do
        assert await writer.stop(5) == 0

    with caplog.at_level(logging.INFO, logger=WRITER_LOG):
        asyncio.run(main())
    assert corrupt_files(spill) == [path.with_suffix(CORRUPT_SUFFIX)]
    assert events.errors == [("replay", "other")]  # once, and no failed cycle
    messages = [r.getMessage() for r in caplog.records]
    assert f"record writer: 2 damaged journal lines kept in {path.stem}{CORRUPT_SUFFIX}" in (
        messages
    )
    assert "record writer: replayed 30 journaled records" in messages


def test_a_damaged_line_in_our_own_spill_is_quarantined_and_the_rest_replayed(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    spill, hook, events = tmp_path / "spill", Hook(store), Events()
    hook.down = DatabaseUnavailable("down")
    records = [make_record() for _ in range(5)]

    async def main() -> int:
        writer = fast_writer(hook, spill, max_pending=2, **events.kwargs())
        await writer.start()
        for r in records[:3]:
            writer.submit(r)
        with list_segments(spill)[0].open("ab") as fh:
            fh.write(b'{"torn by a full disk\n')  # a write cut short, between two records
        for r in records[3:]:
            writer.submit(r)
        assert (writer.pending, writer.disk_only) == (2, 3)
        await poll(lambda: hook.failures >= 1)
        hook.down = None
        await poll(lambda: row_count(engine) == 5 and writer.disk_only == 0)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in records)
    assert len(corrupt_files(spill)) == 1 and list_segments(spill) == []
    assert ("replay", "other") in events.errors
    assert ("cycle", "other") not in events.errors


def test_a_failed_replay_of_our_spill_waits_out_the_backoff(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    """The database takes the records in memory, then goes away before the spill's turn."""
    records = [make_record() for _ in range(5)]
    spilled = {r.id for r in records[2:]}
    spill_attempts = 0

    def insert(batch: Sequence[PredictionRecord]) -> int:
        nonlocal spill_attempts
        if any(r.id in spilled for r in batch):
            spill_attempts += 1
            raise DatabaseUnavailable("down")
        return store.insert_predictions(batch)

    async def main() -> int:
        writer = fast_writer(
            insert, tmp_path / "spill", max_pending=2, backoff_initial=3600, backoff_max=3600
        )
        await writer.start()
        for r in records:
            writer.submit(r)
        await poll(lambda: spill_attempts >= 1 and row_count(engine) == 2)
        # stop's drain tries once more, then its backoff outlasts the timeout.
        return await writer.stop(0.3)

    assert asyncio.run(main()) == 3
    assert spill_attempts == 2


# -- the rejected-record files' limits, applied at each scan -----------------------------------


def test_pruning_is_logged_by_count_and_a_failed_prune_fails_nothing(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    spill, events, clock = tmp_path / "spill", Events(), Clock()
    spill.mkdir()
    old = RejectedFiles(spill, max_bytes=1 << 30, max_age_seconds=1e9).add([make_record()])
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    async def main() -> None:
        writer = fast_writer(
            store.insert_predictions, spill, rejected_max_age_seconds=60, clock=clock,
            **events.kwargs(),
        )  # fmt: skip
        await writer.start()
        await poll(lambda: not old.exists())  # the start-up scan applied the age limit
        seen = len(events.pending)
        await poll(lambda: len(events.pending) > seen)  # and its cycle is over
        prune = writer._rejected.prune

        def denied(now: float | None = None) -> object:
            raise PermissionError(errno.EACCES, "Permission denied")

        writer._rejected.prune = denied  # type: ignore[method-assign]
        clock.now += 0.1  # the next scan is due
        seen = len(events.pending)
        await poll(lambda: len(events.pending) >= seen + 2)  # cycles go on
        writer._rejected.prune = prune  # type: ignore[method-assign]
        writer.submit(make_record())
        await poll(lambda: row_count(engine) == 1)
        assert await writer.stop(5) == 0

    with caplog.at_level(logging.INFO, logger=WRITER_LOG):
        asyncio.run(main())
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert (
        "WARNING",
        "record writer: deleted 1 rejected-record files past the age limit and 0 past the "
        "size limit",
    ) in messages
    assert ("ERROR", "record writer: cannot prune rejected records (PermissionError)") in messages
    assert events.errors == []  # a failed prune is retried at the next scan, not a failure
