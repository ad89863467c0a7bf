"""The clinical rows of the data-science dashboard: recall (sensitivity) and precision (PPV) per
segment with their 95 % intervals, the label-free estimates, the alert rate, the reliability
curve and calibration, each against the model's own holdout baseline (``ml_model_baseline``).

Realised values rest on feedback labels; a value whose denominator is below the minimum count
is not exported (NaN once exported), so a gap in a line means "too few labels", not zero.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import dashboard as dm

from nexus_ml.monitoring.alerts.definition import num
from nexus_ml.render.dashboards.common import (
    MODEL,
    NO_FEEDBACK,
    NOT_YET_RUN,
    PROMETHEUS,
    low_is_bad,
    q,
    steps_above,
    table_q,
)
from nexus_ml.render.dashboards.panels import (
    bar_chart_panel,
    bar_gauge_panel,
    dashed,
    table_panel,
    timeseries_panel,
)
from nexus_ml.thresholds import Thresholds

SEGMENT = 'segment=~"$segment"'
CLASS = 'class=~"$class"'
ALL = 'segment="all"'
# Interval bounds and baselines are drawn dashed; their legends end in these words.
_REFERENCE = r".* (lower|upper|baseline|estimated|prevalence|limit)$"
POSITIVE = "and on (model, class) (ml_model_positive_class == 1)"


def _labelled_variable(name: str, label: str, metric: str) -> db.QueryVariable:
    """A multi-select variable over the values of ``name`` on ``metric`` for the chosen models."""
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query({"query": f"label_values({metric}{{{MODEL}}}, {name})", "refId": name})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def segment_variable() -> db.QueryVariable:
    """``$segment``: ``all`` by default (one line per model); any declared segment on demand."""
    return _labelled_variable("segment", "Segment", "ml_model_labelled_samples").current(
        dm.VariableOption(selected=True, text="all", value="all")
    )


def class_variable() -> db.QueryVariable:
    """``$class``: the classes with a recall gauge (the positive class is one of them)."""
    return _labelled_variable("class", "Class", "ml_model_recall").current(
        dm.VariableOption(selected=True, text="All", value="$__all")
    )


def _with_interval(metric: str, title: str, description: str, t: Thresholds) -> Builder[dm.Panel]:
    """``metric`` per model, class and segment, its 95 % bounds, the holdout baseline and the
    alert limits: SubgroupPerformanceGap's (segment all's value minus subgroup_gap_tolerance)
    and, for recall, SensitivityDrop's (the positive class's baseline minus its tolerance)."""
    sel = f"{{{MODEL}, {CLASS}, {SEGMENT}}}"
    legend = "{{model}} {{class}} {{segment}}"
    name = metric.removeprefix("ml_model_")
    baseline = f'ml_model_baseline{{{MODEL}, metric="{name}", {CLASS}}}'
    whole = f"{metric}{{{MODEL}, {CLASS}, {ALL}}}"
    targets = [
        q(f"{metric}{sel}", legend, "A"),
        q(f"{metric}_lower{sel}", f"{legend} lower", "B"),
        q(f"{metric}_upper{sel}", f"{legend} upper", "C"),
        q(baseline, "{{model}} {{class}} baseline", "D"),
        q(
            f"{whole} - {num(t.subgroup_gap_tolerance)}",
            "{{model}} {{class}} SubgroupPerformanceGap limit",
            "E",
        ),
    ]
    if name == "recall":
        expr = f"({baseline} - {num(t.sensitivity_drop_tolerance)}) {POSITIVE}"
        targets.append(q(expr, "{{model}} {{class}} SensitivityDrop limit", "F"))
    panel = timeseries_panel(
        title,
        targets,
        unit="percentunit",
        min_val=0,
        max_val=1,
        no_value=NO_FEEDBACK,
        description=description,
        span=12,
    )
    return dashed(panel, _REFERENCE)


def _positive_now() -> Builder[dm.Panel]:
    """Sensitivity and PPV of each binary model's positive class, segment all, latest."""
    positive = POSITIVE
    return bar_gauge_panel(
        "Sensitivity and PPV now (positive class, all patients)",
        [
            q(
                f"ml_model_recall{{{MODEL}, {ALL}}} {positive}",
                "{{model}} {{class}} sensitivity",
                "A",
                instant=True,
            ),
            q(
                f"ml_model_precision{{{MODEL}, {ALL}}} {positive}",
                "{{model}} {{class}} PPV",
                "B",
                instant=True,
            ),
        ],
        unit="percentunit",
        min_val=0,
        max_val=1,
        thresholds=steps_above("blue"),
        no_value=NO_FEEDBACK,
        description="Binary models: recall and precision of the class the model screens for "
        "(ml_model_positive_class), realised from feedback labels over the accuracy window.",
        span=24,
        height=5,
    )


