"""The request-count flush: what a failed flush took comes back whole for the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from nexus_ml.monitoring.request_tally import RequestTally
from nexus_ml.service.errors import Unavailable
from nexus_ml.service.request_counts import RequestCounts

T0 = 1_800_000_000.0


class _Store:
    def __init__(self) -> None:
        self.rows: list[dict[datetime, dict[tuple[str, str], int]]] = []

    def add_request_counts(self, minutes: dict[datetime, dict[tuple[str, str], int]]) -> int:
        self.rows.append(minutes)
        return sum(len(c) for c in minutes.values())


class _Db:
    """The two things RequestCounts uses of service.database.Database."""

    def __init__(self) -> None:
        self.store = _Store()
        self.down = False

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.down:
            raise Unavailable("database unavailable: retry later")
        return fn(*args)


def test_a_failed_flush_keeps_the_counts_for_the_next() -> None:
    tally = RequestTally(clock=lambda: T0)
    db = _Db()
    counts = RequestCounts(tally, db)  # type: ignore[arg-type]
    for status in (200, 200, 503):
        tally.add(status, 0.003)
    db.down = True
    assert asyncio.run(counts.flush()) == 0  # an outage is counted by Database.run, not here
    assert db.store.rows == []
    tally.add(200, 0.003)  # meanwhile
    db.down = False
    assert asyncio.run(counts.flush()) == 3  # 2xx, 5xx, one latency bucket
    [stored] = db.store.rows
    [minute] = stored.values()
    assert minute == {("status", "2xx"): 3, ("status", "5xx"): 1, ("latency", "0.005"): 4}
    assert asyncio.run(counts.flush()) == 0 and len(db.store.rows) == 1  # nothing left


def test_any_other_failure_keeps_the_counts_and_is_raised() -> None:
    tally = RequestTally(clock=lambda: T0)
    db = _Db()
    counts = RequestCounts(tally, db)  # type: ignore[arg-type]
    tally.add(200, 0.003)

    def broken(minutes: object) -> int:
        raise RuntimeError("a bug")

    db.store.add_request_counts = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        asyncio.run(counts.flush())
    assert tally.pending_minutes() == 1
