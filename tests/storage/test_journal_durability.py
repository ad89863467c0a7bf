"""An acknowledged record is in the database or in the journal on disk, at every instant.

A record is acknowledged when ``RecordWriter.submit`` returns (the service then answers 200).
From then on it must survive anything short of a power cut: it is committed, or a line of a
journal segment holds it. The shapes below roll segments while their records are still only in
memory (the database is down), spill past the memory bound, and let the database come and go, so
that a segment deleted one step too early loses acknowledged predictions. The outage is real on
both backends: PostgreSQL is reached through a TCP proxy that is cut; SQLite's database folder is
moved away, so the file cannot be opened (no pooled connection keeps the old inode).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from tests.reliability.tcp_proxy import TcpProxy
from tests.storage.test_writer import poll

from nexus_ml.storage import PredictionRecord, RecordWriter, Store, make_engine
from nexus_ml.storage.journal import decode, list_segments
from nexus_ml.storage.models import Prediction

RecordFactory = Callable[..., PredictionRecord]
SRC = Path(__file__).resolve().parents[2] / "src"


class Outage:
    """The writer's way to the database, which the test cuts and restores; the test's own view."""

    def __init__(self, db_url: str, engine: Engine, proxy: TcpProxy | None) -> None:
        self.engine = engine  # the test's view (never cut for PostgreSQL)
        self.proxy = proxy
        self.sqlite_dir: Path | None = None
        if proxy is None:
            database = make_url(db_url).database
            assert database is not None
            self.sqlite_dir = Path(database).parent
            self.writer_url = db_url
        else:
            url = make_url(db_url).set(host="127.0.0.1", port=proxy.port)
            self.writer_url = url.render_as_string(hide_password=False)
        self.is_cut = False

    @property
    def _away(self) -> Path:
        assert self.sqlite_dir is not None
        return self.sqlite_dir.with_name(self.sqlite_dir.name + "-away")

    def writer_engine(self) -> Engine:
        """The engine a writer gets: through the proxy, or on the SQLite file (no pool)."""
        if self.proxy is None:
            return make_engine(self.writer_url, poolclass=NullPool)
        return make_engine(self.writer_url)

    def cut(self) -> None:
        if self.proxy is not None:
            self.proxy.cut("refuse")
        else:
            os.rename(self.sqlite_dir, self._away)  # type: ignore[arg-type]
        self.is_cut = True

    def restore(self) -> None:
        if self.proxy is not None:
            self.proxy.restore()
        else:
            os.rename(self._away, self.sqlite_dir)  # type: ignore[arg-type]
        self.is_cut = False

    def stored_ids(self) -> list[str]:
        """Every id committed, read where the database is now (also during an outage)."""
        if self.proxy is not None:
            engine = self.engine
        else:
            folder = self._away if self.is_cut else self.sqlite_dir
            database = make_url(self.writer_url).database
            assert database is not None and folder is not None
            engine = create_engine(f"sqlite:///{folder / Path(database).name}", poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return list(conn.scalars(select(Prediction.id)))
        finally:
            if engine is not self.engine:
                engine.dispose()


@pytest.fixture
def outage(db_url: str, engine: Engine) -> Iterator[Outage]:
    """A cuttable database for a writer: TCP proxy (PostgreSQL) or a moved folder (SQLite)."""
    if make_url(db_url).get_backend_name() == "sqlite":
        o = Outage(db_url, engine, None)
        yield o
        if o.is_cut:
            o.restore()
        return
    url = make_url(db_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield Outage(db_url, engine, proxy)


def journal_ids(spill: Path) -> list[str]:
    """Ids of every record held by a journal segment on disk (sealed or active)."""
    return [decode(line).id for p in list_segments(spill) for line in p.read_bytes().splitlines()]


def assert_nothing_lost(acknowledged: list[str], spill: Path, outage: Outage, when: str) -> None:
    # The journal first: a record leaves it only after its commit, so a record missing from
    # this read and committed since is found by the database read that follows.
    kept = set(journal_ids(spill))
    missing = set(acknowledged) - kept
    if missing:
        missing -= set(outage.stored_ids())
    assert not missing, f"{len(missing)} acknowledged records neither stored nor journaled {when}"


@dataclass(frozen=True)
class Shape:
    """Writer sizes, and the submits at which the database goes down (cut) or comes back."""

    n: int
    max_pending: int
    segment: int
    batch: int
    cuts: tuple[int, ...]
    restores: tuple[int, ...]


SHAPES = {
    # The case: everything fits in memory, a segment rolls at 50 while all its
    # records are only in memory.
    "memory-only-roll": Shape(n=80, max_pending=100, segment=50, batch=25, cuts=(0,), restores=()),
    # Memory full: records spill to disk only, across rolls on both sides of the bound.
    "spill-across-rolls": Shape(
        n=200, max_pending=30, segment=50, batch=10, cuts=(0,), restores=()
    ),
    # The database comes and goes: segments partly committed, rolled on flush and on size.
    "flapping": Shape(
        n=240, max_pending=40, segment=25, batch=10, cuts=(0, 90, 170), restores=(40, 130, 200)
    ),
    # Roll size equal to the memory bound and to the batch: the boundaries coincide.
    "equal-bounds": Shape(
        n=120, max_pending=20, segment=20, batch=20, cuts=(10, 70), restores=(45,)
    ),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_acknowledged_records_are_stored_or_journaled_at_every_step(
    name: str, outage: Outage, tmp_path: Path, make_record: RecordFactory
) -> None:
    shape, spill = SHAPES[name], tmp_path / "spill"
    records = [make_record() for _ in range(shape.n)]
    acknowledged: list[str] = []
    writer_engine = outage.writer_engine()

    async def main() -> int:
        writer = RecordWriter(
            Store(writer_engine).insert_predictions,
            spill,
            batch_size=shape.batch,
            flush_seconds=0.005,
            max_pending=shape.max_pending,
            segment_max_records=shape.segment,
            backoff_initial=0.005,
            backoff_max=0.02,
            scan_seconds=0.05,
        )
        await writer.start()
        for i, record in enumerate(records):
            if i in shape.cuts:
                outage.cut()
            if i in shape.restores:
                outage.restore()
            writer.submit(record)
            acknowledged.append(record.id)
            assert_nothing_lost(acknowledged, spill, outage, f"after submit {i + 1}")
            # Let the flusher run (and commit, and delete segments) between submits.
            await asyncio.sleep(0.002 if i % 5 else 0.01)
        if outage.is_cut:
            # Still down: retries fail for a while, and nothing may be lost meanwhile.
            for _ in range(10):
                await asyncio.sleep(0.01)
                assert_nothing_lost(acknowledged, spill, outage, "while the database is down")
            outage.restore()
        await poll(lambda: not writer.pending and not writer.disk_only, timeout=30)
        assert_nothing_lost(acknowledged, spill, outage, "after recovery")
        return await writer.stop(10)

    try:
        assert asyncio.run(main()) == 0
    finally:
        writer_engine.dispose()
    stored = outage.stored_ids()
    assert len(stored) == len(set(stored)) == shape.n  # each exactly once
    assert set(stored) == set(acknowledged)
    assert list_segments(spill) == []  # committed, so the journal let go of everything


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from sqlalchemy.pool import NullPool
    from nexus_ml.storage import PredictionRecord, RecordWriter, Store, make_engine, new_id, utcnow
    from nexus_ml.storage.journal import list_segments

    url, spill, before, during = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def record(i):
        return PredictionRecord(new_id(), "heart", "v1", utcnow(), {"age": i}, "disease",
                                0.75, {"disease": 0.75, "healthy": 0.25}, 0.001)

    async def main():
        extra = {"poolclass": NullPool} if url.startswith("sqlite") else {}
        store = Store(make_engine(url, **extra))
        writer = RecordWriter(store.insert_predictions, spill, batch_size=10,
                              flush_seconds=0.01, max_pending=100, segment_max_records=50,
                              backoff_initial=0.01, backoff_max=0.05)
        await writer.start()
        for i in range(before):
            r = record(i)
            writer.submit(r)
            print("ack", r.id, flush=True)
        assert await writer.flush(20)
        print("stored", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the parent cuts the database
        for i in range(during):
            r = record(before + i)
            writer.submit(r)
            print("ack", r.id, flush=True)
        print("segments", len(list_segments(Path(spill))), flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_sigkill_after_segment_rolls_while_the_database_is_down_loses_nothing(
    outage: Outage, tmp_path: Path
) -> None:
    spill, before, during = tmp_path / "spill", 30, 130
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, outage.writer_url, str(spill), str(before), str(during)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    acknowledged: list[str] = []
    try:
        assert proc.stdin is not None and proc.stdout is not None

        def read_until(word: bytes) -> list[bytes]:
            while True:
                line = proc.stdout.readline()  # type: ignore[union-attr]
                assert line, "the writer process ended early"
                parts = line.split()
                if parts[0] == b"ack":
                    acknowledged.append(parts[1].decode())
                elif parts[0] == word:
                    return parts

        read_until(b"stored")  # the first 30 are committed: their segments are gone
        outage.cut()
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        segments = int(read_until(b"segments")[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) == before + during
    # 130 records at 50 per segment with at most 100 in memory: two segments rolled while
    # their records were in memory only, the third holds the 30 that memory could not take.
    assert segments == 3
    assert sorted(journal_ids(spill)) == sorted(acknowledged[before:])
    assert sorted(outage.stored_ids()) == sorted(acknowledged[:before])

    outage.restore()
    writer_engine = outage.writer_engine()

    async def restart() -> int:
        writer = RecordWriter(Store(writer_engine).insert_predictions, spill, scan_seconds=0.05)
        await writer.start()
        await poll(lambda: len(outage.stored_ids()) >= before + during, timeout=30)
        return await writer.stop(10)

    try:
        assert asyncio.run(restart()) == 0
    finally:
        writer_engine.dispose()
    stored = outage.stored_ids()
    assert len(stored) == len(set(stored)) == before + during  # each exactly once
    assert set(stored) == set(acknowledged)
    assert list_segments(spill) == []