def _table() -> Builder[dm.Panel]:
    sel = f"{{{MODEL}, {CLASS}, {SEGMENT}}}"
    columns = (
        ("ml_model_recall", "recall"),
        ("ml_model_recall_lower", "recall lower 95%"),
        ("ml_model_recall_upper", "recall upper 95%"),
        ("ml_model_precision", "precision"),
        ("ml_model_precision_lower", "precision lower 95%"),
        ("ml_model_precision_upper", "precision upper 95%"),
        ("ml_model_positive_rate", "alert rate"),
        ("ml_model_prevalence", "prevalence"),
    )
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    return table_panel(
        "Recall and precision by segment (latest, 95 % interval)",
        [table_q(f"{metric}{sel}", ref) for (metric, _), ref in zip(columns, refs, strict=True)],
        rename={f"Value #{ref}": name for (_, name), ref in zip(columns, refs, strict=True)},
        hide_columns=("Time", "__name__"),
        unit="percentunit",
        no_value=NO_FEEDBACK,
        description="One row per model, class and segment: realised values from feedback labels "
        "with their Wilson 95 % bounds. Empty where the segment has fewer labelled rows than "
        "the minimum count.",
        span=24,
    )


def _alert_rate() -> Builder[dm.Panel]:
    sel = f"{{{MODEL}, {CLASS}, {SEGMENT}}}"
    legend = "{{model}} {{class}} {{segment}}"
    panel = timeseries_panel(
        "Alert rate (share of predictions flagging the class)",
        [
            q(f"ml_model_positive_rate{sel}", legend, "A"),
            q(f"ml_model_prevalence{sel}", f"{legend} prevalence", "B"),
        ],
        unit="percentunit",
        min_val=0,
        max_val=1,
        no_value=NOT_YET_RUN,
        description="How often the model raises each class (the clinicians' alert burden), "
        "against the share of labelled cases that really are of that class (dashed).",
        span=12,
    )
    return dashed(panel, _REFERENCE)


def _estimated() -> Builder[dm.Panel]:
    sel = f"{{{MODEL}, {CLASS}, {ALL}}}"
    panel = timeseries_panel(
        "Recall and precision: realised and estimated without labels",
        [
            q(f"ml_model_recall{sel}", "{{model}} {{class}} recall", "A"),
            q(f"ml_model_recall_estimated{sel}", "{{model}} {{class}} recall estimated", "B"),
            q(f"ml_model_precision{sel}", "{{model}} {{class}} precision", "C"),
            q(
                f"ml_model_precision_estimated{sel}",
                "{{model}} {{class}} precision estimated",
                "D",
            ),
        ],
        unit="percentunit",
        min_val=0,
        max_val=1,
        no_value=NOT_YET_RUN,
        description="Segment all. The estimate (CBPE, from calibrated confidence) needs no "
        "labels: it is there before feedback arrives.",
        span=12,
    )
    return dashed(panel, _REFERENCE)


def _reliability() -> Builder[dm.Panel]:
    return bar_chart_panel(
        "Reliability curve (latest, segment all)",
        [
            table_q(f"ml_model_reliability_predicted{{{MODEL}}}", "A"),
            table_q(f"ml_model_reliability_observed{{{MODEL}}}", "B"),
        ],
        x_field="bin",
        unit="percentunit",
        min_val=0,
        max_val=1,
        rename={"Value #A": "mean predicted", "Value #B": "observed"},
        hide_columns=("Time", "__name__", "model"),
        no_value=NO_FEEDBACK,
        description="Per probability bin (labelled by its upper edge): the mean predicted "
        "probability and the observed share. Calibrated: the two bars match. Choose one model.",
    )


