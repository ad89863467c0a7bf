"""Clinical performance against the model's own validated baseline, and between segments.

The quality job exports realised recall/precision per (model, class, segment) with their
95 % interval bounds, the expected calibration error and the labelled count per segment; the
service exports the holdout baseline (``ml_model_baseline``) and the positive class of a
binary model (``ml_model_positive_class``) when it publishes the model. A value the job
withdrew for want of rows is NaN (a multiprocess gauge cannot forget a child): every
comparison with NaN is false in PromQL and the in-process snapshot leaves it out, so a
withdrawn value never fires. Each alert also asks for a minimum of labelled predictions,
because a handful of labels moves these proportions a lot (the interval conditions say how
much; the minimum keeps a small window from deciding alone).

Per model (``max by``): replicas read the same database, as for accuracy.
"""

from __future__ import annotations

from nexus_ml.monitoring.alerts.cases import MODEL, Case, Series, const, exact, fires, quiet, sel
from nexus_ml.monitoring.alerts.cases import target as series_labels
from nexus_ml.monitoring.alerts.definition import Alert, Found, num
from nexus_ml.monitoring.alerts.snapshot import Bounded, Measurements
from nexus_ml.thresholds import JOB, Thresholds

ALL = "all"  # the segment of every labelled prediction
RECALL, PRECISION = "ml_model_recall", "ml_model_precision"
CALIBRATION = "ml_model_calibration_error"
LABELLED = "ml_model_labelled_samples"
BASELINE = "ml_model_baseline"
POSITIVE = "ml_model_positive_class"
# What SubgroupPerformanceGap compares, by its `metric` label.
GAP_METRICS = {"recall": RECALL, "precision": PRECISION}
POSITIVE_CLASS, OTHER_CLASS = "malignant", "benign"  # the classes of the bundled diagnostic
SEGMENT = "sex=2"


def _values(value: float | str, shift: float = 0.0) -> str:
    """A constant series of ``value + shift``; ``"NaN"`` stays NaN (a withdrawn value)."""
    return exact(value if isinstance(value, str) else value + shift)


def _enough(j: str, minimum: float, *, segments: bool = False) -> str:
    """The evidence guard, ``and``-ed on: at least ``minimum`` labelled predictions in
    segment ``all`` (with ``segments``: in each other segment)."""
    by, match = ("(job, model, segment)", "!=") if segments else ("(job, model)", "=")
    return f'and on {by}\nmax by {by} ({LABELLED}{{{j},segment{match}"{ALL}"}}) >= {num(minimum)}'


def _limit_below(baseline: float | None, tolerance: float) -> float | None:
    return None if baseline is None else baseline - tolerance


# -- SensitivityDrop --------------------------------------------------------------------


def _sensitivity_expr(t: Thresholds, j: str) -> str:
    limit = (
        f'(max by (job, model, class) ({BASELINE}{{{j},metric="recall"}}) - '
        f"{num(t.sensitivity_drop_tolerance)})"
    )
    return (
        f'max by (job, model, class) ({RECALL}{{{j},segment="{ALL}"}})\n'
        f"< on (job, model, class) {limit}\n"
        "and on (job, model, class)\n"
        f'max by (job, model, class) ({RECALL}_upper{{{j},segment="{ALL}"}})\n'
        f"< on (job, model, class) {limit}\n"
        "and on (job, model, class)\n"
        f"max by (job, model, class) ({POSITIVE}{{{j}}}) == 1\n"
        + _enough(j, t.clinical_min_samples)
    )


def _sensitivity_drop(m: Measurements, t: Thresholds, instance: str) -> Found:
    found = []
    for model, cls in sorted(m.positive_classes):
        recall = m.recall.get((model, cls, ALL))
        limit = _limit_below(m.baseline.get((model, "recall", cls)), t.sensitivity_drop_tolerance)
        labelled = m.labelled_samples.get((model, ALL))
        if recall is None or recall.value is None or recall.upper is None:
            continue
        if limit is None or labelled is None or labelled < t.clinical_min_samples:
            continue
        if recall.value < limit and recall.upper < limit:
            found.append(({"model": model, "class": cls}, recall.value))
    return found


