"""Per-minute request counts kept in memory, for the in-process anomaly bands.

The Prometheus signals of the request rate, the error ratio and the P95 latency read
``ml_api_requests_total`` and ``ml_api_request_duration_seconds`` summed over every route
(render/anomaly_rules.py). Without Prometheus nobody keeps their history, so the request
middleware also adds each request here — one dict lookup and two list increments, no I/O — by
the minute it ended in (UTC), its status class and the duration histogram's bucket (the same
bounds, ``thresholds.LATENCY_BUCKETS``, so the in-process P95 interpolates the same buckets as
``histogram_quantile``). A periodic job takes the counts and adds them to the database
(storage/request_rollups.py); several processes add to the same rows.

Only the event loop's thread touches a tally (the middleware's ``finally`` and the flush job
both run on it), so ``take`` swapping the dict needs no lock.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from nexus_ml.thresholds import LATENCY_BUCKETS

# A status outside 1xx-5xx (0: no response sent, which the middleware reports as 500 anyway).
OTHER_CLASS = "other"
STATUS_CLASSES = (OTHER_CLASS, "1xx", "2xx", "3xx", "4xx", "5xx")
_N_STATUS = len(STATUS_CLASSES)


def bucket_label(bound: float) -> str:
    """A bucket's upper bound as Prometheus's ``le`` label writes it (``+Inf``, ``0.005``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


LATENCY_LABELS = tuple(bucket_label(b) for b in (*LATENCY_BUCKETS, float("inf")))

# One minute's counts: ``(kind, key) -> n`` with kind ``status`` (key a status class) or
# ``latency`` (key a bucket's upper bound, non-cumulative: requests in (previous bound, bound]).
MinuteCounts = dict[tuple[str, str], int]


class RequestTally:
    """Requests per minute by status class and latency bucket, until a flush takes them."""

    __slots__ = ("_bounds", "_clock", "_rows", "_width")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        """``clock``: seconds since the epoch (tests pass their own)."""
        self._clock = clock
        self._bounds = LATENCY_BUCKETS
        self._width = _N_STATUS + len(LATENCY_BUCKETS) + 1
        self._rows: dict[int, list[int]] = {}

    def add(self, status: int, seconds: float) -> None:
        """Count one answered request (its status and duration, as the metrics record them)."""
        minute = int(self._clock() // 60)
        row = self._rows.get(minute)
        if row is None:
            row = self._rows[minute] = [0] * self._width
        cls = status // 100
        row[cls if 0 < cls < _N_STATUS else 0] += 1
        # Prometheus's bucket ``le`` holds v <= le: the first bound not below v.
        row[_N_STATUS + bisect.bisect_left(self._bounds, seconds)] += 1

    def take(self) -> dict[datetime, MinuteCounts]:
        """The counts so far, by minute start (UTC), and forget them."""
        rows, self._rows = self._rows, {}
        out: dict[datetime, MinuteCounts] = {}
        for minute, row in rows.items():
            counts: MinuteCounts = {}
            for i, n in enumerate(row):
                if n:
                    key = (
                        ("status", STATUS_CLASSES[i])
                        if i < _N_STATUS
                        else ("latency", LATENCY_LABELS[i - _N_STATUS])
                    )
                    counts[key] = n
            out[datetime.fromtimestamp(minute * 60, UTC)] = counts
        return out

    def put_back(self, taken: Mapping[datetime, MinuteCounts]) -> None:
        """Return counts a flush could not store, so the next flush adds them."""
        index = {key: i for i, key in enumerate(_keys())}
        for at, counts in taken.items():
            minute = int(at.timestamp() // 60)
            row = self._rows.get(minute)
            if row is None:
                row = self._rows[minute] = [0] * self._width
            for key, n in counts.items():
                row[index[key]] += n

    def pending_minutes(self) -> int:
        """How many minutes hold counts not yet taken."""
        return len(self._rows)


def _keys() -> list[tuple[str, str]]:
    return [("status", c) for c in STATUS_CLASSES] + [("latency", b) for b in LATENCY_LABELS]