def _calibration(tolerance: float) -> Builder[dm.Panel]:
    sel = f"{{{MODEL}, {SEGMENT}}}"
    baseline = f'ml_model_baseline{{{MODEL}, metric=~"calibration_error|brier_score"}}'
    ece = f'ml_model_baseline{{{MODEL}, metric="calibration_error"}}'
    panel = timeseries_panel(
        "Calibration error (ECE) and Brier score",
        [
            q(f"ml_model_calibration_error{sel}", "{{model}} {{segment}} ECE", "A"),
            q(f"ml_model_brier_score{sel}", "{{model}} {{segment}} Brier", "B"),
            q(baseline, "{{model}} {{metric}} baseline", "C"),
            q(f"{ece} + {num(tolerance)}", "{{model}} CalibrationDrift limit", "D"),
        ],
        unit="none",
        min_val=0,
        no_value=NO_FEEDBACK,
        description="Lower is better; dashed: the holdout's values and the ECE above which "
        "CalibrationDrift fires (baseline + calibration_error_tolerance).",
        span=8,
    )
    return dashed(panel, _REFERENCE)


def _auc() -> Builder[dm.Panel]:
    sel = f"{{{MODEL}, {SEGMENT}}}"
    panel = timeseries_panel(
        "ROC AUC: realised, estimated, baseline",
        [
            q(f"ml_model_roc_auc{sel}", "{{model}} {{segment}}", "A"),
            q(f"ml_model_roc_auc_estimated{sel}", "{{model}} {{segment}} estimated", "B"),
            q(f'ml_model_baseline{{{MODEL}, metric="roc_auc"}}', "{{model}} baseline", "C"),
        ],
        unit="none",
        min_val=0,
        max_val=1,
        no_value=NO_FEEDBACK,
        description="Binary models: of the positive class; multiclass: macro one-vs-rest.",
        span=8,
    )
    return dashed(panel, _REFERENCE)


def _labelled(min_samples: float) -> Builder[dm.Panel]:
    return timeseries_panel(
        "Labelled predictions per segment",
        [q(f"ml_model_labelled_samples{{{MODEL}, {SEGMENT}}}", "{{model}} {{segment}}")],
        unit="short",
        min_val=0,
        thresholds=low_is_bad(min_samples),
        no_value=NO_FEEDBACK,
        description="Feedback labels behind the realised values; dashed line: below it "
        "SensitivityDrop and SubgroupPerformanceGap stay silent (clinical_min_samples). Below "
        "ML_CLINICAL_MIN_COUNT a segment reports its count and no value.",
        span=24,
        height=6,
    )


def clinical_rows(t: Thresholds) -> list[tuple[str, list[Builder[dm.Panel]]]]:
    """The clinical rows, titled, for :func:`add_rows`; alert limits from ``t``."""
    return [
        (
            "Clinical performance by segment",
            [
                _positive_now(),
                _table(),
                _with_interval(
                    "ml_model_recall",
                    "Recall (sensitivity) with 95 % interval",
                    "Per class and segment; dashed: the Wilson bounds, the holdout baseline, "
                    "segment all minus subgroup_gap_tolerance (a segment below it, intervals "
                    "apart, raises SubgroupPerformanceGap) and, for the positive class, the "
                    "baseline minus sensitivity_drop_tolerance (SensitivityDrop).",
                    t,
                ),
                _with_interval(
                    "ml_model_precision",
                    "Precision (PPV) with 95 % interval",
                    "Per class and segment; dashed: the Wilson bounds, the holdout baseline "
                    "and segment all minus subgroup_gap_tolerance (SubgroupPerformanceGap).",
                    t,
                ),
                _alert_rate(),
                _estimated(),
            ],
        ),
        (
            "Calibration",
            [
                _reliability(),
                _calibration(t.calibration_error_tolerance),
                _auc(),
                _labelled(t.clinical_min_samples),
            ],
        ),
    ]