def _sensitivity_cases(t: Thresholds, for_m: int) -> list[Case]:
    baseline = 0.9
    limit = baseline - t.sensitivity_drop_tolerance
    enough = t.clinical_min_samples

    def series(
        value: float | str,
        upper: float | str,
        *,
        samples: float = enough,
        positive: str = POSITIVE_CLASS,
        model: str = MODEL,
    ) -> list[Series]:
        cls = series_labels(model=model, **{"class": POSITIVE_CLASS})
        at_all = {**cls, "segment": ALL}
        return [
            (sel(RECALL, **at_all), _values(value)),
            (sel(f"{RECALL}_lower", **at_all), _values(value, -0.1)),
            (sel(f"{RECALL}_upper", **at_all), _values(upper)),
            (sel(BASELINE, **cls, metric="recall"), const(baseline)),
            # As the service exports it: 1 for the positive class, 0 for the other.
            *(
                (sel(POSITIVE, **series_labels(model=model, **{"class": c})), const(c == positive))
                for c in (POSITIVE_CLASS, OTHER_CLASS)
            ),
            (sel(LABELLED, **series_labels(model=model, segment=ALL)), const(samples)),
        ]

    low = limit - 0.1
    at = for_m + 5
    return [
        fires(
            series(low, limit - 0.01),
            {"job": JOB, "model": MODEL, "class": POSITIVE_CLASS},
            low,
            "recall and its upper bound below the baseline minus the tolerance",
        ),
        quiet(series(low, limit), at, "upper bound exactly at the limit"),
        quiet(series(low, limit + 0.01), at, "interval reaches the limit"),
        quiet(
            series(limit, limit - 0.01),
            at,
            "recall exactly at the limit (only the point estimate decides)",
        ),
        quiet(
            series(low, limit - 0.01, samples=enough - 1),
            at,
            "too few labelled predictions",
        ),
        quiet(
            series(low, limit - 0.01, positive=OTHER_CLASS),
            at,
            "the class is not the positive one (its gauge is 0)",
        ),
        quiet(
            series("NaN", "NaN"),
            at,
            "recall withdrawn (NaN: below the minimum count)",
        ),
        # Each condition is joined per model and class: one model's low recall and another's
        # low upper bound are no drop of either.
        quiet(
            series(low, limit + 0.01) + series(limit + 0.05, limit - 0.01, model="second"),
            at,
            "one model's recall and another's upper bound below the limit",
        ),
        # The evidence guard is per model too: another model's labels are no evidence.
        quiet(
            series(low, limit - 0.01, samples=enough - 1)
            + series(limit + 0.05, limit + 0.06, model="second"),
            at,
            "a drop with too few labelled predictions beside a model with plenty",
        ),
    ]


SENSITIVITY_DROP = Alert(
    name="SensitivityDrop",
    severity="warning",
    category="model",
    threshold="sensitivity_drop_tolerance",
    for_key="sensitivity_drop_for",
    reads=("clinical_min_samples",),
    summary="Sensitivity of model {model} dropped",
    description="Recall of the positive class {class} of model {model} is {value}: it and its "
    "95 % upper bound are more than {threshold} below the validated baseline (at least "
    "{clinical_min_samples} labelled predictions).",
    labels=("model", "class"),
    expr=_sensitivity_expr,
    condition=_sensitivity_drop,
    cases=_sensitivity_cases,
)


# -- SubgroupPerformanceGap -------------------------------------------------------------


def _gap_expr(t: Thresholds, j: str) -> str:
    def one(metric: str, name: str) -> str:
        by_segment = "max by (job, model, class, segment)"
        whole = "max by (job, model, class)"
        return (
            "label_replace(\n"
            f'  {by_segment} ({name}{{{j},segment!="{ALL}"}})\n'
            f"  < on (job, model, class) group_left ()\n"
            f'  ({whole} ({name}{{{j},segment="{ALL}"}}) - {num(t.subgroup_gap_tolerance)})\n'
            "  and on (job, model, class, segment)\n"
            f'  {by_segment} ({name}_upper{{{j},segment!="{ALL}"}})\n'
            f"  < on (job, model, class) group_left ()\n"
            f'  {whole} ({name}_lower{{{j},segment="{ALL}"}}),\n'
            f'  "metric", "{metric}", "", ""\n'
            ")"
        )

    either = "\nor\n".join(one(metric, name) for metric, name in GAP_METRICS.items())
    return f"(\n{either}\n)\n" + _enough(j, t.clinical_min_samples, segments=True)


