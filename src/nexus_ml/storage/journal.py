"""On-disk journal of prediction records: per-process JSON-lines segments under the spill folder.

A segment belongs to the process holding an ``flock`` on it. The lock is taken before the file
gets its final name (it is created under a hidden temporary name, locked, then renamed), and the
kernel drops it when the owner closes the file or dies, SIGKILL included. So "the owner is gone"
is tested by trying the lock, not by the pid in the name, which a container restart may reuse.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from .records import CHAMPION, PredictionRecord

PREFIX = "seg-"
SUFFIX = ".jsonl"
CORRUPT_SUFFIX = ".corrupt"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Reused encoders: json.dumps with non-default arguments builds a new encoder per call.
# Strict (the journal, when orjson cannot write a line): NaN and infinities raise ValueError,
# so a record no store can hold is refused before it is accepted; text that is not UTF-8
# raises UnicodeEncodeError below.
_encode_strict = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
# Lenient (records already refused, kept for a human): anything a record holds, ASCII-escaped.
_encode_lenient = json.JSONEncoder(separators=(",", ":")).encode
# Fields of a journal line written before the traceability fields (migration 0002) existed.
_FIELDS_BEFORE_TRACE = 9


def encode(record: PredictionRecord, *, strict: bool = True) -> bytes:
    """One journal line for ``record`` (newline-terminated UTF-8 JSON).

    Strict by default: raises ValueError (UnicodeEncodeError included) for a NaN or infinite
    number or text that is not UTF-8, which neither store can hold.
    """
    fields = [
        record.id,
        record.model,
        record.version,
        # Integer microseconds: exact, and a third of isoformat()'s cost on the hot path.
        (record.created_at - _EPOCH) // _MICROSECOND,
        record.features,
        record.predicted_class,
        record.confidence,
        record.probabilities,
        record.latency_seconds,
        record.request_id,
        record.profile_hash,
        record.role,
    ]
    if not strict:
        return (_encode_lenient(fields) + "\n").encode()
    # orjson (issue 16): the line is on every prediction's path, and the standard library's
    # float formatting was most of a submit's cost (≈ 10 of 16 µs for 30 features). orjson
    # writes a NaN or an infinity as null instead of refusing it, so they are looked for
    # first; what orjson refuses (text that is not UTF-8, an integer past 64 bits, a type it
    # does not know) goes to the standard library's strict encoder, which either writes it
    # (a big integer) or raises the ValueError this function promises.
    if (
        _finite(record.confidence)
        and _finite(record.latency_seconds)
        and all_finite(record.features)
        and all_finite(record.probabilities)
    ):
        try:
            return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            pass
    return (_encode_strict(fields) + "\n").encode()


def _finite(value: object) -> bool:
    # Not a float (an int, text, None...): nothing to refuse here; the encoders judge the rest.
    return type(value) is not float or value - value == 0.0  # NaN - NaN and inf - inf are NaN


def all_finite(values: object) -> bool:
    """No NaN or infinity anywhere in ``values`` (a client's features: any JSON value)."""
    items: Iterable[Any]
    if type(values) is dict:
        items = values.values()
    elif type(values) is list or type(values) is tuple:
        items = values
    else:
        return _finite(values) if type(values) is float else not isinstance(values, float)
    for value in items:
        kind = type(value)
        if kind is float:
            if value - value != 0.0:
                return False
        elif (
            kind is not str
            and kind is not int
            and kind is not bool
            and value is not None
            and not all_finite(value)
        ):
            return False
    return True


def decode(line: bytes) -> PredictionRecord:
    """The record stored in one journal line; raises ValueError if the line is damaged."""
    try:
        fields = json.loads(line)
        if len(fields) == _FIELDS_BEFORE_TRACE:
            # A line written before migration 0002, replayed after an upgrade.
            fields = [*fields, None, None, CHAMPION]
        (rid, model, version, created, features, predicted, conf, probs, latency, *trace) = fields
        request_id, profile_hash, role = trace
        created_at = _EPOCH + int(created) * _MICROSECOND
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError("damaged journal line") from exc
    return PredictionRecord(
        str(rid),
        model,
        version,
        created_at,
        features,
        predicted,
        float(conf),
        probs,
        float(latency),
        request_id=request_id,
        profile_hash=profile_hash,
        role=str(role),
    )


@dataclass(eq=False)
class Segment:
    """A journal segment this process writes to; held open (and locked) until deleted."""

    path: Path
    fd: int
    written: int = 0  # lines appended
    in_memory: int = 0  # of those, records still waiting in the writer's memory queue
    spilled: int = 0  # of those, records held ONLY here (memory was full)
    sealed: bool = False
    broken: bool = False  # a failed write may have left a torn line: never append again
    closed: bool = False

    @classmethod
    def create(cls, directory: Path, seq: int, tag: str = "") -> Segment:
        """A new, locked, empty segment; the name sorts by creation time."""
        name = f"{PREFIX}{time.time_ns():020d}-{os.getpid()}-{tag}{seq:06d}{SUFFIX}"
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, directory / name)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return cls(directory / name, fd)

    def append(self, lines: bytes, count: int = 1) -> bool:
        """Append ``count`` lines with a single write(2); False (and broken) if it failed."""
        try:
            # In the page cache once write(2) returns: it survives our death, not a power cut.
            ok = os.write(self.fd, lines) == len(lines)
        except OSError:
            ok = False
        if ok:
            self.written += count
        else:
            self.broken = True
        return ok

    @property
    def outstanding(self) -> bool:
        """True while some record of this segment may not be in the database yet."""
        return self.in_memory > 0 or self.spilled > 0

    def delete(self) -> None:
        """Unlink (still under our lock, so no one can claim it half-deleted), then close."""
        if self.closed:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.close()

    def close(self) -> None:
        """Close without deleting: the file stays as an orphan for whoever replays next."""
        if not self.closed:
            self.closed = True
            os.close(self.fd)


def segment_pid(path: Path) -> int | None:
    """The pid recorded in a segment's name (informational; ownership is the flock)."""
    try:
        return int(path.name.removeprefix(PREFIX).split("-")[1])
    except (IndexError, ValueError):
        return None


def list_segments(directory: Path) -> list[Path]:
    """Every complete segment in ``directory``, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [directory / n for n in sorted(names) if n.startswith(PREFIX) and n.endswith(SUFFIX)]


@contextlib.contextmanager
def claim(path: Path) -> Iterator[int | None]:
    """Lock an orphan segment for replay; yields a read fd, or None if someone holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Replayed and unlinked by another process between our open and our lock?
            live = os.fstat(fd).st_nlink > 0
        except BlockingIOError:
            live = False
        yield fd if live else None
    finally:
        os.close(fd)


def read_chunks(fd: int, size: int) -> Iterator[tuple[list[PredictionRecord], int]]:
    """Decode a segment from ``fd`` in chunks of ``size``; yields (records, damaged line count)."""
    chunk: list[PredictionRecord] = []
    damaged = 0
    with os.fdopen(os.dup(fd), "rb") as fh:
        fh.seek(0)
        for line in fh:
            if not line.strip():
                continue
            try:
                chunk.append(decode(line))
            except ValueError:
                # A crash mid-write can leave a torn last line; it is kept (see quarantine).
                damaged += 1
            if len(chunk) >= size:
                yield chunk, damaged
                chunk, damaged = [], 0
    if chunk or damaged:
        yield chunk, damaged


def quarantine(path: Path) -> Path:
    """Rename a segment with damaged lines so it is never replayed again, nor deleted."""
    target = path.with_suffix(CORRUPT_SUFFIX)
    os.rename(path, target)
    return target
