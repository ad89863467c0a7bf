"""RecordWriter's promises that the flow tests in test_writer.py leave implicit.

Configuration comes from the settings it is built from; a full batch is written at once, from
the event loop or from a worker thread; ``flush`` reports honestly (False while the database is
down or too slow); a committed segment is deleted at once, not at shutdown; a segment that
cannot be created is reported and the current one keeps journaling; segment names stay unique
and in creation order even when the clock does not move.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from tests.storage.test_writer import (
    Events,
    Hook,
    fast_writer,
    poll,
    row_count,
)

from nexus_ml.storage import DatabaseUnavailable, PredictionRecord, RecordWriter, Store, WriterFull
from nexus_ml.storage import journal as journal_module
from nexus_ml.storage import rejected as rejected_module
from nexus_ml.storage import writer as writer_module
from nexus_ml.storage.journal import decode, list_segments

RecordFactory = Callable[..., PredictionRecord]


def down(records: object) -> int:
    raise DatabaseUnavailable("down")


def journal_order(spill: Path) -> list[str]:
    """Ids in the journal, segment by segment in replay order, line by line."""
    return [decode(line).id for p in list_segments(spill) for line in p.read_bytes().splitlines()]


def test_from_settings_takes_each_limit_from_its_setting(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    settings = SimpleNamespace(
        spill_dir=tmp_path / "spill",
        writer_batch_size=17,
        writer_flush_seconds=0.75,
        writer_max_pending=321,
        writer_insert_timeout_seconds=4.5,
        writer_rejected_max_bytes=12345,
        writer_rejected_max_age_seconds=678.0,
    )
    writer = RecordWriter.from_settings(settings, down, segment_max_records=9)
    assert writer.spill_dir == tmp_path / "spill"
    assert (writer.batch_size, writer.flush_seconds) == (17, 0.75)
    assert (writer.max_pending, writer.insert_timeout) == (321, 4.5)
    assert (writer._rejected.max_bytes, writer._rejected.max_age_seconds) == (12345, 678.0)
    assert writer.segment_max_records == 9  # keyword arguments pass through

    inserted: list[int] = []
    writer = RecordWriter.from_settings(settings, lambda rs: inserted.append(len(rs)) or len(rs))

    async def main() -> bool:
        await writer.start()
        writer.submit(make_record())
        answer = await writer.flush(5)
        await writer.stop(5)
        return answer

    assert asyncio.run(main()) is True
    assert inserted == [1]  # through the insert function it was given


@pytest.mark.parametrize("from_thread", [False, True])
def test_a_full_batch_is_written_at_once_not_at_the_next_period(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory, from_thread: bool
) -> None:
    records, events = [make_record() for _ in range(10)], Events()

    async def main() -> int:
        # A period far beyond the test's poll: only the batch filling up can start a flush.
        writer = fast_writer(
            store.insert_predictions, tmp_path, batch_size=10, flush_seconds=60, **events.kwargs()
        )
        await writer.start()
        # The start-up cycle reported its end: the flusher now waits out its period.
        await poll(lambda: bool(events.pending))

        def produce() -> None:
            for r in records:
                writer.submit(r)

        if from_thread:
            await asyncio.to_thread(produce)  # sync endpoints submit from the thread pool
        else:
            produce()
        await poll(lambda: row_count(engine) == 10, timeout=10)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0


def test_a_full_batch_from_a_worker_thread_wakes_an_otherwise_idle_loop(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    """A thread must wake the loop itself: here nothing else (no poll, no timer) would."""
    records = [make_record() for _ in range(10)]

    async def main() -> int:
        flushed, cycles = asyncio.Event(), Events()
        writer = fast_writer(
            store.insert_predictions, tmp_path, batch_size=10, flush_seconds=3600,
            on_flush=lambda n, s: flushed.set(), on_pending=cycles.kwargs()["on_pending"],
        )  # fmt: skip
        await writer.start()
        await poll(lambda: bool(cycles.pending))  # the start-up cycle (and its threads) is over
        thread = threading.Thread(target=writer.submit_many, args=(records,))
        thread.start()
        async with asyncio.timeout(60):  # a loop left asleep would wait out the hour
            await flushed.wait()
        thread.join(10)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert row_count(engine) == 10


def test_flush_is_false_while_records_that_arrived_during_it_are_pending(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    late = [make_record()]
    writer: RecordWriter | None = None

    def insert(records: Sequence[PredictionRecord]) -> int:
        if writer is not None and late:
            writer.submit(late.pop())  # a request arriving while the batch is being written
        return store.insert_predictions(records)

    async def main() -> tuple[bool, bool]:
        nonlocal writer
        writer = fast_writer(insert, tmp_path, flush_seconds=3600)
        await writer.start()
        writer.submit(make_record())
        during = await writer.flush(5)
        after = await writer.flush(5)
        assert await writer.stop(5) == 0
        return during, after

    assert asyncio.run(main()) == (False, True)
    assert row_count(engine) == 2


def test_a_full_batch_left_over_after_a_cycle_is_written_at_once(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    """Records that arrive while a batch is written, never dipping below the batch size, set no
    wake-up: the flusher itself must see the full batch left over."""
    first, second = [make_record() for _ in range(5)], [make_record() for _ in range(5)]
    writer: RecordWriter | None = None

    def insert(records: Sequence[PredictionRecord]) -> int:
        if writer is not None and second and records[0] is first[0]:
            batch = list(second)
            second.clear()
            writer.submit_many(batch)  # 5 pending become 10: no crossing of the batch size
        return store.insert_predictions(records)

    async def main() -> int:
        nonlocal writer
        events = Events()
        writer = fast_writer(insert, tmp_path, batch_size=5, flush_seconds=3600, **events.kwargs())
        await writer.start()
        await poll(lambda: bool(events.pending))  # the start-up cycle is over
        writer.submit_many(first)  # a full batch: wakes the flusher, written at once
        await poll(lambda: row_count(engine) == 10)  # the second one too, not in an hour
        return await writer.stop(5)

    assert asyncio.run(main()) == 0


def test_each_flush_reports_its_count_and_how_long_its_insert_took(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook, flushes = Hook(store, delay=0.05), []

    async def main() -> int:
        writer = fast_writer(hook, tmp_path, on_flush=lambda n, s: flushes.append((n, s)))
        await writer.start()
        writer.submit_many([make_record() for _ in range(30)])
        await poll(lambda: row_count(engine) == 30)
        return await writer.stop(5)

    started = time.perf_counter()
    assert asyncio.run(main()) == 0
    took = time.perf_counter() - started
    assert [n for n, _ in flushes] == [25, 5]
    assert all(0.05 <= s <= took for _, s in flushes)  # at least the insert's own sleep


def test_submit_after_the_loop_is_gone_still_journals(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    spill = tmp_path / "spill"

    async def main() -> RecordWriter:
        writer = fast_writer(down, spill, batch_size=3)
        await writer.start()
        return writer  # never stopped: the loop ends under it (a crash in the lifespan)

    writer = asyncio.run(main())
    records = [make_record() for _ in range(3)]
    errors: list[BaseException] = []

    def produce() -> None:  # a worker thread, as a sync endpoint's
        try:
            for r in records:  # the third fills a batch and would wake a flusher that is gone
                writer.submit(r)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=produce)
    thread.start()
    thread.join(10)
    assert errors == []
    assert journal_order(spill) == [r.id for r in records]


def test_messages_say_why_a_record_is_refused(tmp_path: Path, make_record: RecordFactory) -> None:
    writer = RecordWriter(down, tmp_path)
    with pytest.raises(WriterFull, match=r"^record writer is not running$"):
        writer.submit(make_record())

    async def flush() -> None:
        await writer.flush()

    with pytest.raises(RuntimeError, match=r"^RecordWriter\.flush\(\) before start\(\)$"):
        asyncio.run(flush())


def test_flush_is_false_while_the_database_is_down_and_true_once_back(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook = Hook(store)
    hook.down = DatabaseUnavailable("down")

    async def main() -> tuple[bool, bool]:
        writer = fast_writer(hook, tmp_path, flush_seconds=60, backoff_initial=60)
        await writer.start()
        for _ in range(5):  # all in memory, nothing only on disk
            writer.submit(make_record())
        during = await writer.flush(5)
        hook.down = None
        after = await writer.flush(5)
        assert await writer.stop(5) == 0
        return during, after

    assert asyncio.run(main()) == (False, True)
    assert row_count(engine) == 5


def test_flush_gives_up_at_its_timeout(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook = Hook(store, delay=1.0)  # every insert takes a second

    async def main() -> bool:
        writer = fast_writer(hook, tmp_path, flush_seconds=60)
        await writer.start()
        writer.submit(make_record())
        answer = await writer.flush(0.05)
        assert await writer.stop(10) == 0
        return answer

    assert asyncio.run(main()) is False
    assert row_count(engine) == 1


def test_a_committed_segment_is_deleted_at_once_not_at_shutdown(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook, spill, events = Hook(store), tmp_path / "spill", Events()
    hook.down = DatabaseUnavailable("down")

    async def main() -> list[int]:
        writer = fast_writer(hook, spill, segment_max_records=10, **events.kwargs())
        await writer.start()
        for _ in range(35):  # three sealed segments and an active one, all in memory
            writer.submit(make_record())
        assert len(list_segments(spill)) == 4
        hook.down = None
        await poll(lambda: row_count(engine) == 35 and not writer.pending)
        # Committed: only the (empty) active segment remains, while the writer still runs.
        await poll(lambda: len(list_segments(spill)) == 1)
        sizes = [len(p.read_bytes().splitlines()) for p in list_segments(spill)]
        assert await writer.stop(5) == 0
        return sizes

    assert asyncio.run(main()) == [0]
    assert set(events.errors) <= {("insert", "connection")}  # the outage at most, no bug


def test_a_segment_that_cannot_be_created_is_reported_and_the_current_one_kept(
    tmp_path: Path, make_record: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    events, spill = Events(), tmp_path / "spill"
    records = [make_record() for _ in range(10)]
    create = writer_module.Segment.create

    async def main() -> list[str]:
        writer = fast_writer(down, spill, segment_max_records=3, **events.kwargs())
        await writer.start()

        def disk_full(*args: object, **kwargs: object) -> object:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(writer_module.Segment, "create", disk_full)
        for r in records:
            writer.submit(r)
        ids = journal_order(spill)
        monkeypatch.setattr(writer_module.Segment, "create", create)
        await writer.stop(0)
        return ids

    # No roll was possible: every record went on into the one segment there was.
    assert asyncio.run(main()) == [r.id for r in records]
    assert ("journal", "other") in events.errors
    assert {e for e in events.errors if e[0] == "journal"} == {("journal", "other")}


@pytest.mark.parametrize("writers", [1, 2])
def test_segment_names_stay_unique_and_ordered_when_the_clock_stands_still(
    tmp_path: Path, make_record: RecordFactory, monkeypatch: pytest.MonkeyPatch, writers: int
) -> None:
    # A coarse or stopped clock gives every segment the same timestamp: the names must still
    # differ (or one segment would replace another) and sort in the order they were written.
    monkeypatch.setattr(journal_module, "time", SimpleNamespace(time_ns=lambda: 1_000))
    spill = tmp_path / "spill"
    submitted: list[list[str]] = [[] for _ in range(writers)]

    async def main() -> None:
        ws = [fast_writer(down, spill, segment_max_records=4) for _ in range(writers)]
        for w in ws:
            await w.start()
        for _ in range(18):
            for w, ids in zip(ws, submitted, strict=True):
                r = make_record()
                w.submit(r)
                ids.append(r.id)
        for w in ws:
            await w.stop(0)

    asyncio.run(main())
    journaled = journal_order(spill)
    assert sorted(journaled) == sorted(i for ids in submitted for i in ids)  # none replaced
    for ids in submitted:  # each writer's records in the order it took them
        assert [i for i in journaled if i in set(ids)] == ids


def test_two_writers_in_one_process_keep_refused_records_in_files_of_their_own(
    tmp_path: Path, make_record: RecordFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same pid and a clock that stands still: only each writer's tag tells its
    # rejected-record file apart (one shared file would mix their size accounting and pruning).
    monkeypatch.setattr(
        rejected_module, "time", SimpleNamespace(time_ns=lambda: 1_000, time=time.time)
    )
    spill = tmp_path / "spill"
    poisons = [make_record(features={"poison": True}) for _ in range(2)]

    def insert(records: Sequence[PredictionRecord]) -> int:
        if any("poison" in r.features for r in records):
            raise IntegrityError("INSERT", {}, Exception("not null"))  # its values
        return len(records)

    async def main() -> None:
        writers = [fast_writer(insert, spill) for _ in range(2)]
        for w, poison in zip(writers, poisons, strict=True):
            await w.start()
            w.submit(poison)
        await poll(lambda: not any(w.pending for w in writers))
        for w in writers:
            assert await w.stop(5) == 0

    asyncio.run(main())
    files = sorted(spill.glob("rejected-*.jsonl"))
    kept = sorted([decode(line).id for line in f.read_bytes().splitlines()] for f in files)
    assert kept == sorted([p.id] for p in poisons)


def test_segments_roll_by_size_only_not_on_every_failed_retry(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    spill = tmp_path / "spill"
    failures: list[tuple[str, str]] = []

    async def main() -> list[int]:
        writer = fast_writer(
            down, spill, segment_max_records=10, on_error=lambda op, k: failures.append((op, k))
        )
        await writer.start()
        for i in range(25):
            writer.submit(make_record())
            if i % 5 == 4:  # let several retry cycles fail in between
                seen = len(failures)
                await poll(lambda: len(failures) >= seen + 2)  # noqa: B023 - read at once
        sizes = [len(p.read_bytes().splitlines()) for p in list_segments(spill)]
        await writer.stop(0)
        return sizes

    assert asyncio.run(main()) == [10, 10, 5]


def test_a_batch_submitted_at_once_counts_each_record_toward_the_segment_size(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    spill = tmp_path / "spill"

    batches = [[make_record() for _ in range(4)] for _ in range(3)]

    async def main() -> list[int]:
        writer = fast_writer(down, spill, segment_max_records=10)
        await writer.start()
        for batch in batches:  # 4, 8, then 12 lines: the third batch fills the segment
            writer.submit_many(batch)
        sizes = [len(p.read_bytes().splitlines()) for p in list_segments(spill)]
        await writer.stop(0)
        return sizes

    assert asyncio.run(main()) == [12, 0]  # rolled once the third batch filled it
    assert journal_order(spill) == [r.id for batch in batches for r in batch]  # line by line


def test_an_idle_writer_keeps_its_segment_file(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    spill, events = tmp_path / "spill", Events()

    async def main() -> tuple[list[Path], list[Path]]:
        writer = fast_writer(store.insert_predictions, spill, **events.kwargs())
        await writer.start()
        await poll(lambda: len(events.pending) >= 1)  # the start-up cycle
        before = list_segments(spill)
        seen = len(events.pending)
        await poll(lambda: len(events.pending) >= seen + 5)  # five more cycles, nothing to do
        after = list_segments(spill)
        assert await writer.stop(5) == 0
        return before, after

    before, after = asyncio.run(main())
    assert len(before) == 1 and after == before


def test_pending_reads_zero_and_flush_true_once_a_spill_is_committed(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook, events = Hook(store), Events()
    hook.down = DatabaseUnavailable("down")

    async def main() -> bool:
        # After the first failure the flusher waits a minute: flush() alone does the recovery.
        writer = fast_writer(
            hook, tmp_path / "spill", max_pending=10, backoff_initial=60, **events.kwargs()
        )
        await writer.start()
        for _ in range(40):  # 30 only on disk
            writer.submit(make_record())
        await poll(lambda: hook.failures >= 1)
        hook.down = None
        answer = await writer.flush(10)
        assert row_count(engine) == 40 and not writer.disk_only and not writer.pending
        assert events.pending[-1] == (0, 0)  # the gauge follows
        assert await writer.stop(5) == 0
        return answer

    assert asyncio.run(main()) is True
    assert (10, 30) in events.pending


def test_an_insert_stuck_past_its_timeout_counts_as_an_outage(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook, events = Hook(store, delay=0.5), Events()

    async def main() -> int:
        writer = fast_writer(hook, tmp_path, insert_timeout=0.05, **events.kwargs())
        await writer.start()
        writer.submit(make_record())
        await poll(lambda: ("insert", "connection") in events.errors)
        hook.delay = 0.0
        await poll(lambda: row_count(engine) == 1)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert ("insert", "other") not in events.errors


def test_the_spill_folder_is_created_private_with_its_parents(tmp_path: Path) -> None:
    spill = tmp_path / "data" / "spill"  # neither exists yet

    async def main() -> None:
        writer = fast_writer(down, spill)
        old = os.umask(0o022)
        try:
            await writer.start()
        finally:
            os.umask(old)
        await writer.stop(0)

    asyncio.run(main())
    assert stat.S_IMODE(os.stat(spill).st_mode) == 0o700  # journal lines are patient data


def test_the_flusher_is_one_task_named_record_writer_until_stopped(tmp_path: Path) -> None:
    """A task dump (asyncio debug mode, ``Task was destroyed but it is pending``) names the
    flusher; a second start adds no second flusher and stop leaves none behind."""

    async def flushers() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if t.get_name() == "record-writer"]

    async def main() -> tuple[list[str], list[str]]:
        writer = fast_writer(down, tmp_path / "spill")
        await writer.start()
        await writer.start()
        running = await flushers()
        await writer.stop(0)
        return running, await flushers()

    running, after = asyncio.run(main())
    assert running == ["record-writer"]
    assert after == []
