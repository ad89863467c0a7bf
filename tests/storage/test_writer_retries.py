"""RecordWriter: how it waits between attempts, drains at stop, looks for orphans, and logs.

The backoff is a pure function, tested on its own; the orphan scan runs on an injected clock,
so its period is tested exactly at its boundary without waiting for it; the stop drain is
tested by what it leaves behind and how often it asks a database that is down. Log records
carry counts, kinds and type names, never a record's values.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.storage.test_writer import (
    Events,
    Hook,
    dead_pid,
    fast_writer,
    journal_lines,
    leftover_segment,
    poll,
    row_count,
    stored_ids,
)

from nexus_ml.config import Settings
from nexus_ml.storage import DatabaseUnavailable, PredictionRecord, RecordWriter, Store
from nexus_ml.storage.journal import list_segments
from nexus_ml.storage.writer import JITTER, backoff_delay

RecordFactory = Callable[..., PredictionRecord]
WRITER_LOG = "nexus_ml.storage.writer"


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def down(records: object) -> int:
    raise DatabaseUnavailable("down")


# -- the backoff --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "initial", "maximum", "expected"),
    [
        (0, 0.25, 30.0, 0.25),
        (1, 0.25, 30.0, 0.5),
        (6, 0.25, 30.0, 16.0),
        (7, 0.25, 30.0, 30.0),  # 32 is past the cap
        (7, 0.25, 32.0, 32.0),  # exactly at the cap
        (8, 0.25, 32.0, 32.0),
        (50, 2.0**-40, 1.0, 1.0),  # a tiny start still reaches its cap
        (10_000, 0.25, 30.0, 30.0),  # 2**10000 is past any float: the cap, not an overflow
    ],
)
def test_backoff_doubles_per_failure_up_to_its_cap(
    failures: int, initial: float, maximum: float, expected: float
) -> None:
    assert backoff_delay(failures, initial, maximum, 0.5) == expected


def test_backoff_jitter_spreads_each_delay_by_a_fifth_either_way() -> None:
    assert JITTER == 0.2
    assert backoff_delay(3, 1.0, 100.0, 0.0) == pytest.approx(8.0 * 0.8)
    assert backoff_delay(3, 1.0, 100.0, 0.5) == 8.0
    assert backoff_delay(3, 1.0, 100.0, 1.0) == pytest.approx(8.0 * 1.2)
    assert backoff_delay(10_000, 1.0, 30.0, 0.0) == pytest.approx(30.0 * 0.8)
    delays = [backoff_delay(2, 1.0, 100.0, r / 100) for r in range(100)]
    assert delays == sorted(delays)  # more randomness, longer wait: no fold-over


def test_retry_now_cuts_one_backoff_short_not_every_later_one(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook = Hook(store)
    hook.down = DatabaseUnavailable("down")

    async def main() -> int:
        writer = fast_writer(hook, tmp_path / "spill", backoff_initial=3600, backoff_max=3600)
        writer.retry_now()  # before start, and with nothing failed: nothing to cut short
        await writer.start()
        writer.submit(make_record())
        await poll(lambda: hook.failures == 1)
        writer.retry_now()
        await poll(lambda: hook.failures == 2)  # the early retry failed: back to waiting
        # stop's drain tries once more, then waits its own backoff past the timeout.
        return await writer.stop(0.3)

    assert asyncio.run(main()) == 1
    assert hook.failures == 3


# -- configuration -----------------------------------------------------------------------------


def test_a_writer_built_without_settings_has_the_settings_defaults(tmp_path: Path) -> None:
    bare = RecordWriter(down, tmp_path)
    configured = RecordWriter.from_settings(Settings(), down)
    limits = (
        "batch_size",
        "flush_seconds",
        "max_pending",
        "insert_timeout",
        "segment_max_records",
        "backoff_initial",
        "backoff_max",
        "scan_seconds",
    )
    assert {k: getattr(bare, k) for k in limits} == {k: getattr(configured, k) for k in limits}
    assert (bare._rejected.max_bytes, bare._rejected.max_age_seconds) == (
        configured._rejected.max_bytes,
        configured._rejected.max_age_seconds,
    )
    # The timings docs/reliability.md promises: backoff from 0.25 s up to 30 s, a scan for
    # dead workers' segments every 30 s; segments of 10,000 records (a few MB each).
    assert (bare.backoff_initial, bare.backoff_max, bare.scan_seconds) == (0.25, 30.0, 30.0)
    assert bare.segment_max_records == 10_000


# -- stop --------------------------------------------------------------------------------------


def test_stop_wakes_a_flusher_waiting_out_its_period_and_drains(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    events = Events()
    records = [make_record() for _ in range(30)]

    async def main() -> int:
        # Neither the period nor the batch size would ever start a flush: only stop() does.
        writer = fast_writer(
            store.insert_predictions, tmp_path, batch_size=1000, flush_seconds=3600,
            **events.kwargs(),
        )  # fmt: skip
        await writer.start()
        await poll(lambda: bool(events.pending))  # the start-up cycle is over
        for r in records:
            writer.submit(r)
        assert row_count(engine) == 0
        # A generous deadline: a stop that waited for the period would take an hour.
        async with asyncio.timeout(60):
            return await writer.stop(3600)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in records)


def test_stop_before_start_or_twice_has_nothing_left(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    async def main() -> tuple[int, int, int]:
        writer = fast_writer(lambda records: len(records), tmp_path)
        never_started = await writer.stop(5)
        await writer.start()
        writer.submit(make_record())
        return never_started, await writer.stop(5), await writer.stop(5)

    assert asyncio.run(main()) == (0, 0, 0)


@pytest.mark.parametrize(
    ("answered", "expected_left"), [(0, 5), (1, 2)], ids=["down", "down-after-the-memory-batch"]
)
def test_stop_with_the_database_down_retries_with_backoff_then_leaves_the_rest_journaled(
    tmp_path: Path,
    make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
    answered: int,
    expected_left: int,
) -> None:
    """Three records in memory, two only on disk; the database down from the start, or from
    right after the memory batch (the two then fail in the replay of the segment): stop keeps
    retrying no faster than the backoff allows, never in a tight loop, and leaves the rest
    journaled."""
    attempts: list[int] = []

    def insert(records: Sequence[PredictionRecord]) -> int:
        attempts.append(len(records))
        if len(attempts) <= answered:
            return len(records)
        raise DatabaseUnavailable("down")

    spill = tmp_path / "spill"
    timeout, backoff = 0.5, 0.05

    async def main() -> int:
        writer = fast_writer(
            insert, spill, max_pending=3, backoff_initial=backoff, backoff_max=backoff
        )
        await writer.start()
        for _ in range(5):  # before the loop first runs: three in memory, two only on disk
            writer.submit(make_record())
        await poll(lambda: len(attempts) > answered)
        if answered:
            assert attempts[:2] == [3, 5]  # the memory batch went in; the replay did not
        before = len(attempts)
        left = await writer.stop(timeout)
        attempts[:] = attempts[before:]
        # Handed over to the journal: this writer holds nothing any more.
        assert (writer.pending, writer.disk_only) == (0, 0)
        return left

    with caplog.at_level(logging.WARNING, logger=WRITER_LOG):
        left = asyncio.run(main())
    assert left == expected_left
    assert journal_lines(spill) == 5  # the segment stays whole for the next process
    # It kept trying until the deadline, never faster than one attempt per shortest backoff.
    assert 1 <= len(attempts) <= math.floor(timeout / (backoff * (1 - JITTER))) + 1
    assert caplog.records[-1].getMessage() == (
        f"record writer stopped with {expected_left} records left in the journal"
    )


def test_stop_and_flush_leave_other_processes_journals_to_the_background(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    clock, events, spill = Clock(), Events(), tmp_path / "spill"
    own = [make_record() for _ in range(3)]
    orphaned = [make_record() for _ in range(4)]

    async def main() -> None:
        writer = fast_writer(
            store.insert_predictions, spill, flush_seconds=3600, scan_seconds=30, clock=clock,
            **events.kwargs(),
        )  # fmt: skip
        await writer.start()
        await poll(lambda: bool(events.pending))  # the start-up scan found nothing
        leftover_segment(spill, orphaned, dead_pid())
        clock.now += 30  # a scan is due, but flush and stop write our own records only
        writer.submit(own[0])
        assert await writer.flush(5)
        for r in own[1:]:
            writer.submit(r)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert sorted(stored_ids(engine)) == sorted(r.id for r in own)
    assert journal_lines(spill) == 4  # the orphan, for the next process's start


# -- orphan scans ------------------------------------------------------------------------------


def test_orphans_are_looked_for_exactly_every_scan_period(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    clock, events, spill = Clock(), Events(), tmp_path / "spill"
    first = [make_record() for _ in range(4)]
    second = [make_record() for _ in range(6)]

    async def cycles(n: int) -> None:
        seen = len(events.pending)  # one report per completed cycle
        await poll(lambda: len(events.pending) >= seen + n)

    async def main() -> None:
        writer = fast_writer(
            store.insert_predictions, spill, scan_seconds=30, clock=clock, **events.kwargs()
        )
        await writer.start()
        await cycles(1)  # scanned at 1000: the next scan is due at 1030
        leftover_segment(spill, first, dead_pid())
        clock.now = 1029.5
        await cycles(3)
        assert row_count(engine) == 0  # not yet due
        clock.now = 1030.0  # exactly due
        await poll(lambda: row_count(engine) == 4)
        await cycles(1)  # the scan's cycle is over: the next one is due at 1060
        leftover_segment(spill, second, dead_pid())
        clock.now = 1059.5
        await cycles(3)
        assert row_count(engine) == 4  # the period starts again at the scan
        clock.now = 1060.0
        await poll(lambda: row_count(engine) == 10)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert list_segments(spill) == []  # both replayed and deleted


def test_when_the_database_comes_back_orphans_are_replayed_at_once(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    clock, spill = Clock(), tmp_path / "spill"
    hook = Hook(store)
    hook.down = DatabaseUnavailable("down")
    orphaned = [make_record() for _ in range(5)]

    async def main() -> None:
        # The clock never moves: only the recovery can make a scan due.
        writer = fast_writer(hook, spill, scan_seconds=30, clock=clock)
        await writer.start()
        writer.submit(make_record())
        await poll(lambda: hook.failures >= 1)
        leftover_segment(spill, orphaned, dead_pid())
        hook.down = None
        await poll(lambda: row_count(engine) == 6)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert set(stored_ids(engine)) >= {r.id for r in orphaned}


def test_an_orphan_replay_the_database_refuses_is_retried_after_the_backoff(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    """A failed orphan replay is a failure like any other: retried after the backoff, not
    after the flush period nor the next scan. Nothing of the writer's own arrives and the
    clock never moves here, so only that retry brings the orphans in once the database is
    back."""
    clock, spill = Clock(), tmp_path / "spill"
    hook = Hook(store)
    hook.down = DatabaseUnavailable("down")
    orphaned = [make_record() for _ in range(5)]
    leftover_segment(spill, orphaned, dead_pid())

    async def main() -> None:
        writer = fast_writer(hook, spill, flush_seconds=3600, scan_seconds=3600, clock=clock)
        await writer.start()
        await poll(lambda: hook.failures >= 2)  # tried again while the database is down
        hook.down = None
        await poll(lambda: row_count(engine) == 5)
        assert await writer.stop(5) == 0

    asyncio.run(main())
    assert sorted(stored_ids(engine)) == sorted(r.id for r in orphaned)
    assert list_segments(spill) == []


# -- what is logged ----------------------------------------------------------------------------


def test_failures_are_logged_with_counts_kinds_and_type_names_never_values(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    records = [make_record(features={"age": 61, "note": "secret-note"}) for _ in range(3)]
    failures = 0

    def insert(batch: Sequence[PredictionRecord]) -> int:
        nonlocal failures
        if failures < 2:
            failures += 1
            # A driver message that echoes the parameters, as some do.
            raise DatabaseUnavailable(f"could not insert {batch[0].id} note=secret-note")
        return store.insert_predictions(batch)

    async def main() -> int:
        writer = fast_writer(insert, tmp_path / "spill")
        await writer.start()
        writer.submit_many(records)
        await poll(lambda: row_count(engine) == 3)
        writer.submit(make_record())  # back to normal: nothing more to say
        await poll(lambda: row_count(engine) == 4)
        return await writer.stop(5)

    with caplog.at_level(logging.INFO, logger=WRITER_LOG):
        assert asyncio.run(main()) == 0
    messages = [r.getMessage() for r in caplog.records if r.name == WRITER_LOG]
    assert messages == [
        "record writer: insert of 3 records failed (connection, DatabaseUnavailable, attempt 1)",
        "record writer: insert of 3 records failed (connection, DatabaseUnavailable, attempt 2)",
        "record writer: database back after 2 failed attempts",
    ]
    assert [r.levelname for r in caplog.records[:3]] == ["WARNING", "WARNING", "INFO"]
    text = caplog.text
    assert "secret-note" not in text and "61" not in text
    assert not any(r.id in text for r in records)


def test_a_bug_in_a_cycle_is_logged_and_reported_and_flushing_goes_on(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    events = Events()

    def broken_gauge(memory: int, disk: int) -> None:
        raise RuntimeError("metrics bug")

    async def main() -> int:
        writer = fast_writer(
            store.insert_predictions, tmp_path / "spill",
            on_error=events.kwargs()["on_error"], on_pending=broken_gauge,
        )  # fmt: skip
        prune = writer._rejected.prune
        calls = 0

        def prune_once_broken() -> object:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug")
            return prune()

        writer._rejected.prune = prune_once_broken  # type: ignore[method-assign]
        await writer.start()
        writer.submit(make_record())
        await poll(lambda: row_count(engine) == 1)
        return await writer.stop(5)

    with caplog.at_level(logging.ERROR, logger=WRITER_LOG):
        assert asyncio.run(main()) == 0
    assert ("cycle", "other") in events.errors
    logged = {(r.getMessage(), r.exc_info[0] if r.exc_info else None) for r in caplog.records}
    assert ("record writer cycle failed", RuntimeError) in logged
    assert ("record writer callback failed", RuntimeError) in logged
