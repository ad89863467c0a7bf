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
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

ENV_PREFIX = "ML_THRESHOLD_"
Unit = Literal["percent", "ratio", "seconds", "bytes", "per_second", "count", "score"]

_DURATION_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


class HasThresholdsFile(Protocol):
    """What load_thresholds needs from Settings (config is a sibling layer: no import)."""

    @property
    def thresholds_file(self) -> Path | None: ...


class ThresholdError(ValueError):
    """An override names an unknown key or holds a value outside its unit's range."""


def parse_duration(value: object) -> object:
    """Seconds from a number or a Prometheus-style duration such as ``5m`` or ``1h30m``."""
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION_RE.match(text)
        if text and match and any(match.groups()):
            return sum(
                int(g or 0) * s for g, (_, s) in zip(match.groups(), _DURATION_UNITS, strict=True)
            )
        try:
            return float(text)
        except ValueError:
            # The value is not echoed: it may come from a request body (see api/errors.py).
            raise ValueError("not a duration (seconds, or e.g. 90s, 5m, 1h30m, 7d)") from None
    return value


def format_duration(seconds: float) -> str:
    """Prometheus duration text for whole ``seconds`` (``300`` -> ``5m``, ``0`` -> ``0s``)."""
    remaining = round(seconds)
    if remaining == 0:
        return "0s"
    parts = []
    for suffix, size in _DURATION_UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{suffix}")
    return "".join(parts)


def _unit(unit: Unit, description: str, **limits: Any) -> Any:
    return Field(description=description, json_schema_extra={"unit": unit}, **limits)


def _number(value: object) -> object:
    """A finite number, or text for pydantic to parse (environment variables are text)."""
    # pydantic's lax mode reads true as 1 (YAML's `yes` too); "inf" and 1e999 parse as floats.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number")
    try:
        number = float(value)
    except ValueError:
        return value  # not a number: pydantic's own message says so
    except OverflowError:  # an integer beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError("must be a finite number")
    return value


# Latency histogram buckets (0.5 ms to 10 s): defined here, not next to the metric, because
# they bound two limits: latency_slo_threshold must be one of them (the SLO counts requests
# under a bucket's `le`), and a P95 limit at or above the last finite one can never be
# exceeded (histogram_quantile answers at most that bound). metrics.py builds the histograms
# from this tuple.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def check_latency_bucket(value: float) -> float:
    """``value`` if it is one of the latency histogram's bucket bounds (else ValueError).

    The one check of ``latency_slo_threshold``, shared by the model, the API and the rule
    renderer: a bound between buckets cannot be counted exactly from the histogram.
    """
    if value not in LATENCY_BUCKETS:
        raise ValueError(
            "must be one of the latency histogram's bucket bounds "
            f"({', '.join(f'{b:g}' for b in LATENCY_BUCKETS)})"
        )
    return value


# Every limit is finite and bounded: an infinite or absurd value either never fires (a
# silent alert) or breaks the arithmetic that renders and evaluates it. The bounds are
# generous; each type is one unit's rule and docs/thresholds.md lists them.
MAX_DURATION_SECONDS = 366 * 86400
MAX_COUNT = 1e9
MAX_RATE = 1e9
MAX_SCORE = 1e3
MAX_BYTES = 2**53  # the largest whole number a float holds exactly
_Num = BeforeValidator(_number)
Percent = Annotated[float, _Num, Field(ge=0, le=100, allow_inf_nan=False)]
Ratio = Annotated[float, _Num, Field(ge=0, le=1, allow_inf_nan=False)]
Score = Annotated[float, _Num, Field(ge=0, le=MAX_SCORE, allow_inf_nan=False)]
Count = Annotated[float, _Num, Field(ge=0, le=MAX_COUNT, multiple_of=1, allow_inf_nan=False)]
Rate = Annotated[float, _Num, Field(ge=0, le=MAX_RATE, allow_inf_nan=False)]
Bytes = Annotated[float, _Num, Field(gt=0, le=MAX_BYTES, multiple_of=1, allow_inf_nan=False)]
# A P95 limit: above 0, below the last finite bucket (see LATENCY_BUCKETS).
Latency = Annotated[float, _Num, Field(gt=0, lt=LATENCY_BUCKETS[-1], allow_inf_nan=False)]
LatencyBound = Annotated[
    float, _Num, Field(allow_inf_nan=False), AfterValidator(check_latency_bucket)
]
# Durations are whole seconds: Prometheus gets them as duration text (format_duration), and
# the in-process evaluator must wait exactly as long as the rendered rule.
_Dur = BeforeValidator(parse_duration)
Window = Annotated[
    float,
    _Num,
    _Dur,
    Field(gt=0, le=MAX_DURATION_SECONDS, multiple_of=1, allow_inf_nan=False),
]
# A range the in-process evaluator must also compute: at most the hour of history
# ``MetricHistory`` keeps.
MAX_RANGE_SECONDS = 3600
RangeWindow = Annotated[
    float, _Num, _Dur, Field(ge=1, le=MAX_RANGE_SECONDS, multiple_of=1, allow_inf_nan=False)
]
ForDuration = Annotated[
    float,
    _Num,
    _Dur,
    Field(ge=0, le=MAX_DURATION_SECONDS, multiple_of=1, allow_inf_nan=False),
]
# The type of each unit's limits (a test checks every field's type against its unit).
TYPES_OF_UNIT: dict[Unit, tuple[object, ...]] = {
    "percent": (Percent,),
    "ratio": (Ratio,),
    "score": (Score,),
    "count": (Count,),
    "per_second": (Rate,),
    "bytes": (Bytes,),
    "seconds": (Latency, LatencyBound, Window, RangeWindow, ForDuration),
}


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
        return self


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
