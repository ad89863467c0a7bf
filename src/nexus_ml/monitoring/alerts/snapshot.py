"""What the in-process conditions read: one snapshot of the service's own measurements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DriftReading:
    """One feature's last drift result: the PSI score and the service's decision."""

    score: float
    detected: bool


@dataclass(frozen=True, slots=True)
class Bounded:
    """A realised proportion with its 95 % interval; a part not exported is ``None``."""

    value: float | None
    lower: float | None = None
    upper: float | None = None


# (model, class, segment): the labels of the per-class clinical gauges.
ClassKey = tuple[str, str, str]


@dataclass(kw_only=True, frozen=True, slots=True)
class Measurements:
    """A snapshot the service fills each tick; ``None``/empty means "not measured"."""

    cpu_percent: float | None = None  # 0-100
    memory_ratio: float | None = None  # 0-1
    memory_bytes: float | None = None
    disk_ratio: float | None = None  # 0-1
    service_up: bool = True  # always true in-process; kept so the condition exists
    request_rate: float | None = None  # requests/s over the last 5 minutes
    error_rate: float | None = None  # 5xx responses/s over the last 5 minutes
    error_ratio: float | None = None  # 5xx share over the last 5 minutes, 0-1
    latency_p95: Mapping[str, float] = field(default_factory=dict)  # model -> s, last 5m
    median_confidence: Mapping[str, float] = field(default_factory=dict)  # model, last 15m
    accuracy: Mapping[str, float] = field(default_factory=dict)  # model -> realised accuracy
    accuracy_samples: Mapping[str, float] = field(default_factory=dict)  # model -> labelled
    holdout_accuracy: Mapping[str, float] = field(default_factory=dict)  # model, any version
    # Clinical performance at the operating point (the quality job's gauges); a value the job
    # withdrew (NaN: below its minimum count) is simply absent here.
    recall: Mapping[ClassKey, Bounded] = field(default_factory=dict)
    precision: Mapping[ClassKey, Bounded] = field(default_factory=dict)
    calibration_error: Mapping[tuple[str, str], float] = field(default_factory=dict)  # model, seg
    labelled_samples: Mapping[tuple[str, str], float] = field(default_factory=dict)  # model, seg
    # The validated baseline: (model, metric, class) -> value, class "" when model-wide.
    baseline: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    positive_classes: frozenset[tuple[str, str]] = frozenset()  # (model, class) of binary models
    drift: Mapping[tuple[str, str], DriftReading] = field(default_factory=dict)  # (model, feat)
    training_failures: Mapping[str, float] = field(default_factory=dict)  # model, last hour
    last_training: Mapping[str, float] = field(default_factory=dict)  # model -> unix seconds
    db_connection_errors: float = 0.0  # over the last db_connection_errors_window
    records_rejected: Mapping[str, float] = field(default_factory=dict)  # model, last hour
    # (model, reason) -> 1 while the bundle CURRENT names is refused.
    bundles_refused: Mapping[tuple[str, str], float] = field(default_factory=dict)
    prediction_rate: float | None = None  # predictions/s over the last hour
    prediction_rate_by_model: Mapping[str, float] = field(default_factory=dict)  # every loaded
    now: float | None = None  # wall-clock unix time of the snapshot (default: time.time())
