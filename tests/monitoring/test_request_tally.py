"""The request tally counts what the request histogram counts: same status classes, same
buckets (``le`` inclusive), per minute; a failed flush's counts come back whole."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram

from nexus_ml.monitoring.request_tally import LATENCY_LABELS, RequestTally
from nexus_ml.thresholds import LATENCY_BUCKETS

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def test_buckets_and_status_classes_equal_the_metrics_counts() -> None:
    now = [T0 + 5]
    tally = RequestTally(clock=lambda: now[0])
    r = CollectorRegistry()
    hist = Histogram("d_seconds", "d", buckets=LATENCY_BUCKETS, registry=r)
    requests = Counter("r_total", "r", ["status"], registry=r)
    # Values on bounds, between them, below the first and above the last.
    durations = [0.0, 0.0005, 0.0006, 0.001, 0.01, 0.0100001, 0.3, 10.0, 10.5, 99.0]
    statuses = [200, 201, 404, 500, 503, 302, 101, 200, 599, 200]
    for seconds, status in zip(durations, statuses, strict=True):
        tally.add(status, seconds)
        hist.observe(seconds)
        requests.labels(str(status)).inc()
    [(at, counts)] = tally.take().items()
    assert at == datetime.fromtimestamp(T0, UTC)
    previous = 0.0
    for le in LATENCY_LABELS:
        cumulative = r.get_sample_value("d_seconds_bucket", {"le": le})
        assert cumulative is not None
        assert counts.get(("latency", le), 0) == cumulative - previous, le
        previous = cumulative
    for cls in ("1xx", "2xx", "3xx", "4xx", "5xx"):
        served = sum(
            r.get_sample_value("r_total", {"status": str(s)}) or 0
            for s in set(statuses)
            if str(s)[0] == cls[0]
        )
        assert counts.get(("status", cls), 0) == served, cls
    assert tally.take() == {}


def test_minutes_are_kept_apart_and_a_failed_flush_is_put_back_whole() -> None:
    now = [T0 + 59.9]
    tally = RequestTally(clock=lambda: now[0])
    tally.add(200, 0.002)
    now[0] = T0 + 60.0
    tally.add(500, 0.002)
    tally.add(200, 0.002)
    taken = tally.take()
    assert [sum(n for (k, _), n in c.items() if k == "status") for c in taken.values()] == [1, 2]
    tally.add(200, 0.002)  # during the failed flush
    tally.put_back(taken)
    again = tally.take()
    second = again[datetime.fromtimestamp(T0 + 60, UTC)]
    assert second[("status", "2xx")] == 2 and second[("status", "5xx")] == 1
    assert second[("latency", "0.0025")] == 3
    assert again[datetime.fromtimestamp(T0, UTC)] == {
        ("status", "2xx"): 1,
        ("latency", "0.0025"): 1,
    }
