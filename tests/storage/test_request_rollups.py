"""Request rollups: several instances' flushes add up exactly; reads return the pieces asked."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from nexus_ml.storage import Store

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_instances_add_up_exactly(engine: Engine) -> None:
    # Four "instances" (each its own Store, as each process has), flushing concurrently into
    # the same minutes: every count arrives once.
    stores = [Store(engine) for _ in range(4)]
    minutes = [T0 + timedelta(minutes=m) for m in range(3)]
    flush = {
        at: {("status", "2xx"): 7, ("status", "5xx"): 1, ("latency", "0.01"): 8} for at in minutes
    }

    def run(store: Store) -> None:
        for _ in range(5):
            store.add_request_counts(flush)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    read = stores[0].request_minutes([(T0, T0 + timedelta(minutes=3))])
    assert read == {
        at: {("status", "2xx"): 140, ("status", "5xx"): 20, ("latency", "0.01"): 160}
        for at in minutes
    }


def test_reads_only_the_pieces_asked(store: Store) -> None:
    store.add_request_counts(
        {T0 + timedelta(minutes=m): {("status", "2xx"): m + 1} for m in range(10)}
    )
    got = store.request_minutes(
        [
            (T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)),
            (T0 + timedelta(minutes=8), T0 + timedelta(minutes=9)),
        ]
    )
    assert got == {
        T0 + timedelta(minutes=1): {("status", "2xx"): 2},
        T0 + timedelta(minutes=2): {("status", "2xx"): 3},
        T0 + timedelta(minutes=8): {("status", "2xx"): 9},
    }
    assert store.add_request_counts({}) == 0
