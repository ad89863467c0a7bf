"""``<model_path>/<name>/HISTORY``: the append-only record of champion changes.

One JSON line per change ``{"version", "at", "actor", "action"}``. Rollback replays it as a
stack: a change that makes a version champion pushes it, a rollback pops back to the one
before, so rolling back twice walks back two champions instead of flipping between the last two.
A line that does not parse is skipped (and counted), never fatal: the file is evidence, and
one torn line must not hide the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from nexus_ml.ml.bundle_paths import VERSION_RE, validate_name

HISTORY_FILE = "HISTORY"
LOCK_FILE = ".lock"
ROLLBACK = "rollback"
# The champion found in CURRENT but not at the end of HISTORY (made before HISTORY existed, or
# set by hand), recorded just before the change that replaces it.
IN_FORCE = "in_force"
# Line budget: a valid entry is ~150 bytes; anything far larger is not one of ours.
_MAX_LINE = 4096


@dataclass(frozen=True)
class HistoryEntry:
    """One champion change: which version became champion, when, by whom, through what."""

    version: str
    at: str
    actor: str
    action: str


def _model_dir(model_path: str | os.PathLike[str], name: str) -> Path:
    return Path(model_path).resolve() / validate_name(name)


def append_history(
    model_path: str | os.PathLike[str], name: str, *, version: str, actor: str, action: str
) -> HistoryEntry:
    """Append one entry (O_APPEND, fsynced): each line lands whole, writers never interleave."""
    if not VERSION_RE.fullmatch(version):
        raise ValueError("version must look like 20260101T000000Z-0123abcd")
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    entry = HistoryEntry(version=version, at=at, actor=actor[:128], action=action[:32])
    line = (json.dumps(asdict(entry), sort_keys=True) + "\n").encode("utf-8")
    folder = _model_dir(model_path, name)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


def read_history(model_path: str | os.PathLike[str], name: str) -> list[HistoryEntry]:
    """Every well-formed entry, oldest first (an absent file is an empty history)."""
    try:
        raw = (_model_dir(model_path, name) / HISTORY_FILE).read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in raw.splitlines():
        if not line.strip() or len(line) > _MAX_LINE:
            continue
        try:
            item = json.loads(line)
            entry = HistoryEntry(
                version=str(item["version"]),
                at=str(item["at"]),
                actor=str(item["actor"]),
                action=str(item["action"]),
            )
        except (ValueError, KeyError, TypeError):
            continue
        if VERSION_RE.fullmatch(entry.version):
            entries.append(entry)
    return entries


def champion_stack(entries: Sequence[HistoryEntry]) -> list[str]:
    """The champions in force, oldest first, after replaying ``entries`` (see module doc)."""
    stack: list[str] = []
    for entry in entries:
        if entry.action == ROLLBACK and len(stack) >= 2 and stack[-2] == entry.version:
            stack.pop()
        elif not stack or stack[-1] != entry.version:
            stack.append(entry.version)
    return stack


def previous_champion(entries: Sequence[HistoryEntry], current: str | None) -> str | None:
    """The version a rollback returns to, or None when the history names none.

    Normally the champion before ``current``; if CURRENT was changed by hand (it is not the
    last recorded champion), the last recorded one.
    """
    stack = champion_stack(entries)
    if stack and stack[-1] != current:
        return stack[-1]
    return stack[-2] if len(stack) >= 2 else None


@contextlib.contextmanager
def model_lock(model_path: str | os.PathLike[str], name: str) -> Iterator[None]:
    """Hold ``<name>/.lock`` exclusively: one champion change at a time across processes.

    Reading CURRENT, deciding and writing CURRENT + HISTORY must not interleave between two
    workers (two rollbacks at once would both pick the same target and record it twice).
    """
    folder = _model_dir(model_path, name)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