def _subgroup_gap(m: Measurements, t: Thresholds, instance: str) -> Found:
    found = []
    for metric, readings in (("recall", m.recall), ("precision", m.precision)):
        for (model, cls, segment), part in sorted(readings.items()):
            whole = readings.get((model, cls, ALL))
            labelled = m.labelled_samples.get((model, segment))
            if segment == ALL or whole is None or labelled is None:
                continue
            value = _gap(part, whole, t.subgroup_gap_tolerance)
            if value is not None and labelled >= t.clinical_min_samples:
                labels = {"model": model, "class": cls, "segment": segment, "metric": metric}
                found.append((labels, value))
    return found


def _gap(part: Bounded, whole: Bounded, tolerance: float) -> float | None:
    """The segment's value if it is more than ``tolerance`` below the whole's and the
    intervals do not overlap (else ``None``; a part not exported decides nothing)."""
    value, upper = part.value, part.upper
    if value is None or upper is None or whole.value is None or whole.lower is None:
        return None
    return value if value < whole.value - tolerance and upper < whole.lower else None


def _gap_cases(t: Thresholds, for_m: int) -> list[Case]:
    whole, whole_lower = 0.9, 0.86
    limit = whole - t.subgroup_gap_tolerance
    enough = t.clinical_min_samples
    cls = {"class": POSITIVE_CLASS}

    def series(
        metric: str,
        value: float | str,
        upper: float | str,
        *,
        samples: float = enough,
        whole_value: float | str = whole,
        segment: str = SEGMENT,
        with_whole: bool = True,
    ) -> list[Series]:
        name = GAP_METRICS[metric]
        at_all = series_labels(model=MODEL, segment=ALL, **cls)
        part = series_labels(model=MODEL, segment=segment, **cls)
        whole_series = [
            (sel(name, **at_all), _values(whole_value)),
            (sel(f"{name}_lower", **at_all), _values(whole_lower)),
            (sel(f"{name}_upper", **at_all), _values(0.94)),
            (sel(LABELLED, **series_labels(model=MODEL, segment=ALL)), const(10 * enough)),
        ]
        return [
            *(whole_series if with_whole else []),
            (sel(name, **part), _values(value)),
            (sel(f"{name}_lower", **part), _values(value, -0.1)),
            (sel(f"{name}_upper", **part), _values(upper)),
            (sel(LABELLED, **series_labels(model=MODEL, segment=segment)), const(samples)),
        ]

    at = for_m + 5
    low = limit - 0.1
    cases = []
    for metric in GAP_METRICS:
        cases += [
            Case(
                series=series(metric, low, whole_lower - 0.01),
                fires=True,
                labels={"job": JOB, "model": MODEL, **cls, "segment": SEGMENT, "metric": metric},
                value=low,
                note=f"{metric} of one segment below the whole's, intervals apart",
            ),
            quiet(
                series(metric, limit, whole_lower - 0.01),
                at,
                f"{metric} exactly the tolerance below the whole's",
            ),
            quiet(
                series(metric, low, whole_lower),
                at,
                f"{metric} intervals touch (upper bound at the whole's lower)",
            ),
        ]
    return [
        *cases,
        quiet(
            series("recall", limit + 0.01, whole_lower - 0.01),
            at,
            "recall just inside the tolerance",
        ),
        quiet(
            series("recall", low, whole_lower - 0.01, samples=enough - 1),
            at,
            "too few labelled predictions in the segment",
        ),
        quiet(
            series("recall", "NaN", "NaN"),
            at,
            "segment recall withdrawn (NaN: below the minimum count)",
        ),
        quiet(
            series("recall", low, whole_lower - 0.01, whole_value="NaN"),
            at,
            "whole-population recall withdrawn (NaN)",
        ),
        # Both conditions hold for the same segment or not at all: one segment's value and
        # another's upper bound below are no gap of either.
        quiet(
            series("recall", low, whole_lower)
            + series("recall", limit + 0.01, whole_lower - 0.01, segment="age=1", with_whole=False),
            at,
            "one segment's recall and another's upper bound below",
        ),
        # The evidence guard is per segment too: another segment's labels are no evidence.
        quiet(
            series("recall", low, whole_lower - 0.01, samples=enough - 1)
            + series("recall", limit + 0.05, 0.95, segment="age=1", with_whole=False),
            at,
            "a gap with too few labelled predictions beside a segment with plenty",
        ),
    ]


