"""Advisory locks and the journal format."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from nexus_ml.storage import PredictionRecord, try_advisory_lock
from nexus_ml.storage.journal import Segment, claim, decode, encode, list_segments, read_chunks
from nexus_ml.storage.locks import lock_id

RecordFactory = Callable[..., PredictionRecord]


def test_advisory_lock_is_exclusive_and_released(engine: Engine) -> None:
    with try_advisory_lock(engine, "drift-job") as first:
        assert first is True
        # A second holder (another connection / file descriptor) is refused, even in-process.
        with try_advisory_lock(engine, "drift-job") as second:
            assert second is False
        with try_advisory_lock(engine, "another-job") as other:
            assert other is True
    with try_advisory_lock(engine, "drift-job") as again:
        assert again is True


def test_lock_id_is_stable_signed_64_bit() -> None:
    assert lock_id("drift-job") == lock_id("drift-job")
    assert lock_id("a") != lock_id("b")
    assert -(2**63) <= lock_id("x") < 2**63


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(
    features=st.dictionaries(st.text(max_size=10), json_values, max_size=8),
    created=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    text=st.text(max_size=30),
    number=st.floats(allow_nan=False, allow_infinity=False),
)
def test_journal_line_round_trips(
    features: dict[str, object], created: datetime, text: str, number: float
) -> None:
    record = PredictionRecord(
        "a" * 32, text, "v1", created, features, text, number, {"x": number}, abs(number)
    )
    line = encode(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == record


@pytest.mark.parametrize(
    "line", [b"", b"{", b"[1,2]", b'["id","m","v","not-a-time",{},"c",0.5,{},0.1]', b"\xff\xfe"]
)
def test_damaged_lines_are_detected(line: bytes) -> None:
    with pytest.raises(ValueError, match="damaged"):
        decode(line)


def test_segment_is_locked_by_its_owner(tmp_path: Path, make_record: RecordFactory) -> None:
    seg = Segment.create(tmp_path, 1)
    assert seg.append(encode(make_record()))
    assert list_segments(tmp_path) == [seg.path]
    assert not list(tmp_path.glob(".*.tmp"))
    with claim(seg.path) as fd:
        assert fd is None  # the owner (us, on another descriptor) holds it
    seg.close()
    with claim(seg.path) as fd:
        assert fd is not None
        chunks = list(read_chunks(fd, 10))
        assert [len(c) for c, _ in chunks] == [1] and chunks[0][1] == 0
        os.unlink(seg.path)
    with claim(seg.path) as fd:
        assert fd is None


def test_read_chunks_counts_torn_lines(tmp_path: Path, make_record: RecordFactory) -> None:
    path = tmp_path / "seg-1-1-1.jsonl"
    good = [make_record() for _ in range(5)]
    path.write_bytes(b"".join(encode(r) for r in good) + encode(make_record())[:40])
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = list(read_chunks(fd, 2))
    finally:
        os.close(fd)
    assert [r for c, _ in chunks for r in c] == good
    assert sum(bad for _, bad in chunks) == 1
