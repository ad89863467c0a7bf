"""Models: training outcomes and age, realised accuracy, confidence and input drift.

Per model (``by (job, model)``): replicas compute the same value from the shared
database, so ``max`` keeps one stale replica from paging on its own.
"""

from __future__ import annotations

from nexus_ml.monitoring.alerts.cases import (
    HORIZON,
    MODEL,
    Case,
    const,
    exact,
    fires,
    histogram,
    quiet,
    ramp,
    sel,
)
from nexus_ml.monitoring.alerts.cases import target as series_labels
from nexus_ml.monitoring.alerts.definition import Alert, Found, num, per_model, wall_clock
from nexus_ml.monitoring.alerts.snapshot import Measurements
from nexus_ml.monitoring.metrics import CONFIDENCE_BUCKETS
from nexus_ml.thresholds import JOB, Thresholds

DAY = 86400.0
BY_MODEL = {"job": JOB, "model": MODEL}  # the labels a per-model alert carries in the cases
RUNS = "ml_model_training_runs_total"


def _training_failure_cases(t: Thresholds, for_m: int) -> list[Case]:
    failures = series_labels(model=MODEL, outcome="failure")
    one_failure = "0 0 0 " + " ".join(["1"] * HORIZON)
    return [
        Case(
            series=[(sel(RUNS, **failures), one_failure)],
            fires=True,
            active_from=3,
            labels=BY_MODEL,
            value=1,
        ),
        Case(
            series=[
                (sel(RUNS, **failures), const(0)),
                (sel(RUNS, **series_labels(model=MODEL, outcome="success")), ramp(1)),
            ],
            fires=False,
            check_at=max(10, 3 + for_m + 5),
            note="only successful runs",
        ),
        Case(
            series=[(sel(RUNS, **failures), one_failure)],
            fires=False,
            check_at=3 + 60 + 2,
            note="failure older than the 1h window",
        ),
    ]


TRAINING_FAILURE = Alert(
    name="TrainingFailure",
    severity="critical",
    category="training",
    threshold="training_failures_high",
    for_key="training_failure_for",
    summary="Training of model {model} failed",
    description="{value} training run(s) of model {model} failed in the last hour.",
    labels=("model",),
    window="1h",
    expr=lambda t, j: (
        f"sum by (job, model) (increase({RUNS}"
        f'{{{j},outcome="failure"}}[1h])) > {num(t.training_failures_high)}'
    ),
    condition=lambda m, t, instance: per_model(
        m.training_failures, lambda _, v: v > t.training_failures_high
    ),
    cases=_training_failure_cases,
)

ACCURACY, ACCURACY_SAMPLES = "ml_model_accuracy", "ml_model_accuracy_samples"
BASELINE, HOLDOUT = "ml_model_baseline", "ml_model_holdout_accuracy"


def accuracy_limit_of(t: Thresholds, baseline: float | None) -> float:
    """LowModelAccuracy's limit for a model validated at ``baseline`` accuracy: the guide's
    floor, or lower for a model validated below it (its baseline minus the tolerance).

    A baseline must be a number (``>= 0`` in the rule): ``None`` or NaN is no baseline.
    """
    if baseline is None or not baseline >= 0:
        return t.training_accuracy_low
    return min(t.training_accuracy_low, baseline - t.accuracy_baseline_tolerance)


def accuracy_limit(m: Measurements, t: Thresholds, model: str) -> float:
    """The limit for ``model`` in a snapshot, as the rule computes it.

    The baseline is the bundle's holdout accuracy at the operating point
    (``ml_model_baseline{metric="accuracy"}``), else the training holdout accuracy of an older
    bundle (``ml_model_holdout_accuracy``, any served version); without either, the floor.
    """
    baseline = m.baseline.get((model, "accuracy", ""))
    if baseline is None or not baseline >= 0:
        baseline = m.holdout_accuracy.get(model)
    return accuracy_limit_of(t, baseline)


def _accuracy_expr(t: Thresholds, j: str) -> str:
    # clamp_max(b - tol, floor) is min(floor, b - tol); `or` falls back to the holdout
    # accuracy, then (accuracy * 0 + floor) to the floor for a model with no baseline at all.
    baseline = (
        f'max by (job, model) ({BASELINE}{{{j},metric="accuracy",class=""}} >= 0)\n'
        f"    or\n    max by (job, model) ({HOLDOUT}{{{j}}} >= 0)"
    )
    floor = num(t.training_accuracy_low)
    return (
        f"max by (job, model) ({ACCURACY}{{{j}}})\n< on (job, model) (\n"
        f"  clamp_max(\n    (\n    {baseline}\n    ) - {num(t.accuracy_baseline_tolerance)},"
        f"\n    {floor}\n  )\n  or\n  max by (job, model) ({ACCURACY}{{{j}}}) * 0 + {floor}\n)\n"
        f"and on (job, model)\n"
        f"max by (job, model) ({ACCURACY_SAMPLES}{{{j}}}) >= {num(t.accuracy_min_samples)}"
    )


