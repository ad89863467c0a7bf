"""The clinical gauges: what a clinical result and a bundle's baseline export, and withdrawal.

A clinical result (``results["clinical"]`` of a stored model-quality run, the same shape the
clinical API answers with) is flattened into gauge samples keyed by ``(Metrics field, label
values)``. A value that is missing (below ``ML_CLINICAL_MIN_COUNT``, or not defined, such as
an AUC with one class absent) is not exported; a sample exported before is set to NaN instead:
prometheus_client cannot remove a label set from multiprocess files, and NaN never fires an
alert (every comparison with NaN is false).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from nexus_ml.monitoring.metrics import Metrics

# (Metrics field name, label values in the gauge's label order)
Sample = tuple[str, tuple[str, ...]]
SampleValues = dict[Sample, float | None]

# Per class: gauge field -> (key in the segment's class entry, key in that entry's interval).
_CLASS_GAUGES = {
    "model_recall": ("recall", "value"),
    "model_recall_lower": ("recall", "lower"),
    "model_recall_upper": ("recall", "upper"),
    "model_precision": ("precision", "value"),
    "model_precision_lower": ("precision", "lower"),
    "model_precision_upper": ("precision", "upper"),
    "model_prevalence": ("prevalence", "value"),
    "model_positive_rate": ("positive_rate", "value"),
    "model_recall_estimated": ("recall_estimated", "value"),
    "model_precision_estimated": ("precision_estimated", "value"),
}
# Per segment: gauge field -> key in the segment entry (a number, or a dict with "value").
_SEGMENT_GAUGES = {
    "model_roc_auc": "roc_auc",
    "model_roc_auc_estimated": "roc_auc_estimated",
    "model_brier_score": "brier_score",
    "model_calibration_error": "calibration_error",
}
# ml_model_baseline{metric}: the model-wide metrics a bundle's baseline holds.
BASELINE_MODEL_WIDE = ("accuracy", "roc_auc", "brier_score", "calibration_error")
BASELINE_PER_CLASS = ("recall", "precision")


def number(value: Any) -> float | None:
    """A finite float from a number or from an interval/estimate dict's ``value``, else None."""
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def bin_label(upper: float) -> str:
    """The ``bin`` label of a reliability bin: its upper edge, one decimal ("0.1" ... "1.0")."""
    return f"{upper:.1f}"


def clinical_samples(model: str, clinical: Mapping[str, Any]) -> SampleValues:
    """Every clinical gauge sample a stored clinical result holds (None: not exported)."""
    out: SampleValues = {}
    for seg in clinical.get("segments") or []:
        label = str(seg["segment"])
        out[("model_labelled_samples", (model, label))] = float(seg.get("labelled") or 0)
        for field, key in _SEGMENT_GAUGES.items():
            out[(field, (model, label))] = number(seg.get(key))
        for cls, entry in (seg.get("classes") or {}).items():
            for field, (key, part) in _CLASS_GAUGES.items():
                out[(field, (model, str(cls), label))] = number((entry.get(key) or {}).get(part))
        if label == "all":
            for b in seg.get("reliability") or []:
                bin_ = bin_label(float(b["upper"]))
                out[("model_reliability_predicted", (model, bin_))] = number(b["mean_predicted"])
                out[("model_reliability_observed", (model, bin_))] = number(b["observed"])
    return out


def baseline_samples(
    model: str, baseline: Mapping[str, Any] | None, holdout_accuracy: float | None = None
) -> SampleValues:
    """``ml_model_baseline`` samples of a bundle: its holdout metrics at its operating point.

    ``baseline`` is the bundle's ``Realised.to_dict()`` of its holdout. A bundle without one
    (trained before clinical baselines) still has its holdout accuracy, which is the accuracy
    baseline at the argmax rule it serves with.
    """
    baseline = baseline or {}
    out: SampleValues = {}
    for metric in BASELINE_MODEL_WIDE:
        out[("model_baseline", (model, metric, ""))] = number(baseline.get(metric))
    if out[("model_baseline", (model, "accuracy", ""))] is None:
        out[("model_baseline", (model, "accuracy", ""))] = number(holdout_accuracy)
    for cls, entry in (baseline.get("classes") or {}).items():
        for metric in BASELINE_PER_CLASS:
            out[("model_baseline", (model, metric, str(cls)))] = number(entry.get(metric))
    return out


def positive_class_samples(
    model: str, classes: Iterable[str], positive_class: str | None
) -> SampleValues:
    """``ml_model_positive_class``: 1 for a binary model's positive class, 0 for the other."""
    names = list(classes)
    if positive_class is None or len(names) != 2 or positive_class not in names:
        return {}
    return {("model_positive_class", (model, c)): float(c == positive_class) for c in names}


def export(metrics: Metrics, values: SampleValues, known: Iterable[Sample] = ()) -> set[Sample]:
    """Set every sample with a value; NaN for a ``known`` one that has none now.

    ``known``: samples exported before (by this process, or by whichever process wrote the
    previous stored result). Returns the samples now holding a value.
    """
    known = set(known)
    exported: set[Sample] = set()
    for sample in set(values) | known:
        field, labels = sample
        value = values.get(sample)
        if value is not None:
            getattr(metrics, field).labels(*labels).set(value)
            exported.add(sample)
        elif sample in known:
            getattr(metrics, field).labels(*labels).set(math.nan)
    return exported
