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

# Label draws of the parametric bootstrap behind each estimate's standard error: 200 puts the
# standard error itself within ~5 % (relative).
N_RESAMPLES = 200
# Bootstrap draws x rows per block: bounds the temporary arrays to a few tens of MB.
_BLOCK_CELLS = 2_000_000


Calibration = ConfidenceEstimator | Mapping[str, Any] | None


def calibrated_proba(proba: ArrayLike, calibration: Calibration = None) -> NDArray[np.float64]:
    """Class probabilities with the top class's replaced by its calibrated confidence.

    The profile's map gives P(the top class is right | top probability) — it was fitted on the
    holdout's argmax predictions. The top class gets that probability; the rest, 1 minus it, is
    shared among the other classes in proportion to their probabilities (evenly if those are
    all 0). When the served prediction is the top class (the argmax rule) this is the contract's
    "P(predicted class) = calibrated(confidence)"; under a binary threshold that serves the
    other class, its probability is 1 − calibrated(confidence), as it must be.
    ``calibration``: a fitted ConfidenceEstimator, or the reference profile to build one from
    (None, or a profile without a map: the probabilities are taken as calibrated).
    """
    p = np.asarray(proba, dtype=np.float64)
    n, k = p.shape
    rows = np.arange(n)
    top = p.argmax(axis=1)
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
class Resampled:
    """Realised metrics of each bootstrap draw of labels."""

    recall: NDArray[np.float64]  # resamples x classes
    precision: NDArray[np.float64]
    auc: NDArray[np.float64]  # resamples x classes with an AUC, in class order


def bootstrap_metrics(
    q: NDArray[np.float64],
    pred: NDArray[np.intp],
    n_pred: NDArray[np.intp],
    ranks: Mapping[int, NDArray[np.float64]],
    resamples: int,
    seed: int,
) -> Resampled:
    """Realised metrics of labels drawn from ``q``, accumulated block by block of rows.

    ``ranks`` maps each class whose one-vs-rest AUC is wanted to the midranks of its scores.
    The scores are fixed, so their ranks are too: each draw's AUC is the Mann-Whitney statistic
    (rank sum of its positives), one matrix product per block.
    """
    n, k = q.shape
    rng = np.random.default_rng(seed)
    tp = np.zeros((resamples, k))
    actual = np.zeros((resamples, k))
    rank_sum = np.zeros((resamples, k))
    cum = np.cumsum(q, axis=1)[:, :-1]  # the last class takes whatever is left above
    step = max(1, _BLOCK_CELLS // resamples)
    for start in range(0, n, step):
        stop = min(n, start + step)
        u = rng.random((resamples, stop - start))
        # The class drawn for each (resample, row): the first whose cumulative q exceeds u.
        drawn = (u[:, :, None] >= cum[None, start:stop, :]).sum(axis=2)
        hit = drawn == pred[None, start:stop]
        for c in range(k):
            is_c = drawn == c
            actual[:, c] += is_c.sum(axis=1)
            tp[:, c] += hit[:, pred[start:stop] == c].sum(axis=1)
            if c in ranks:
                rank_sum[:, c] += is_c.astype(np.float64) @ ranks[c][start:stop]
    cols = sorted(ranks)
    m = actual[:, cols]
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum[:, cols] - m * (m + 1) / 2) / (m * (n - m))
        return Resampled(recall=tp / actual, precision=tp / n_pred, auc=auc)
