"""Model performance: realised accuracy from labels, and accuracy estimated without labels.

The estimate follows NannyML's confidence-based performance estimation (CBPE): if the model's
confidence is calibrated, the probability that a prediction is right equals its calibrated
confidence, so expected accuracy is their mean. Each prediction is then a Bernoulli(p_i), which
gives the standard error sqrt(sum p_i (1 - p_i)) / n. CBPE stays right under covariate shift
(P(y | x) unchanged) as long as calibration holds; it cannot see concept drift.

The calibration map is fitted on the holdout when the model is trained (isotonic regression of
correctness on confidence, stored in the reference profile as breakpoints) because the bundle
keeps no raw rows; here it is only applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True, slots=True)
class AccuracyResult:
    """Realised accuracy over a window of labelled predictions."""

    accuracy: float | None  # None when the window holds no labelled prediction
    n: int


@dataclass(frozen=True, slots=True)
class AccuracyEstimate:
    """Estimated accuracy of unlabelled predictions, with its standard error."""

    accuracy: float | None
    stderr: float | None
    n: int


def realised_accuracy(predicted: ArrayLike, actual: ArrayLike) -> AccuracyResult:
    """Share of predictions equal to the label, with the number of pairs behind it."""
    pred, act = np.asarray(predicted), np.asarray(actual)
    if pred.shape != act.shape:
        raise ValueError(f"predicted and actual differ in shape: {pred.shape} vs {act.shape}")
    if pred.size == 0:
        return AccuracyResult(None, 0)
    return AccuracyResult(float(np.mean(pred == act)), int(pred.size))


class ConfidenceEstimator:
    """CBPE for accuracy: calibrate confidence on the reference once, estimate per window."""

    x_: NDArray[np.float64]  # calibration breakpoints (confidence)
    y_: NDArray[np.float64]  # calibrated probability of being right at each breakpoint
    calibrated_: bool

    def __init__(self, *, calibrate: bool = True) -> None:
        self.calibrate = calibrate

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any], **kwargs: Any) -> ConfidenceEstimator:
        """An estimator fitted on a profile's confidence section (identity if it has no map)."""
        return cls(**kwargs).fit_profile(profile)

    def fit_profile(self, profile: Mapping[str, Any]) -> ConfidenceEstimator:
        """Use the calibration map of ``profile["confidence"]`` when there is one."""
        conf = profile.get("confidence") or {}
        cal = conf.get("calibration")
        if self.calibrate and cal and cal.get("x"):
            self.x_ = np.asarray(cal["x"], dtype=np.float64)
            self.y_ = np.asarray(cal["y"], dtype=np.float64)
            self.calibrated_ = True
        else:
            self._identity()
        return self

    def _identity(self) -> None:
        self.x_ = np.array([0.0, 1.0])
        self.y_ = np.array([0.0, 1.0])
        self.calibrated_ = False

    def calibrated(self, confidence: ArrayLike) -> NDArray[np.float64]:
        """Probability that each prediction is right, from its confidence."""
        c = np.asarray(confidence, dtype=np.float64).ravel()
        # Beyond the fitted range np.interp holds the end values: the nearest observed rate.
        return np.asarray(np.interp(c, self.x_, self.y_), dtype=np.float64)

    def estimate(self, confidence: ArrayLike) -> AccuracyEstimate:
        """Expected accuracy of a window of predictions and its standard error."""
        p = self.calibrated(confidence)
        n = int(p.size)
        if n == 0:
            return AccuracyEstimate(None, None, 0)
        stderr = float(np.sqrt(np.sum(p * (1.0 - p))) / n)
        return AccuracyEstimate(float(p.mean()), stderr, n)
