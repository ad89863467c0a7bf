"""RecordWriter: batching, draining, outages, memory bound, journal replay, concurrency."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from nexus_ml.storage import (
    DatabaseUnavailable,
    PredictionRecord,
    RecordWriter,
    Store,
    WriterFull,
    make_engine,
)
from nexus_ml.storage.journal import PREFIX, SUFFIX, Segment, decode, encode, list_segments
from nexus_ml.storage.models import Prediction

RecordFactory = Callable[..., PredictionRecord]
SRC = Path(__file__).resolve().parents[2] / "src"


class Hook:
    """Insert function in front of a Store: can be switched down, slowed, and it counts calls."""

    def __init__(self, store: Store, *, delay: float = 0.0) -> None:
        self.store = store
        self.delay = delay
        self.down: BaseException | None = None
        self.batches: list[int] = []
        self.failures = 0
        self._lock = threading.Lock()

    def __call__(self, records: Sequence[PredictionRecord]) -> int:
        with self._lock:
            self.batches.append(len(records))
        if self.delay:
            time.sleep(self.delay)
        if self.down is not None:
            with self._lock:
                self.failures += 1
            raise self.down
        return self.store.insert_predictions(records)


class Events:
    """Collects the writer's callbacks."""

    def __init__(self) -> None:
        self.flushed: list[int] = []
        self.errors: list[tuple[str, str]] = []
        self.pending: list[tuple[int, int]] = []

    def kwargs(self) -> dict[str, object]:
        return {
            "on_flush": lambda n, s: self.flushed.append(n),
            "on_error": lambda op, kind: self.errors.append((op, kind)),
            "on_pending": lambda m, d: self.pending.append((m, d)),
        }


async def poll(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def stored_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(Prediction.id)))


def row_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(Prediction)) or 0)


def journal_lines(spill: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in list_segments(spill))


def fast_writer(insert: Callable[..., int], spill: Path, **kwargs: object) -> RecordWriter:
    options: dict[str, object] = {
        "batch_size": 25,
        "flush_seconds": 0.02,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
        "scan_seconds": 0.1,
    }
    options.update(kwargs)
    return RecordWriter(insert, spill, **options)  # type: ignore[arg-type]


def dead_pid() -> int:
    """A pid with no process behind it."""
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


def leftover_segment(spill: Path, records: Sequence[PredictionRecord], pid: int) -> Path:
    """A journal segment as a SIGKILLed process leaves it: complete name, nobody's lock."""
    spill.mkdir(parents=True, exist_ok=True)
    path = spill / f"{PREFIX}{time.time_ns():020d}-{pid}-000001{SUFFIX}"
    path.write_bytes(b"".join(encode(r) for r in records))
    return path


def test_batches_are_written(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook, events = Hook(store), Events()
    records = [make_record() for _ in range(230)]

    async def main() -> int:
        writer = fast_writer(hook, tmp_path / "spill", **events.kwargs())
        await writer.start()
        for r in records:
            writer.submit(r)
        await poll(lambda: row_count(engine) == 230)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in records)
    assert max(hook.batches) <= 25
    assert sum(events.flushed) == 230
    assert events.errors == []
    assert list_segments(tmp_path / "spill") == []


