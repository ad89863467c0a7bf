"""Every alert limit, typed, with its unit; the alerts themselves are in ``monitoring/alerts/``.

One model of limits feeds the Prometheus rules, the in-process evaluator, the dashboards'
threshold lines and ``GET/PUT /config/thresholds``.

Where the monitoring guide contradicts itself, the choice is made here and explained in
``docs/thresholds.md``:

* memory: the alert uses the share of memory in use (85 %), not 3 GB, because the gauge is
  host-wide and 3 GB means "idle" on one host and "full" on another; the absolute ceiling
  stays available as ``memory_usage_high_bytes`` (off by default).
* disk: 85 % for 10 minutes (the rule), not 90 % (the dict): a filling disk stops the
  database and the spill buffer, so the warning comes early.
* error rate: both — the 5xx share of requests must exceed 0.05 *and* errors must arrive
  faster than 0.1/s, so one failure among two requests does not page anyone.
* accuracy: 0.8 is a floor, not every model's limit — a model validated below it (the bundled
  diabetes_risk, 0.674) is held to its own baseline minus ``accuracy_baseline_tolerance``,
  instead of staying pending forever; the clinical alerts are relative to the baseline too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from nexus_ml.thresholds.units import (
    LATENCY_BUCKETS,
    MAX_BYTES,
    MAX_COUNT,
    MAX_DURATION_SECONDS,
    MAX_RANGE_SECONDS,
    MAX_RATE,
    MAX_SCORE,
    TYPES_OF_UNIT,
    Bytes,
    Count,
    ForDuration,
    Latency,
    LatencyBound,
    Percent,
    RangeWindow,
    Rate,
    Ratio,
    Score,
    Unit,
    Window,
    _unit,
    check_latency_bucket,
    format_duration,
    parse_duration,
)

__all__ = [
    "ANOMALY_STEP_SECONDS",
    "JOB",
    "LATENCY_BUCKETS",
    "MAX_BYTES",
    "MAX_COUNT",
    "MAX_DURATION_SECONDS",
    "MAX_RANGE_SECONDS",
    "MAX_RATE",
    "MAX_SCORE",
    "RUNBOOK_BASE",
    "TYPES_OF_UNIT",
    "HasThresholdsFile",
    "ThresholdError",
    "Thresholds",
    "Unit",
    "apply_update",
    "apply_valid_overrides",
    "check_latency_bucket",
    "describe_thresholds",
    "env_overrides",
    "format_duration",
    "load_thresholds",
    "parse_duration",
    "read_overrides_file",
    "unit_of",
]

ENV_PREFIX = "ML_THRESHOLD_"
# The anomaly bands' step: the rules' group interval and the in-process minute rows.
ANOMALY_STEP_SECONDS = 60
# Each season is three more recording rules per signal and one more piece of every read.
MAX_ANOMALY_SEASONS = 5


class HasThresholdsFile(Protocol):
    """What load_thresholds needs from Settings (config is a sibling layer: no import)."""

    @property
    def thresholds_file(self) -> Path | None: ...


class ThresholdError(ValueError):
    """An override names an unknown key or holds a value outside its unit's range."""


