"""Clinical performance at the operating point: realised from labels, estimated without them.

Arrays in, numbers out. The service calls :func:`realised` and :func:`estimated` once per segment
(``all`` and each ``<feature>=<group>``) on the rows its mask selects; the model layer stores
``realised(...)`` of the holdout as the bundle's baseline. docs/clinical-metrics.md explains each
metric, interval and the estimate with references.

Conventions, decided here:

- Every metric is computed from the stored ``predicted`` class (what the clinician was shown),
  so it holds at the operating point the service served with, threshold or argmax.
- A value whose denominator ``n`` is below ``min_count`` is ``None`` (and so are its bounds);
  ``n`` is always reported. A denominator of 0 gives ``None`` whatever ``min_count`` is.
- Per class (one-vs-rest): recall = TP / actual (sensitivity; the other class's recall is the
  specificity), precision = TP / predicted (PPV; the other class's is the NPV), F1 =
  2TP / (2TP + FP + FN) — ``None`` when the class has fewer than ``min_count`` actual rows
  (scikit-learn reports 0 with a warning when it has none) — prevalence = actual / n, positive
  rate = predicted / n (the alert burden). Proportions carry 95 % Wilson intervals.
- ROC AUC: binary, of the positive class's probability (the same number for either class when
  the rows sum to 1); multiclass, the macro one-vs-rest mean, defined only when every class
  occurs (as in scikit-learn). Both with a DeLong interval on the logit scale (for the macro
  mean, DeLong's terms averaged per row over the classes: ``intervals.macro_auc_delong``).
- Brier score: half the squared distance between the probability vector and the one-hot label,
  averaged — for a binary model exactly ``brier_score_loss`` on P(positive), for multiclass
  ``brier_score_loss(..., scale_by_half=True)``; both lie in [0, 1].
- Reliability: 10 equal-width bins of [0, 1] ([lo, hi), the last closed). Binary: P(positive)
  against the observed positive share; multiclass: the probability of the predicted class
  against the share of predictions that were right (top-label). Expected calibration error is
  the count-weighted mean gap |mean predicted − observed| over the bins (Naeini et al. 2015).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.stats import rankdata

from nexus_ml.stats.cbpe import (
    Calibration,
    calibrated_proba,
    expected_auc,
    standard_errors,
)
from nexus_ml.stats.intervals import (
    auc_delong,
    auc_interval,
    macro_auc_delong,
    wilson_interval,
)

N_RELIABILITY_BINS = 10
RELIABILITY_EDGES = np.round(np.linspace(0.0, 1.0, N_RELIABILITY_BINS + 1), 2)


@dataclass(frozen=True, slots=True)
class Interval:
    """A metric with its 95 % interval; ``value`` None when ``n`` < the minimum count."""

    value: float | None
    lower: float | None
    upper: float | None
    n: int  # the denominator

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"value": self.value, "lower": self.lower, "upper": self.upper, "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Interval:
        """Inverse of :meth:`to_dict`."""
        return cls(d.get("value"), d.get("lower"), d.get("upper"), int(d.get("n", 0)))


@dataclass(frozen=True, slots=True)
class Estimate:
    """A label-free estimate (CBPE) with its standard error."""

    value: float | None
    stderr: float | None
    n: int  # the (expected) denominator, rounded

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"value": self.value, "stderr": self.stderr, "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict`."""
        return cls(d.get("value"), d.get("stderr"), int(d.get("n", 0)))


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One bin of the reliability curve; means None below the minimum count."""

    lower: float
    upper: float
    mean_predicted: float | None
    observed: float | None
    count: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "mean_predicted": self.mean_predicted,
            "observed": self.observed,
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """One class's metrics at the operating point (one-vs-rest)."""

    recall: Interval
    precision: Interval
    f1: float | None
    prevalence: Interval  # share of labelled rows whose actual class is this one
    positive_rate: Interval  # share of rows predicted as this class (alert burden)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "recall": self.recall.to_dict(),
            "precision": self.precision.to_dict(),
            "f1": self.f1,
            "prevalence": self.prevalence.to_dict(),
            "positive_rate": self.positive_rate.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class Realised:
    """Metrics of labelled predictions, each with its count and interval."""

    n: int  # labelled rows
    classes: dict[str, ClassMetrics]  # every class of the model, in model order
    accuracy: Interval
    roc_auc: Interval
    brier_score: float | None
    calibration_error: float | None
    reliability: list[ReliabilityBin]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (None, never NaN)."""
        return {
            "n": self.n,
            "classes": {c: m.to_dict() for c, m in self.classes.items()},
            "accuracy": self.accuracy.to_dict(),
            "roc_auc": self.roc_auc.to_dict(),
            "brier_score": self.brier_score,
            "calibration_error": self.calibration_error,
            "reliability": [b.to_dict() for b in self.reliability],
        }


@dataclass(frozen=True, slots=True)
class Estimated:
    """Label-free estimates of recall, precision (per class) and ROC AUC."""

    n: int  # rows (predictions) in the window
    recall: dict[str, Estimate]
    precision: dict[str, Estimate]
    roc_auc: Estimate

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (None, never NaN)."""
        return {
            "n": self.n,
            "recall": {c: e.to_dict() for c, e in self.recall.items()},
            "precision": {c: e.to_dict() for c, e in self.precision.items()},
            "roc_auc": self.roc_auc.to_dict(),
        }


