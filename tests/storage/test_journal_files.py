"""The journal's files: private, locked by their writer alone, cleaned up, read back whole.

Journal segments and rejected-record files hold patient features, so they are 0600. A segment's
lock must end with its writer (not live on in a child process), a closed segment stays on disk
for replay, a failed write is reported instead of counted, and a reader skips blank and damaged
lines without stopping at them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import Engine
from tests.storage.test_writer import Events, Hook, fast_writer, poll, row_count, stored_ids

from nexus_ml.storage import DatabaseUnavailable, PredictionRecord, Store, WriterFull
from nexus_ml.storage import journal as journal_module
from nexus_ml.storage.journal import (
    CORRUPT_SUFFIX,
    Segment,
    claim,
    decode,
    encode,
    list_segments,
    read_chunks,
)
from nexus_ml.storage.rejected import PREFIX as REJECTED_PREFIX
from nexus_ml.storage.rejected import RejectedFiles


def write_rejected(directory: Path, records: list[PredictionRecord]) -> Path:
    """Park ``records`` as the writer does (default cap, no pruning here)."""
    return RejectedFiles(directory, max_bytes=1 << 30, max_age_seconds=86400.0).add(records)


RecordFactory = Callable[..., PredictionRecord]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def full_disk() -> Iterator[int]:
    """A descriptor on /dev/full: every write(2) to it fails with ENOSPC."""
    fd = os.open("/dev/full", os.O_WRONLY)
    yield fd
    os.close(fd)


def fd_of(path: Path) -> int:
    """This process's descriptor on ``path`` (the writer's own, found from outside it)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == str(path):
                return int(name)
        except OSError:
            continue
    raise AssertionError(f"no descriptor open on {path.name}")


def test_segments_and_rejected_files_are_private(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    old = os.umask(0o022)  # the usual umask would leave a default-mode file world-readable
    try:
        seg = Segment.create(tmp_path, 1, "ab")
        rejected = write_rejected(tmp_path, [make_record()])
    finally:
        os.umask(old)
    try:
        assert mode_of(seg.path) == 0o600
        assert mode_of(rejected) == 0o600
        assert rejected.name.startswith(REJECTED_PREFIX)
    finally:
        seg.close()


def test_a_segment_lock_ends_with_its_writer_not_with_a_child_it_started(
    tmp_path: Path,
) -> None:
    seg = Segment.create(tmp_path, 1, "ab")
    # A child started without closing descriptors (as fork() does) must not inherit the
    # segment: it would hold the lock after we die, and nobody could replay our records.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        close_fds=False,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        # Running the new program: exec(2) has closed whatever was close-on-exec.
        assert child.stdout.readline() == b"up\n"
        with claim(seg.path) as fd:
            assert fd is None  # we still hold it
        seg.close()  # our death, as far as the lock is concerned
        with claim(seg.path) as fd:
            assert fd is not None
    finally:
        child.kill()
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def test_closing_twice_leaves_a_reused_descriptor_alone_and_keeps_the_file(
    tmp_path: Path,
) -> None:
    seg = Segment.create(tmp_path, 1, "ab")
    number = seg.fd
    seg.close()
    other = tmp_path / "other"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if fd != number:
            os.dup2(fd, number)  # the number now belongs to someone else
        seg.close()
        seg.delete()  # closed: an orphan for the next replay, not ours to delete
        os.fstat(number)  # still open
        assert seg.path.exists()
    finally:
        for n in {number, fd}:
            os.close(n)


def test_deleting_a_segment_someone_already_removed_just_closes_it(tmp_path: Path) -> None:
    seg = Segment.create(tmp_path, 1, "ab")
    os.unlink(seg.path)  # e.g. quarantined under another name
    seg.delete()
    assert seg.closed
    with pytest.raises(OSError):
        os.fstat(seg.fd)


@pytest.mark.parametrize("gone", [False, True])
def test_a_failed_create_raises_its_error_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gone: bool
) -> None:
    rename = os.rename

    def failing_rename(src: object, dst: object) -> None:
        if gone:  # the temporary file vanished too (its folder was emptied)
            os.unlink(src)  # type: ignore[arg-type]
        raise PermissionError("rename refused")

    before = open_fds()
    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(PermissionError, match="rename refused"):
        Segment.create(tmp_path, 1, "ab")
    monkeypatch.setattr(os, "rename", rename)
    assert os.listdir(tmp_path) == []
    assert open_fds() == before  # the descriptor was closed


def test_a_failed_write_is_reported_not_counted(
    tmp_path: Path, make_record: RecordFactory, full_disk: int
) -> None:
    seg = Segment.create(tmp_path, 1, "ab")
    try:
        assert seg.append(encode(make_record())) and seg.written == 1
        os.dup2(full_disk, seg.fd)  # the disk fills up
        assert seg.append(encode(make_record())) is False
        assert seg.broken and seg.written == 1
    finally:
        seg.close()