class Thresholds(BaseModel):
    """Every limit (guide's ``ALERT_THRESHOLDS`` keys kept) plus each alert's ``for`` duration."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # The guide's ALERT_THRESHOLDS, same keys.
    cpu_usage_high: Percent = _unit("percent", "HighCPUUsage above this CPU %.", default=80.0)
    memory_usage_high: Percent = _unit(
        "percent", "HighMemoryUsage above this memory %.", default=85.0
    )
    disk_usage_high: Percent = _unit(
        "percent", "HighDiskUsage above this disk % (guide: 85 vs 90).", default=85.0
    )
    model_confidence_low: Ratio = _unit(
        "ratio", "LowModelConfidence below this median.", default=0.3
    )
    prediction_latency_high: Latency = _unit(
        "seconds", "HighPredictionLatency above this P95.", default=1.0
    )
    training_accuracy_low: Ratio = _unit(
        "ratio",
        "LowModelAccuracy below this accuracy (or below the model's baseline minus "
        "accuracy_baseline_tolerance, whichever is lower).",
        default=0.8,
    )
    data_drift_high: Score = _unit(
        "score", "DataDriftDetected and FeatureDriftPromQL above this PSI.", default=0.1
    )
    error_rate_high: Ratio = _unit("ratio", "HighErrorRate above this 5xx share.", default=0.05)
    # The alert rules' own limits.
    cpu_usage_critical: Percent = _unit(
        "percent", "CriticalCPUUsage above this CPU %.", default=95.0
    )
    memory_usage_high_bytes: Bytes | None = _unit(
        "bytes", "Optional absolute ceiling (guide: 3 GB); off by default.", default=None
    )
    error_rate_min_per_second: Rate = _unit(
        "per_second", "HighErrorRate also needs more 5xx than this per second.", default=0.1
    )
    accuracy_min_samples: Count = _unit(
        "count", "LowModelAccuracy needs at least this many labelled predictions.", default=100
    )
    training_max_age: Window = _unit(
        "seconds", "NoRecentTraining after this long.", default=7 * 86400
    )
    training_failures_high: Count = _unit(
        "count", "TrainingFailure above this many failed runs in its window.", default=0
    )
    db_connection_errors_high: Count = _unit(
        "count", "DatabaseConnectionErrors above this many errors in its window.", default=0
    )
    records_rejected_high: Count = _unit(
        "count", "PredictionRecordsRejected above this many records in 1h.", default=0
    )
    db_connection_errors_window: RangeWindow = _unit(
        "seconds",
        "DatabaseConnectionErrors counts errors over this range; it resolves this long after "
        "the last error.",
        default=300,
    )
    prediction_volume_low: Rate = _unit(
        "per_second", "LowPredictionVolume below this many predictions/s.", default=0.01
    )
    prediction_share_high: Ratio = _unit(
        "ratio", "UnbalancedPredictions when one model takes more than this share.", default=0.9
    )
    availability_slo: Ratio = _unit(
        "ratio", "Share of requests that must not be 5xx.", default=0.999
    )
    latency_slo: Ratio = _unit(
        "ratio", "Share of predictions that must beat latency_slo_threshold.", default=0.99
    )
    latency_slo_threshold: LatencyBound = _unit(
        "seconds", "Latency SLO bound; must be a histogram bucket boundary.", default=1.0
    )
    slo_min_request_rate: Rate = _unit(
        "per_second", "SLO burn alerts stay silent below this traffic.", default=0.05
    )
    # Clinical performance, relative to the model's validated baseline (its holdout metrics at
    # the operating point, ml_model_baseline); docs/thresholds.md explains each default.
    accuracy_baseline_tolerance: Ratio = _unit(
        "ratio",
        "LowModelAccuracy also fires below the model's baseline accuracy minus this, when that "
        "is under training_accuracy_low (a model validated below the floor).",
        default=0.1,
    )
    sensitivity_drop_tolerance: Ratio = _unit(
        "ratio",
        "SensitivityDrop when positive-class recall and its 95 % upper bound are below the "
        "baseline recall minus this.",
        default=0.05,
    )
    subgroup_gap_tolerance: Ratio = _unit(
        "ratio",
        "SubgroupPerformanceGap when a segment's recall or precision is below segment all's "
        "minus this (and the intervals do not overlap).",
        default=0.1,
    )
    calibration_error_tolerance: Ratio = _unit(
        "ratio",
        "CalibrationDrift when the expected calibration error exceeds the baseline's plus this.",
        default=0.05,
    )
    clinical_min_samples: Count = _unit(
        "count",
        "SensitivityDrop and SubgroupPerformanceGap need this many labelled predictions "
        "(in the segment).",
        default=100,
    )
    feature_drift_range: Window = _unit(
        "seconds",
        "The PromQL drift rules (ml:feature_psi, ...) compare the inputs counted over this "
        "range with the reference.",
        default=3600,
    )
    feature_drift_min_count: Count = _unit(
        "count",
        "The PromQL drift rules need this many instances of a model version in their range "
        "(PSI on ten bins reads ~0.02 from noise alone at 500).",
        default=500,
    )
    calibration_min_samples: Count = _unit(
        "count",
        "CalibrationDrift needs this many labelled predictions (ECE reads high on few).",
        default=200,
    )
    # The anomaly bands (stats/anomaly.py; docs/anomaly-detection.md): every signal's band
    # from these, at a step of a minute. Whole minutes: the rules' group runs once a minute and
    # the in-process bands read minute rows. The floors belong to each signal, not here.
    anomaly_window: Window = _unit(
        "seconds", "Anomaly bands: the baseline window (median and IQR over it).", default=3600
    )
    anomaly_season: Window = _unit(
        "seconds",
        "Anomaly bands: the season; baseline n is the window around the same time n seasons "
        "back (the trailing window while that history is missing).",
        default=7 * 86400,
    )
    anomaly_seasons: Count = _unit(
        "count",
        "Anomaly bands: how many seasons back (a majority of them must agree); 0 compares with "
        "the trailing window only.",
        default=3,
    )
    anomaly_k: Score = _unit(
        "score", "Anomaly alerts: beyond this many robust standard deviations.", default=5.0
    )
    anomaly_for: ForDuration = _unit(
        "seconds",
        "PredictionVolume/Latency/Confidence/ClassShare/RequestRate/ErrorRatioAnomaly for.",
        default=180,
    )
    anomaly_keep_firing_for: ForDuration = _unit(
        "seconds",
        "The anomaly alerts keep firing this long after their condition ends.",
        default=900,
    )
    # `for` durations, one per alert (0 fires at the first evaluation).
    service_down_for: ForDuration = _unit("seconds", "MLServiceDown for.", default=60)
    service_absent_for: ForDuration = _unit("seconds", "MLServiceTargetMissing for.", default=300)
    cpu_usage_critical_for: ForDuration = _unit("seconds", "CriticalCPUUsage for.", default=120)
    error_rate_high_for: ForDuration = _unit("seconds", "HighErrorRate for.", default=300)
    training_failure_for: ForDuration = _unit("seconds", "TrainingFailure for.", default=0)
    records_rejected_for: ForDuration = _unit(
        "seconds", "PredictionRecordsRejected for.", default=0
    )
    model_bundle_refused_for: ForDuration = _unit("seconds", "ModelBundleRefused for.", default=0)
    db_connection_errors_for: ForDuration = _unit(
        "seconds", "DatabaseConnectionErrors for.", default=60
    )
    cpu_usage_high_for: ForDuration = _unit("seconds", "HighCPUUsage for.", default=300)
    memory_usage_high_for: ForDuration = _unit("seconds", "HighMemoryUsage for.", default=300)
    disk_usage_high_for: ForDuration = _unit("seconds", "HighDiskUsage for.", default=600)
    training_accuracy_low_for: ForDuration = _unit("seconds", "LowModelAccuracy for.", default=900)
    prediction_latency_high_for: ForDuration = _unit(
        "seconds", "HighPredictionLatency for.", default=300
    )
    model_confidence_low_for: ForDuration = _unit("seconds", "LowModelConfidence for.", default=900)
    data_drift_high_for: ForDuration = _unit("seconds", "DataDriftDetected for.", default=600)
    feature_drift_for: ForDuration = _unit("seconds", "FeatureDriftPromQL for.", default=600)
    no_recent_training_for: ForDuration = _unit("seconds", "NoRecentTraining for.", default=3600)
    prediction_volume_low_for: ForDuration = _unit(
        "seconds", "LowPredictionVolume for.", default=1800
    )
    prediction_share_high_for: ForDuration = _unit(
        "seconds", "UnbalancedPredictions for.", default=3600
    )
    sensitivity_drop_for: ForDuration = _unit("seconds", "SensitivityDrop for.", default=900)
    subgroup_gap_for: ForDuration = _unit("seconds", "SubgroupPerformanceGap for.", default=900)
    calibration_drift_for: ForDuration = _unit("seconds", "CalibrationDrift for.", default=900)
    slo_fast_burn_for: ForDuration = _unit(
        "seconds", "Availability/LatencySLOFastBurn for.", default=120
    )
    slo_slow_burn_for: ForDuration = _unit(
        "seconds", "Availability/LatencySLOSlowBurn for.", default=900
    )

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        # A critical limit below its warning twin would make the inhibition mute the wrong one.
        if self.cpu_usage_critical < self.cpu_usage_high:
            raise ValueError("cpu_usage_critical must be >= cpu_usage_high")
        if not 0 < self.availability_slo < 1 or not 0 < self.latency_slo < 1:
            raise ValueError("availability_slo and latency_slo must be strictly between 0 and 1")
        self._check_anomaly_bands()
        return self

    def _check_anomaly_bands(self) -> None:
        minutes = ("anomaly_window", "anomaly_season", "anomaly_for", "anomaly_keep_firing_for")
        for key in minutes:
            if getattr(self, key) % ANOMALY_STEP_SECONDS:
                raise ValueError(f"{key} must be a whole number of minutes (the bands' step)")
        if self.anomaly_window < 4 * ANOMALY_STEP_SECONDS:
            raise ValueError("anomaly_window must be at least 4m (a quartile of fewer is no band)")
        if self.anomaly_seasons and self.anomaly_season <= self.anomaly_window:
            raise ValueError("anomaly_season must be longer than anomaly_window")
        if self.anomaly_seasons > MAX_ANOMALY_SEASONS:
            raise ValueError(f"anomaly_seasons must be at most {MAX_ANOMALY_SEASONS}")
        if self.anomaly_season * self.anomaly_seasons > MAX_DURATION_SECONDS:
            raise ValueError("anomaly_season × anomaly_seasons must be at most 366 days")
        if self.anomaly_k <= 0:
            raise ValueError("anomaly_k must be above 0")


def unit_of(key: str) -> Unit:
    """The unit of threshold ``key`` (raises ThresholdError for an unknown key)."""
    field = Thresholds.model_fields.get(key)
    if field is None:
        raise ThresholdError(
            f"unknown threshold key {key!r}; known: {', '.join(sorted(Thresholds.model_fields))}"
        )
    extra = field.json_schema_extra
    assert isinstance(extra, dict)  # noqa: S101 - every field is declared through _unit
    return extra["unit"]  # type: ignore[return-value]


def describe_thresholds(thresholds: Thresholds) -> list[dict[str, object]]:
    """Rows of key, value, unit and description, for the API and the docs."""
    return [
        {
            "key": k,
            "value": getattr(thresholds, k),
            "unit": unit_of(k),
            "description": f.description,
        }
        for k, f in Thresholds.model_fields.items()
    ]


def _validated(data: Mapping[str, object], source: str) -> Thresholds:
    unknown = sorted(set(data) - set(Thresholds.model_fields))
    if unknown:
        raise ThresholdError(
            f"{source}: unknown threshold key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(Thresholds.model_fields))}"
        )
    try:
        return Thresholds.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        raise ThresholdError(f"{source}: {problems}") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    if not loc:  # a cross-field check of the whole model
        return message.removeprefix("Value error, ")
    key = str(loc[0])
    return f"{key} ({unit_of(key)}): {message.removeprefix('Value error, ')}"


def apply_update(
    current: Thresholds, update: Mapping[str, object], *, source: str = "update"
) -> Thresholds:
    """A new Thresholds with ``update`` (a partial mapping) applied; validated as a whole."""
    if not isinstance(update, Mapping):
        raise ThresholdError(
            f"{source}: expected a mapping of threshold keys, got {type(update).__name__}"
        )
    return _validated({**current.model_dump(), **update}, source)


def apply_valid_overrides(
    base: Thresholds, overrides: Mapping[str, object], *, source: str
) -> tuple[Thresholds, list[str]]:
    """``base`` with every override that is valid, and the keys refused.

    For overrides stored earlier (the database): all of them if they validate together;
    otherwise each key in turn joins those kept so far, and one that is unknown (a key a
    later version dropped) or invalid (a rule a later version added) is refused alone, by
    name, while the rest still apply.
    """
    try:
        return apply_update(base, overrides, source=source), []
    except ThresholdError:
        pass
    kept: dict[str, object] = {}
    refused = []
    for key in sorted(overrides):
        try:
            apply_update(base, {**kept, key: overrides[key]}, source=source)
        except ThresholdError:
            refused.append(key)
        else:
            kept[key] = overrides[key]
    return apply_update(base, kept, source=source), refused


def read_overrides_file(path: Path) -> dict[str, object]:
    """The mapping in a YAML or JSON overrides file (``.json`` gets the strict JSON parser)."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ThresholdError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ThresholdError(f"{path}: expected a mapping of threshold keys at the top level")
    return {str(k): v for k, v in data.items()}