def proportion(successes: int, trials: int, *, min_count: int = 1) -> Interval:
    """A proportion with its 95 % Wilson interval (None below ``min_count`` trials)."""
    _check_min_count(min_count)
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    return _proportions(np.array([successes]), np.array([trials]), min_count)[0]


def realised(
    actual: ArrayLike,
    predicted: ArrayLike,
    proba: ArrayLike,
    classes: Sequence[str],
    *,
    positive_class: str | None,
    min_count: int = 1,
) -> Realised:
    """Realised clinical metrics of labelled predictions (module docstring: definitions).

    ``actual``/``predicted`` are class names, ``proba`` an (n, k) array with columns in
    ``classes`` order. ``positive_class`` (binary models only; None takes the second class)
    orients the reliability curve. Raises ValueError on a label outside ``classes`` or
    mismatched shapes.
    """
    labels = _check_classes(classes)
    k = len(labels)
    pos = _positive_index(labels, positive_class)
    act = _indices(actual, labels, "actual")
    pred = _indices(predicted, labels, "predicted")
    n = int(act.size)
    if pred.size != n:
        raise ValueError(f"actual has {n} rows but predicted has {pred.size}")
    p = _check_proba(proba, n, k)
    _check_min_count(min_count)
    cm = np.bincount(act * k + pred, minlength=k * k).reshape(k, k)  # rows actual, cols predicted
    tp, n_actual, n_pred = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    recall = _proportions(tp, n_actual, min_count)
    precision = _proportions(tp, n_pred, min_count)
    prevalence = _proportions(n_actual, np.full(k, n), min_count)
    positive_rate = _proportions(n_pred, np.full(k, n), min_count)
    f1_denom = n_actual + n_pred  # 2TP + FP + FN
    per_class = {
        c: ClassMetrics(
            recall=recall[j],
            precision=precision[j],
            f1=_f1(tp[j], f1_denom[j], n_actual[j], min_count),
            prevalence=prevalence[j],
            positive_rate=positive_rate[j],
        )
        for j, c in enumerate(labels)
    }
    enough = n >= min_count  # min_count >= 1, so never on an empty window
    onehot = act[:, None] == np.arange(k)
    brier = float(np.mean(np.sum(np.square(p - onehot), axis=1)) / 2.0) if enough else None
    if pos is not None:
        score, outcome = p[:, pos], act == pos
    else:
        score, outcome = p[np.arange(n), pred], act == pred
    bins, ece = _reliability(score, outcome, min_count)
    return Realised(
        n=n,
        classes=per_class,
        accuracy=_proportions(np.array([tp.sum()]), np.array([n]), min_count)[0],
        roc_auc=_realised_auc(p, act, pos, min_count),
        brier_score=brier,
        calibration_error=ece if enough else None,
        reliability=bins,
    )