def test_stop_drains_everything(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    records, events = [make_record() for _ in range(300)], Events()

    async def main() -> tuple[int, int]:
        # Neither the period nor the batch size would trigger a flush: only stop() does.
        writer = RecordWriter(
            store.insert_predictions, tmp_path, batch_size=1000, flush_seconds=60, **events.kwargs()
        )
        await writer.start()
        await poll(lambda: bool(events.pending))  # the start-up cycle (leftover replay) is over
        for r in records:
            writer.submit(r)
        await asyncio.sleep(0.05)
        before = row_count(engine)
        return before, await writer.stop(10)

    before, left = asyncio.run(main())
    assert (before, left) == (0, 0)
    assert row_count(engine) == 300
    assert list_segments(tmp_path) == []


def test_outage_bounds_memory_then_recovers_exactly_once(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook, events = Hook(store), Events()
    hook.down = DatabaseUnavailable("down")
    spill = tmp_path / "spill"
    records = [make_record() for _ in range(300)]

    async def main() -> tuple[int, int, int]:
        writer = fast_writer(hook, spill, max_pending=40, segment_max_records=70, **events.kwargs())
        await writer.start()
        for r in records:
            writer.submit(r)
        await poll(lambda: hook.failures >= 3)
        during = (writer.pending, writer.disk_only, journal_lines(spill))
        hook.down = None  # the database comes back
        await poll(lambda: row_count(engine) == 300 and not writer.pending and not writer.disk_only)
        assert await writer.stop(5) == 0
        return during

    in_memory, disk_only, on_disk = asyncio.run(main())
    assert (in_memory, disk_only, on_disk) == (40, 260, 300)
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == 300
    assert set(ids) == {r.id for r in records}
    assert ("insert", "connection") in events.errors
    assert (40, 260) in events.pending
    assert max(hook.batches) <= 25  # replay reads one batch at a time
    assert sum(events.flushed) == 300  # every record counted as new exactly once
    assert list_segments(spill) == []


def test_unreachable_postgres_keeps_records_for_the_next_process(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    spill, events = tmp_path / "spill", Events()
    records = [make_record() for _ in range(50)]
    down_engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")

    async def outage() -> int:
        writer = fast_writer(Store(down_engine).insert_predictions, spill, **events.kwargs())
        await writer.start()
        for r in records:
            writer.submit(r)
        await poll(lambda: ("insert", "connection") in events.errors)
        return await writer.stop(0.3)

    async def restart() -> int:
        writer = fast_writer(store.insert_predictions, spill)
        await writer.start()
        await poll(lambda: row_count(engine) == 50)
        return await writer.stop(5)

    try:
        assert asyncio.run(outage()) == 50
    finally:
        down_engine.dispose()
    assert journal_lines(spill) == 50
    assert asyncio.run(restart()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in records)
    assert list_segments(spill) == []


def test_dead_process_journal_is_replayed_on_start(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    spill = tmp_path / "spill"
    dead = [make_record() for _ in range(120)]
    leftover = leftover_segment(spill, dead, dead_pid())
    # A live process's segment (it holds the flock) must be left alone.
    live = Segment.create(spill, 99)
    live.append(encode(make_record()))

    async def main() -> int:
        writer = fast_writer(store.insert_predictions, spill, flush_seconds=5)
        await writer.start()
        await poll(lambda: row_count(engine) == 120)
        return await writer.stop(5)

    try:
        assert asyncio.run(main()) == 0
        assert sorted(stored_ids(engine)) == sorted(r.id for r in dead)
        assert not leftover.exists()
        assert list_segments(spill) == [live.path]
    finally:
        live.close()


def test_two_writers_replay_a_leftover_journal_once(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    spill = tmp_path / "spill"
    records = [make_record() for _ in range(1000)]
    leftover = leftover_segment(spill, records, dead_pid())
    hooks = [Hook(store, delay=0.005), Hook(store, delay=0.005)]

    async def main() -> None:
        writers = [fast_writer(h, spill, batch_size=100) for h in hooks]
        await asyncio.gather(*(w.start() for w in writers))
        await poll(lambda: row_count(engine) == 1000 and not leftover.exists())
        assert await asyncio.gather(*(w.stop(5) for w in writers)) == [0, 0]

    asyncio.run(main())
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == 1000
    # Exactly one writer replayed the segment: 1000 records were sent to the database, not 2000.
    assert sum(sum(h.batches) for h in hooks) == 1000
    assert sorted(len(h.batches) for h in hooks) == [0, 10]


def test_records_survive_sigkill(engine: Engine, store: Store, tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    script = textwrap.dedent(
        """
        import asyncio, sys
        from nexus_ml.storage import (
            DatabaseUnavailable, PredictionRecord, RecordWriter, new_id, utcnow,
        )

        def down(records):
            raise DatabaseUnavailable("down")

        async def main():
            writer = RecordWriter(down, sys.argv[1], max_pending=100, backoff_initial=0.01)
            await writer.start()
            for i in range(500):
                writer.submit(PredictionRecord(new_id(), "heart", "v1", utcnow(), {"i": i},
                                               "a", 0.5, {"a": 0.5}, 0.01))
            print("submitted", flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(spill)], stdout=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"submitted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert journal_lines(spill) == 500

    async def main() -> int:
        writer = fast_writer(store.insert_predictions, spill)
        await writer.start()
        await poll(lambda: row_count(engine) == 500)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert len(set(stored_ids(engine))) == 500
    assert list_segments(spill) == []


def test_submit_from_many_threads(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    records = [make_record() for _ in range(2000)]

    async def main() -> int:
        writer = fast_writer(store.insert_predictions, tmp_path, batch_size=100)
        await writer.start()

        def produce(part: Sequence[PredictionRecord]) -> None:
            for r in part:
                writer.submit(r)

        await asyncio.gather(*(asyncio.to_thread(produce, records[i::4]) for i in range(4)))
        await poll(lambda: row_count(engine) == 2000)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in records)


def test_other_errors_are_retried_and_reported(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook, events = Hook(store), Events()
    hook.down = ValueError("boom")

    def broken_callback(n: int, seconds: float) -> None:
        raise RuntimeError("metrics bug")

    async def main() -> int:
        writer = fast_writer(
            hook, tmp_path, on_error=events.kwargs()["on_error"], on_flush=broken_callback
        )
        await writer.start()
        for _ in range(30):
            writer.submit(make_record())
        await poll(lambda: hook.failures >= 2)
        hook.down = None
        await poll(lambda: row_count(engine) == 30)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert ("insert", "other") in events.errors


def test_damaged_orphan_is_quarantined_not_deleted(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    events = Events()
    good = [make_record() for _ in range(10)]
    path = leftover_segment(tmp_path, good, dead_pid())
    with path.open("ab") as fh:
        fh.write(encode(make_record())[:30])  # torn by a crash mid-write

    async def main() -> int:
        writer = fast_writer(store.insert_predictions, tmp_path, **events.kwargs())
        await writer.start()
        await poll(lambda: row_count(engine) == 10 and not path.exists())
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert path.with_suffix(".corrupt").exists()
    assert ("replay", "other") in events.errors


def test_submit_needs_a_running_writer(tmp_path: Path, make_record: RecordFactory) -> None:
    writer = RecordWriter(lambda records: len(records), tmp_path)
    with pytest.raises(WriterFull):
        writer.submit(make_record())

    async def main() -> None:
        await writer.start()
        writer.submit(make_record())
        assert await writer.flush(5) is True
        assert await writer.stop(5) == 0

    asyncio.run(main())
    with pytest.raises(WriterFull):
        writer.submit(make_record())


def test_a_refused_record_is_set_aside_not_blocking_the_rest(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    events = Events()
    poison = make_record(features={"poison": True})
    good = [make_record() for _ in range(40)]

    def insert(records: Sequence[PredictionRecord]) -> int:
        if any("poison" in r.features for r in records):
            raise ValueError("refused by the database")
        return store.insert_predictions(records)

    async def main() -> int:
        writer = fast_writer(insert, tmp_path, **events.kwargs())
        await writer.start()
        for r in [*good[:10], poison, *good[10:]]:
            writer.submit(r)
        await poll(lambda: row_count(engine) == 40 and not writer.pending)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in good)
    rejected = list(tmp_path.glob("rejected-*.jsonl"))
    assert len(rejected) == 1
    assert [decode(line) for line in rejected[0].read_bytes().splitlines()] == [poison]
    assert events.errors.count(("insert", "other")) >= 3


def test_retry_now_cuts_a_long_backoff_short(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    hook = Hook(store)
    hook.down = DatabaseUnavailable("down")
    records = [make_record() for _ in range(10)]

    async def main() -> float:
        # A backoff far longer than the poll below: only retry_now() can make it in time.
        writer = fast_writer(hook, tmp_path / "spill", backoff_initial=60.0, backoff_max=60.0)
        await writer.start()
        for r in records:
            writer.submit(r)
        await poll(lambda: hook.failures >= 1)
        hook.down = None  # the database answers again...
        writer.retry_now()  # ...and a readiness ping found out
        started = time.monotonic()
        await poll(lambda: row_count(engine) == 10, timeout=5.0)
        took = time.monotonic() - started
        assert await writer.stop(5) == 0
        return took

    assert asyncio.run(main()) < 5.0
    assert sorted(stored_ids(engine)) == sorted(r.id for r in records)


def test_pending_report_never_reads_zero_while_a_record_is_held(
    engine: Engine, store: Store, tmp_path: Path, make_record: RecordFactory
) -> None:
    """``ml_db_records_pending == 0`` must mean "all committed": tests and operators wait on it.

    The gauge is refreshed per flush cycle; a record submitted after a zero report must not
    leave it at zero until the next cycle (a worker killed then would take the record along
    while its gauge said nothing was held).
    """
    hook, events = Hook(store), Events()

    async def main() -> None:
        writer = fast_writer(hook, tmp_path / "spill", flush_seconds=60.0, **events.kwargs())
        await writer.start()
        await poll(lambda: bool(events.pending))  # the first cycle reported the empty queue
        assert events.pending[-1] == (0, 0)
        writer.submit(make_record())
        # Reported at submit, before any cycle could run: nothing has been written yet.
        assert events.pending[-1] == (1, 0)
        assert row_count(engine) == 0
        writer.submit(make_record())  # no report per record once non-zero ...
        assert events.pending[-1] == (1, 0)
        assert await writer.flush(timeout=10)
        assert events.pending[-1] == (0, 0)  # ... and zero again only once committed
        assert row_count(engine) == 2
        await writer.stop(5)

    asyncio.run(main())


def test_the_first_record_is_reported_before_any_cycle_ran(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    """Until the first report the gauge reads 0, so the first record must set it at once."""
    events = Events()

    async def main() -> None:
        writer = fast_writer(lambda records: len(records), tmp_path, **events.kwargs())
        await writer.start()
        writer.submit(make_record())  # no await since start(): no cycle can have run
        assert events.pending == [(1, 0)]
        for _ in range(3):
            writer.submit(make_record())
        assert events.pending == [(1, 0)]  # once non-zero, the cycles refresh it
        assert await writer.stop(5) == 0

    asyncio.run(main())
