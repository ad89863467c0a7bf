"""HISTORY: append-only champion changes, replayed as a stack for rollback."""

from __future__ import annotations

import threading
from pathlib import Path

from nexus_ml.ml.history import (
    HISTORY_FILE,
    HistoryEntry,
    append_history,
    champion_stack,
    model_lock,
    previous_champion,
    read_history,
)

V1, V2, V3 = (f"2026010{i}T000000Z-0123abcd" for i in (1, 2, 3))


def entry(version: str, action: str = "promote") -> HistoryEntry:
    return HistoryEntry(version=version, at="2026-01-01T00:00:00Z", actor="cli:x", action=action)


def test_append_and_read_back(tmp_path: Path) -> None:
    assert read_history(tmp_path, "diagnostic") == []
    first = append_history(tmp_path, "diagnostic", version=V1, actor="cli:ana", action="train")
    append_history(tmp_path, "diagnostic", version=V2, actor="abc123", action="promote")
    entries = read_history(tmp_path, "diagnostic")
    assert entries[0] == first
    assert [(e.version, e.actor, e.action) for e in entries] == [
        (V1, "cli:ana", "train"),
        (V2, "abc123", "promote"),
    ]
    assert entries[0].at.endswith("Z")


def test_torn_or_foreign_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    append_history(tmp_path, "diagnostic", version=V1, actor="a", action="train")
    with (tmp_path / "diagnostic" / HISTORY_FILE).open("ab") as fh:
        fh.write(b'{"version": "20260102T0000\n[1, 2]\n{"version": "../x", "at": 1, ')
        fh.write(b'"actor": "a", "action": "promote"}\n' + b"x" * 5000 + b"\n")
    append_history(tmp_path, "diagnostic", version=V3, actor="a", action="promote")
    assert [e.version for e in read_history(tmp_path, "diagnostic")] == [V1, V3]


def test_rollback_walks_back_instead_of_flipping() -> None:
    entries = [entry(V1, "train"), entry(V2), entry(V3)]
    assert champion_stack(entries) == [V1, V2, V3]
    assert previous_champion(entries, V3) == V2
    entries.append(entry(V2, "rollback"))
    assert previous_champion(entries, V2) == V1  # a second rollback goes further back
    entries.append(entry(V1, "rollback"))
    assert previous_champion(entries, V1) is None


def test_no_previous_champion() -> None:
    assert previous_champion([], None) is None
    assert previous_champion([entry(V1, "train")], V1) is None
    # Re-promoting the champion records nothing new in the stack.
    assert champion_stack([entry(V1, "train"), entry(V1)]) == [V1]


def test_a_hand_edited_current_rolls_back_to_the_last_recorded_champion() -> None:
    assert previous_champion([entry(V1, "train"), entry(V2)], V3) == V2


def test_model_lock_serialises_writers(tmp_path: Path) -> None:
    inside, overlaps = [], []

    def work() -> None:
        for _ in range(20):
            with model_lock(tmp_path, "diagnostic"):
                if inside:
                    overlaps.append(1)
                inside.append(1)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