def _accuracy_low(m: Measurements, t: Thresholds, instance: str) -> Found:
    def low(model: str, v: float) -> bool:
        enough = m.accuracy_samples.get(model, 0) >= t.accuracy_min_samples
        return v < accuracy_limit(m, t, model) and enough

    return per_model(m.accuracy, low)


# A model validated below the floor (the bundled diabetes_risk's holdout accuracy was 0.674).
WEAK_BASELINE = 0.674


def _accuracy_cases(t: Thresholds, for_m: int) -> list[Case]:
    labels = series_labels(model=MODEL)

    def series(
        accuracy: float | str,
        samples: float,
        *,
        baseline: float | str | None = None,
        holdout: float | None = None,
    ) -> list[tuple[str, str]]:
        out = [
            (sel(ACCURACY, **labels), exact(accuracy)),
            (sel(ACCURACY_SAMPLES, **labels), const(samples)),
        ]
        if baseline is not None:
            out.append((sel(BASELINE, **labels, metric="accuracy"), exact(baseline)))
        if holdout is not None:
            out.append((sel(HOLDOUT, **labels, version="v1"), exact(holdout)))
        return out

    floor, enough = t.training_accuracy_low, t.accuracy_min_samples
    low, high = floor - 0.01, floor + 0.01
    # The weak model's own limit, the very float the rule computes.
    weak = min(floor, WEAK_BASELINE - t.accuracy_baseline_tolerance)
    at = for_m + 5
    return [
        fires(series(low, enough), BY_MODEL, low),
        quiet(series(high, enough), at, "accuracy just above"),
        quiet(series(floor, enough), at, "accuracy exactly at the limit"),
        quiet(series(low, max(enough - 1, 0)), at, "too few labelled predictions"),
        fires(
            series(low, enough, baseline=0.96),
            BY_MODEL,
            low,
            "a strong model's baseline keeps the floor",
        ),
        *(
            case
            for source, how in (("baseline", "own baseline"), ("holdout", "holdout (older bundle)"))
            for case in (
                fires(
                    series(weak - 0.01, enough, **{source: WEAK_BASELINE}),
                    BY_MODEL,
                    weak - 0.01,
                    f"below a weak model's {how} minus the tolerance",
                ),
                quiet(
                    series(weak, enough, **{source: WEAK_BASELINE}),
                    at,
                    f"exactly a weak model's {how} minus the tolerance",
                ),
                quiet(
                    series(WEAK_BASELINE, enough, **{source: WEAK_BASELINE}),
                    at,
                    f"a weak model performing as validated by its {how} (below the floor)",
                ),
            )
        ),
        fires(
            series(low, enough, baseline="NaN"),
            BY_MODEL,
            low,
            "a NaN baseline is none: the floor applies",
        ),
        quiet(series("NaN", enough), at, "accuracy withdrawn (NaN)"),
    ]


LOW_ACCURACY = Alert(
    name="LowModelAccuracy",
    severity="warning",
    category="model",
    threshold="training_accuracy_low",
    for_key="training_accuracy_low_for",
    reads=("accuracy_baseline_tolerance", "accuracy_min_samples"),
    summary="Accuracy of model {model} is low",
    description="Realised accuracy of model {model} is {value} (threshold {threshold}, or the "
    "model's validated baseline minus {accuracy_tolerance} where that is lower; at least "
    "{min_samples} labelled predictions).",
    labels=("model",),
    expr=_accuracy_expr,
    condition=_accuracy_low,
    cases=_accuracy_cases,
)

CONFIDENCE = "ml_model_confidence_score_bucket"


def _confidence_cases(t: Thresholds, for_m: int) -> list[Case]:
    low, high = t.model_confidence_low * 0.95, t.model_confidence_low * 1.05
    labels = series_labels(model=MODEL)
    return [
        Case(
            series=histogram(CONFIDENCE, CONFIDENCE_BUCKETS, 0.5, low, labels),
            fires=True,
            active_from=1,
            labels=BY_MODEL,
            value=low,
        ),
        Case(
            series=histogram(CONFIDENCE, CONFIDENCE_BUCKETS, 0.5, high, labels),
            fires=False,
            check_at=for_m + 6,
            note="median just above",
        ),
    ]


LOW_CONFIDENCE = Alert(
    name="LowModelConfidence",
    severity="warning",
    category="model",
    threshold="model_confidence_low",
    for_key="model_confidence_low_for",
    summary="Confidence of model {model} is low",
    description="Median confidence of model {model} is {value} over {window} "
    "(threshold {threshold}).",
    labels=("model",),
    window="15m",
    expr=lambda t, j: (
        "histogram_quantile(0.5, sum by (job, model, le) "
        f"(rate({CONFIDENCE}{{{j}}}[15m]))) < {num(t.model_confidence_low)}"
    ),
    condition=lambda m, t, instance: per_model(
        m.median_confidence, lambda _, v: v < t.model_confidence_low
    ),
    cases=_confidence_cases,
)