def estimated(
    predicted: ArrayLike,
    proba: ArrayLike,
    classes: Sequence[str],
    *,
    calibration: Calibration,
    positive_class: str | None,
    min_count: int = 1,
) -> Estimated:
    """Recall, precision and ROC AUC of unlabelled predictions, by CBPE.

    ``calibration`` is the fitted :class:`ConfidenceEstimator`, or the reference profile it
    is built from (None: the model's probabilities taken as calibrated). Each row's class
    probabilities are calibrated (:func:`calibrated_proba`); the expected confusion matrix
    follows — E[TP_c] = Σ over rows predicted c of q(c), E[actual c] = Σ q(c) — and recall =
    E[TP] / E[actual], precision = E[TP] / predicted (NannyML's CBPE). The AUC is the area under
    the expected ROC curve: at each score threshold, expected TPR = Σ q above it / Σ q, expected
    FPR likewise with 1 − q. Binary: of the positive class; multiclass: the macro one-vs-rest mean.

    Each ``stderr`` is the standard deviation the realised value would show if every row's
    label were drawn from its calibrated probabilities — how far realised may fall from the
    estimate by chance — not the error of the calibration map itself (CBPE cannot see concept
    drift). It is computed by the delta method (:func:`stats.cbpe.standard_errors`), the
    closed form of the parametric (Bernoulli) bootstrap the contract suggested: as close to
    simulated labels, deterministic, and O(n) where the bootstrap cost ten times the rest of
    the estimate. A value is None when its expected denominator is below ``min_count``.
    """
    labels = _check_classes(classes)
    k = len(labels)
    pos = _positive_index(labels, positive_class)
    pred = _indices(predicted, labels, "predicted")
    n = int(pred.size)
    p = _check_proba(proba, n, k)
    _check_min_count(min_count)
    q = calibrated_proba(p, calibration, served=pred)
    rows = np.arange(n)
    n_pred = np.bincount(pred, minlength=k)
    exp_tp = np.bincount(pred, weights=q[rows, pred], minlength=k)
    exp_actual = q.sum(axis=0)
    # One-vs-rest AUCs: the positive class only for a binary model, every class otherwise.
    auc_cols = [pos] if pos is not None else list(range(k))
    ranks = {c: rankdata(p[:, c]) for c in auc_cols}
    exp_auc = np.array([expected_auc(p[:, c], q[:, c]) for c in auc_cols])
    se = standard_errors(q, pred, ranks)
    # A zero denominator has a zero numerator here (each is a sum over the same rows), so the
    # only case is 0/0, NumPy's "invalid"; a "divide" (x/0 with x != 0) cannot happen.
    with np.errstate(invalid="ignore"):
        recall = exp_tp / exp_actual
        precision = exp_tp / n_pred
    recall_out, precision_out = {}, {}
    for j, c in enumerate(labels):
        recall_out[c] = _estimate(recall[j], se.recall[j], exp_actual[j], min_count)
        precision_out[c] = _estimate(precision[j], se.precision[j], n_pred[j], min_count)
    auc = _estimate(np.mean(exp_auc), se.auc, n, min_count)
    return Estimated(n=n, recall=recall_out, precision=precision_out, roc_auc=auc)


def _estimate(value: Any, stderr: Any, denom: Any, min_count: int) -> Estimate:
    n = round(float(denom))
    if float(denom) < min_count or not np.isfinite(value):
        return Estimate(None, None, n)
    return Estimate(float(value), _num(stderr), n)


def _realised_auc(
    p: NDArray[np.float64], act: NDArray[np.intp], pos: int | None, min_count: int
) -> Interval:
    n, k = p.shape
    if n < min_count:
        return Interval(None, None, None, n)
    if pos is not None:
        y = act == pos
        auc, se = auc_delong(p[:, pos], y)
        lo, hi = auc_interval(auc, se, np.count_nonzero(y), n - np.count_nonzero(y))
        return Interval(_num(auc), _num(lo), _num(hi), n)
    macro, macro_se = macro_auc_delong(p, act)
    smallest = int(np.bincount(act, minlength=k).min())
    lo, hi = auc_interval(macro, macro_se, smallest, smallest)
    return Interval(_num(macro), _num(lo), _num(hi), n)  # None if a class is absent