def env_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """``ML_THRESHOLD_<KEY>=value`` pairs as ``{key: value}`` (key lower-cased)."""
    return {k[len(ENV_PREFIX) :].lower(): v for k, v in environ.items() if k.startswith(ENV_PREFIX)}


def load_thresholds(
    source: HasThresholdsFile | Path | None = None, environ: Mapping[str, str] | None = None
) -> Thresholds:
    """Defaults, then the overrides file, then ``ML_THRESHOLD_*`` variables (the last wins).

    ``source`` is a Settings (its ``thresholds_file`` is used) or a file path; ``environ``
    defaults to the process environment, ``{}`` ignores it.
    """
    file = getattr(source, "thresholds_file", None) if not isinstance(source, Path) else source
    result = Thresholds()
    if file is not None:
        result = apply_update(result, read_overrides_file(Path(file)), source=str(file))
    # Read here, next to Settings, so every other module receives values, not os.environ.
    env = env_overrides(os.environ if environ is None else environ)
    if env:
        # An empty value means "unset" (the optional bytes ceiling); other keys must parse.
        cleaned = {k: (None if v == "" else v) for k, v in env.items()}
        result = apply_update(result, cleaned, source=f"environment {ENV_PREFIX}*")
    return result


# The scrape job the rules, the in-process evaluator and the dashboards all select on.
JOB = "nexus-ml"
RUNBOOK_BASE = "https://github.com/nexus-saude/nexus-ml/blob/main/docs/runbooks.md"