SCORE, DETECTED = "ml_data_drift_score", "ml_data_drift_detected"
# The statistic the drift decision compared with data_drift_high: PSI for a number, the total
# share change for a category, the missing-rate change (stats.drift.DECISION).
DRIFT_DECISION = "decision"


def _drift_expr(t: Thresholds, j: str) -> str:
    # The detected flag is the service's decision (multiple-testing corrected, minimum
    # window); the effect-size limit keeps tiny-but-significant shifts out of the pager.
    return (
        f'max by (job, model, feature) ({SCORE}{{{j},method="{DRIFT_DECISION}"}}) > '
        f"{num(t.data_drift_high)}\nand on (job, model, feature)\n"
        f"max by (job, model, feature) ({DETECTED}{{{j}}}) == 1"
    )


def _drift_high(m: Measurements, t: Thresholds, instance: str) -> Found:
    return [
        ({"model": model, "feature": feature}, r.score)
        for (model, feature), r in sorted(m.drift.items())
        if r.score > t.data_drift_high and r.detected
    ]


def _drift_cases(t: Thresholds, for_m: int) -> list[Case]:
    feature = {"model": MODEL, "feature": "age"}

    def series(psi: float, detected: int) -> list[tuple[str, str]]:
        return [
            (sel(SCORE, **series_labels(**feature, method=DRIFT_DECISION)), const(psi)),
            (sel(DETECTED, **series_labels(**feature)), const(detected)),
        ]

    high = t.data_drift_high * 1.1 or 0.01
    return [
        Case(series=series(high, 1), fires=True, labels={"job": JOB, **feature}, value=high),
        Case(
            series=series(t.data_drift_high * 0.9, 1),
            fires=False,
            check_at=for_m + 5,
            note="drift score just below",
        ),
        Case(
            series=series(t.data_drift_high, 1),
            fires=False,
            check_at=for_m + 5,
            note="PSI exactly at the limit",
        ),
        Case(
            series=series(high, 0),
            fires=False,
            check_at=for_m + 5,
            note="drift score high but the drift test does not flag the feature",
        ),
    ]


DATA_DRIFT = Alert(
    name="DataDriftDetected",
    severity="warning",
    category="data",
    threshold="data_drift_high",
    for_key="data_drift_high_for",
    summary="Feature {feature} of model {model} drifted",
    description="Drift score of feature {feature} (model {model}) is {value} (threshold "
    "{threshold}: PSI for a number, share change for a category or the missing rate) and the "
    "drift test flags it.",
    labels=("model", "feature"),
    expr=_drift_expr,
    condition=_drift_high,
    cases=_drift_cases,
)

LAST_TRAINING = "ml_model_last_training_timestamp_seconds"


def _training_age(m: Measurements, t: Thresholds, instance: str) -> Found:
    now = wall_clock(m)
    days = {model: (now - v) / DAY for model, v in m.last_training.items()}
    return per_model(days, lambda _, v: v > t.training_max_age / DAY)


def _training_age_cases(t: Thresholds, for_m: int) -> list[Case]:
    labels = series_labels(model=MODEL)
    # promtool's clock starts at the epoch, so "trained N days ago" is a negative timestamp.
    old = -(t.training_max_age + 3600)
    return [
        Case(
            series=[(sel(LAST_TRAINING, **labels), const(old))],
            fires=True,
            labels=BY_MODEL,
            value=(for_m * 60 - old) / DAY,
        ),
        Case(
            series=[
                (sel(LAST_TRAINING, **labels), const(-(t.training_max_age - for_m * 60 - 3600)))
            ],
            fires=False,
            check_at=for_m + 5,
            note="trained just inside the limit",
        ),
        Case(
            # Retrained every minute so that the age stays exactly the limit throughout.
            series=[(sel(LAST_TRAINING, **labels), f"{-t.training_max_age:.10g}+60x{HORIZON}")],
            fires=False,
            check_at=for_m + 5,
            note="trained exactly the limit ago",
        ),
    ]


NO_RECENT_TRAINING = Alert(
    name="NoRecentTraining",
    severity="warning",
    category="training",
    threshold="training_max_age",
    for_key="no_recent_training_for",
    summary="Model {model} has not been trained recently",
    description="Model {model} was last trained {value} days ago (threshold {threshold} days).",
    labels=("model",),
    threshold_divisor=DAY,
    expr=lambda t, j: (
        f"(time() - max by (job, model) ({LAST_TRAINING}{{{j}}})) / 86400 > "
        f"{num(t.training_max_age / DAY)}"
    ),
    condition=_training_age,
    cases=_training_age_cases,
)