def _reliability(
    score: NDArray[np.float64], outcome: NDArray[np.bool_], min_count: int
) -> tuple[list[ReliabilityBin], float | None]:
    """Equal-width reliability bins and the expected calibration error over them."""
    b = np.clip(
        np.searchsorted(RELIABILITY_EDGES, score, side="right") - 1, 0, N_RELIABILITY_BINS - 1
    )
    count = np.bincount(b, minlength=N_RELIABILITY_BINS)
    with np.errstate(invalid="ignore"):  # an empty bin is 0/0, as in estimated()
        mean_pred = np.bincount(b, weights=score, minlength=N_RELIABILITY_BINS) / count
        observed = np.bincount(b, weights=outcome, minlength=N_RELIABILITY_BINS) / count
    shown = count >= min_count
    bins = [
        ReliabilityBin(
            lower=float(RELIABILITY_EDGES[i]),
            upper=float(RELIABILITY_EDGES[i + 1]),
            mean_predicted=_num(mean_pred[i]) if shown[i] else None,
            observed=_num(observed[i]) if shown[i] else None,
            count=int(count[i]),
        )
        for i in range(N_RELIABILITY_BINS)
    ]
    n = int(count.sum())
    if n == 0:
        return bins, None
    gaps = np.abs(mean_pred - observed)[count > 0]
    return bins, float(np.dot(count[count > 0], gaps) / n)


def _f1(tp: int, denom: int, support: int, min_count: int) -> float | None:
    if support < min_count:
        return None
    return float(2.0 * tp / denom)


def _proportions(successes: NDArray[Any], trials: NDArray[Any], min_count: int) -> list[Interval]:
    """Wilson intervals for many proportions at once, None below ``min_count`` trials."""
    lower, upper = wilson_interval(successes, trials)
    out = []
    for k, n, lo, hi in zip(
        successes.tolist(), trials.tolist(), lower.tolist(), upper.tolist(), strict=True
    ):
        if n < min_count:
            out.append(Interval(None, None, None, int(n)))
        else:
            out.append(Interval(k / n, lo, hi, int(n)))
    return out


def _num(x: Any) -> float | None:
    """A finite float, or None (JSON and gauges never see NaN)."""
    v = float(x)
    return v if np.isfinite(v) else None


def _check_classes(classes: Sequence[str]) -> list[str]:
    labels = [str(c) for c in classes]
    if len(labels) < 2:
        raise ValueError("a classifier has at least 2 classes")
    if len(set(labels)) != len(labels):
        raise ValueError(f"classes repeat a name: {labels}")
    return labels


def _positive_index(labels: list[str], positive_class: str | None) -> int | None:
    """Column of the positive class: binary only; None means the second class there."""
    if len(labels) > 2:
        if positive_class is not None:
            raise ValueError("a positive class is defined for binary models only")
        return None
    if positive_class is None:
        return 1
    if positive_class not in labels:
        raise ValueError(f"positive class {positive_class!r} is not one of {labels}")
    return labels.index(positive_class)


def _indices(values: ArrayLike, labels: list[str], what: str) -> NDArray[np.intp]:
    """Column index of each class name; ValueError names an unknown one."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional")
    arr = arr.astype(str)
    order = np.argsort(np.asarray(labels))
    sorted_labels = np.asarray(labels)[order]
    # searchsorted is never negative; past the last name it is len(labels), kept in range
    # for the comparison below, which then refuses the name.
    pos = np.minimum(np.searchsorted(sorted_labels, arr), len(labels) - 1)
    bad = sorted_labels[pos] != arr
    if bad.any():
        raise ValueError(f"{what} holds a class that is not the model's: {str(arr[bad][0])!r}")
    return order[pos]  # argsort's indices are np.intp already


def _check_proba(proba: ArrayLike, n: int, k: int) -> NDArray[np.float64]:
    p = np.asarray(proba, dtype=np.float64)
    if n == 0 and p.size == 0:
        return np.zeros((0, k))
    if p.shape != (n, k):
        raise ValueError(f"proba must be {n} x {k} (rows x classes), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("proba holds a value that is not a finite number")
    return p


def _check_min_count(min_count: int) -> None:
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