SUBGROUP_GAP = Alert(
    name="SubgroupPerformanceGap",
    severity="warning",
    category="model",
    threshold="subgroup_gap_tolerance",
    for_key="subgroup_gap_for",
    reads=("clinical_min_samples",),
    summary="Model {model} does worse for segment {segment}",
    description="The {metric} of class {class} of model {model} in segment {segment} is "
    "{value}, more than {threshold} below the whole population's, and the 95 % intervals do "
    "not overlap (at least {clinical_min_samples} labelled predictions in the segment).",
    labels=("model", "class", "segment", "metric"),
    expr=_gap_expr,
    condition=_subgroup_gap,
    cases=_gap_cases,
)


# -- CalibrationDrift -------------------------------------------------------------------


def _calibration_expr(t: Thresholds, j: str) -> str:
    return (
        f'max by (job, model) ({CALIBRATION}{{{j},segment="{ALL}"}})\n'
        f'> on (job, model) (max by (job, model) ({BASELINE}{{{j},metric="calibration_error"}}) '
        f"+ {num(t.calibration_error_tolerance)})\n" + _enough(j, t.calibration_min_samples)
    )


def _calibration_drift(m: Measurements, t: Thresholds, instance: str) -> Found:
    found = []
    for (model, segment), error in sorted(m.calibration_error.items()):
        baseline = m.baseline.get((model, "calibration_error", ""))
        labelled = m.labelled_samples.get((model, segment))
        if segment != ALL or baseline is None or labelled is None:
            continue
        if error > baseline + t.calibration_error_tolerance and (
            labelled >= t.calibration_min_samples
        ):
            found.append(({"model": model}, error))
    return found


def _calibration_cases(t: Thresholds, for_m: int) -> list[Case]:
    baseline = 0.03
    limit = baseline + t.calibration_error_tolerance
    enough = t.calibration_min_samples
    labels = series_labels(model=MODEL)

    def series(
        error: float | str, *, samples: float = enough, with_baseline: bool = True
    ) -> list[Series]:
        out = [
            (sel(CALIBRATION, **labels, segment=ALL), _values(error)),
            (sel(LABELLED, **labels, segment=ALL), const(samples)),
        ]
        if with_baseline:
            out.append((sel(BASELINE, **labels, metric="calibration_error"), exact(baseline)))
        return out

    high = limit + 0.01
    at = for_m + 5
    return [
        fires(series(high), {"job": JOB, "model": MODEL}, high),
        quiet(series(limit), at, "ECE exactly the tolerance above the baseline"),
        quiet(series(limit - 0.01), at, "ECE just inside the tolerance"),
        quiet(series(high, samples=enough - 1), at, "too few labelled"),
        quiet(series("NaN"), at, "ECE withdrawn (NaN)"),
        quiet(series(high, with_baseline=False), at, "no baseline to compare"),
    ]


CALIBRATION_DRIFT = Alert(
    name="CalibrationDrift",
    severity="warning",
    category="model",
    threshold="calibration_error_tolerance",
    for_key="calibration_drift_for",
    reads=("calibration_min_samples",),
    summary="Probabilities of model {model} are no longer calibrated",
    description="Expected calibration error of model {model} is {value}, more than {threshold} "
    "above the validated baseline (at least {calibration_min_samples} labelled predictions).",
    labels=("model",),
    expr=_calibration_expr,
    condition=_calibration_drift,
    cases=_calibration_cases,
)