def test_a_full_disk_never_makes_submit_accept_a_record_it_cannot_keep(
    store: Store, engine: Engine, tmp_path: Path, make_record: RecordFactory, full_disk: int
) -> None:
    hook, events = Hook(store), Events()
    hook.down = DatabaseUnavailable("down")
    spill = tmp_path / "spill"
    accepted: list[str] = []

    async def main() -> int:
        writer = fast_writer(hook, spill, max_pending=5, **events.kwargs())
        await writer.start()
        os.dup2(full_disk, fd_of(list_segments(spill)[0]))
        # One synchronous burst: no flush cycle runs in between to open a new segment.
        for _ in range(5):
            record = make_record()
            writer.submit(record)  # memory still has room
            accepted.append(record.id)
        with pytest.raises(WriterFull, match=r"^record writer: memory full and journal not writ"):
            writer.submit(make_record())  # neither memory nor disk can take it
        hook.down = None
        await poll(lambda: row_count(engine) == 5)
        return await writer.stop(5)

    assert asyncio.run(main()) == 0
    assert sorted(stored_ids(engine)) == sorted(accepted)
    assert events.errors.count(("journal", "other")) == 1  # reported once, at the failure


@pytest.mark.parametrize("room", [3, 2])
def test_when_the_journal_write_fails_memory_takes_a_batch_only_if_it_fits_whole(
    tmp_path: Path, make_record: RecordFactory, full_disk: int, room: int
) -> None:
    spill = tmp_path / "spill"
    batch = [make_record() for _ in range(3)]

    async def main() -> int:
        writer = fast_writer(lambda records: 1 // 0, spill, max_pending=room, flush_seconds=60)
        await writer.start()
        os.dup2(full_disk, fd_of(list_segments(spill)[0]))
        if room == len(batch):  # exactly the room there is
            writer.submit_many(batch)
        else:
            with pytest.raises(
                WriterFull, match=r"^record writer: memory full and journal not writable$"
            ):
                writer.submit_many(batch)
        pending = writer.pending
        await writer.stop(0)
        return pending

    assert asyncio.run(main()) == (3 if room == 3 else 0)


def test_after_a_failed_write_the_next_records_are_journaled_again(
    store: Store, engine: Engine, tmp_path: Path, make_record: RecordFactory, full_disk: int
) -> None:
    spill = tmp_path / "spill"
    first = [make_record() for _ in range(3)]
    later = [make_record() for _ in range(3)]

    events = Events()

    async def main() -> list[str]:
        # A flush period far beyond the test: only flush() writes to the database.
        writer = fast_writer(
            store.insert_predictions, spill, flush_seconds=60, batch_size=100, **events.kwargs()
        )
        await writer.start()
        # The start-up cycle is over (its orphan scan no longer holds the segment open too).
        await poll(lambda: bool(events.pending))
        broken = list_segments(spill)[0]
        os.dup2(full_disk, fd_of(broken))
        for r in first:
            writer.submit(r)
        assert await writer.flush(5)
        for r in later:
            writer.submit(r)
        # A fresh segment on the (no longer full) disk holds them before any commit.
        journaled = [
            journal_module.decode(line).id
            for p in list_segments(spill)
            for line in p.read_bytes().splitlines()
        ]
        assert broken not in list_segments(spill)
        assert await writer.stop(5) == 0
        return journaled

    assert sorted(asyncio.run(main())) == sorted(r.id for r in later)
    assert row_count(engine) == 6


def test_only_complete_segments_are_listed_oldest_first(tmp_path: Path) -> None:
    names = [
        "seg-00000000000000000002-10-ab000001.jsonl",
        "seg-00000000000000000001-11-cd000001.jsonl",
        f"{REJECTED_PREFIX}00000000000000000003-10.jsonl",  # for a human, never replayed
        ".seg-00000000000000000004-10-ab000002.jsonl.tmp",  # not yet locked and renamed
        f"seg-00000000000000000005-10-ab000003{CORRUPT_SUFFIX}",  # quarantined
        "seg-notes.txt",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert list_segments(tmp_path) == [tmp_path / names[1], tmp_path / names[0]]
    assert list_segments(tmp_path / "missing") == []


def test_reading_skips_blank_and_damaged_lines_and_counts_each(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    records = [make_record(features={"city": "São Paulo", "i": i}) for i in range(7)]
    lines = [encode(r) for r in records]
    accented = lines[3].index("ã".encode())
    content = b"".join(
        [
            *lines[:2],
            b"\n",  # a blank line is skipped, not the end
            lines[2],
            lines[3][: accented + 1] + b"\n",  # torn inside a two-byte character
            *lines[4:6],
            b"{torn\n",
            lines[6],
        ]
    )
    path = tmp_path / "seg.jsonl"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = list(read_chunks(fd, 3))
    finally:
        os.close(fd)
    got = [r for chunk, _ in chunks for r in chunk]
    assert got == records[:3] + records[4:]
    assert [len(chunk) for chunk, _ in chunks] == [3, 3]
    assert sum(bad for _, bad in chunks) == 2


def test_journal_file_names_are_unique_per_writer_and_sort_by_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([10, 20])
    monkeypatch.setattr(journal_module, "time", SimpleNamespace(time_ns=lambda: next(clock)))
    later = Segment.create(tmp_path, 7, "ab")
    earlier_seq = Segment.create(tmp_path, 1, "cd")
    try:
        assert list_segments(tmp_path) == [later.path, earlier_seq.path]  # by time, not seq
        assert f"-{os.getpid()}-ab000007" in later.path.name
        assert journal_module.segment_pid(later.path) == os.getpid()
    finally:
        later.close()
        earlier_seq.close()


@pytest.mark.parametrize(
    ("segment", "max_pending", "n"),
    [(1, 100, 3), (10, 100, 10), (10, 100, 25), (7, 20, 50), (50, 100, 80), (50, 100, 49)],
)
def test_with_the_database_down_a_segment_rolls_exactly_at_its_size(
    tmp_path: Path, make_record: RecordFactory, segment: int, max_pending: int, n: int
) -> None:
    def down(records: object) -> int:
        raise DatabaseUnavailable("down")

    spill = tmp_path / "spill"

    async def main() -> list[int]:
        writer = fast_writer(down, spill, max_pending=max_pending, segment_max_records=segment)
        await writer.start()
        for _ in range(n):
            writer.submit(make_record())
        sizes = [len(p.read_bytes().splitlines()) for p in list_segments(spill)]
        await writer.stop(0)
        return sizes

    # Full segments of exactly `segment` lines, then the active one (empty right after a roll).
    assert asyncio.run(main()) == [segment] * (n // segment) + [n % segment]


def test_rejected_records_are_kept_one_readable_line_each(
    tmp_path: Path, make_record: RecordFactory
) -> None:
    records = [make_record(features={"note": "São Paulo", "i": i}) for i in range(3)]
    path = write_rejected(tmp_path, records)
    assert [journal_module.decode(line) for line in path.read_bytes().splitlines()] == records


@pytest.mark.parametrize(
    "features",
    [
        {"age": 0.1 + 0.2, "tiny": 5e-324, "big": 1.7976931348623157e308, "neg": -1e-5},
        # 10**30 is past orjson's 64-bit integers: the standard library writes that line.
        {"age": 10**30, "flag": True, "none": None, "nested": {"a": [1, 2.5, "x"]}},
        {"age": 1.0, "key with ü": "São Paulo\u2028", "empty": {}},
    ],
)
def test_every_value_a_client_can_send_comes_back_exactly(
    make_record: RecordFactory, features: dict[str, object]
) -> None:
    record = make_record(features=features, confidence=0.1 + 0.7, latency_seconds=1.234e-7)
    line = encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = decode(line)
    assert back == record
    assert json.loads(line)[4] == json.loads(json.dumps(features))  # the standard parse agrees


def test_traceability_fields_survive_the_journal(make_record: RecordFactory) -> None:
    record = make_record(request_id="req-1", profile_hash="ab" * 32, role="challenger")
    assert decode(encode(record)) == record


def test_a_line_written_before_the_traceability_fields_is_a_champion_without_trace(
    make_record: RecordFactory,
) -> None:
    record = make_record()
    old = json.dumps(json.loads(encode(record))[:9]).encode()
    decoded = decode(old)
    assert (decoded.request_id, decoded.profile_hash, decoded.role) == (None, None, "champion")
    assert decoded.features == record.features and decoded.id == record.id


@pytest.mark.parametrize("n", [8, 10, 11, 13])
def test_a_line_of_another_length_is_damaged(make_record: RecordFactory, n: int) -> None:
    fields = json.loads(encode(make_record()))
    line = json.dumps((fields * 2)[:n]).encode()
    with pytest.raises(ValueError, match="damaged"):
        decode(line)


@pytest.mark.parametrize(
    ("values", "finite"),
    [
        (1.5, True),
        (math.nan, False),
        (-math.inf, False),
        ((0.5, 1.0), True),
        ((0.5, math.nan), False),
        ([1, "a", None, True, {"b": [2.5]}], True),
        ({"a": {"b": [0.5, math.inf]}}, False),
        ("text", True),
        # A float subclass (NumPy's) is left to the strict encoder, which knows it: orjson
        # would write its NaN as null.
        (np.float64(1.5), False),
        ([0.5, np.float64("nan")], False),
    ],
)
def test_all_finite_looks_at_any_json_value_and_python_tuples(values: object, finite: bool) -> None:
    # What decides whether the fast encoders (orjson, which writes NaN as null) may write it.
    assert journal_module.all_finite(values) is finite
