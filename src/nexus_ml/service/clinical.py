"""Clinical performance per segment: stored rows in, the result the job stores and the API shows.

One :class:`ClinicalEvaluator` per model version holds what does not change between windows
(classes, operating point, declared segments, the profile's confidence calibration). Each
evaluation takes two sets of stored rows:

* **labelled** predictions (with their labels): the realised metrics, with intervals;
* the **window** of recent predictions (labelled or not): the label-free estimates (CBPE) and
  the positive rate — how often the model raises each class is a property of everything it
  answered, not of the few answers someone labelled.

Rows whose stored classes or probabilities do not fit the model (a prediction of an older
version with other classes, a label naming a class the model does not have) are left out and
counted in ``excluded``. A segment is ``all`` or ``<feature>=<group>`` from the model's
declared, closed set (never free text), capped at ``ML_SEGMENT_MAX_GROUPS`` groups.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from nexus_ml.ml.registry import LoadedModel
from nexus_ml.ml.segments import ALL, SegmentIndex
from nexus_ml.stats.clinical import estimated, proportion, realised
from nexus_ml.stats.performance import ConfidenceEstimator

log = logging.getLogger("nexus_ml.quality")


class StoredRow(Protocol):
    """What the evaluator reads of a stored prediction (WindowRow, ScoredRow, ...)."""

    @property
    def features(self) -> dict[str, Any] | None: ...
    @property
    def predicted_class(self) -> str: ...
    @property
    def probabilities(self) -> dict[str, Any] | None: ...


class LabelledRow(StoredRow, Protocol):
    """A stored prediction with its label (LabelledPrediction, a labelled ScoredRow)."""

    @property
    def actual(self) -> str | None: ...


# Stored feature maps -> segment label -> boolean mask over those rows ("all" included).
Segmenter = Callable[[list[dict[str, Any]]], dict[str, NDArray[np.bool_]]]


@dataclass(frozen=True, slots=True)
class _Rows:
    """Stored rows that fit the model, as arrays: features, predicted, actual, probabilities."""

    features: list[dict[str, Any]]
    predicted: NDArray[np.str_]
    actual: NDArray[np.str_] | None
    proba: NDArray[np.float64]
    excluded: int


class ClinicalEvaluator:
    """Realised and estimated clinical metrics of one model version, per segment."""

    def __init__(
        self,
        *,
        classes: Sequence[str],
        positive_class: str | None,
        threshold: float | None,
        calibration: ConfidenceEstimator,
        segmenter: Segmenter,
        min_count: int,
        max_groups: int,
    ) -> None:
        self.classes = [str(c) for c in classes]
        self.positive_class = positive_class if len(self.classes) == 2 else None
        self.threshold = threshold
        self.min_count = min_count
        self._calibration = calibration
        self._segmenter = segmenter
        self._max_groups = max_groups

    @classmethod
    def for_model(
        cls, loaded: LoadedModel, *, min_count: int, max_groups: int
    ) -> ClinicalEvaluator:
        """The evaluator of a loaded model, from its metadata."""
        info = loaded.info
        return cls(
            classes=loaded.classes,
            positive_class=info.positive_class,
            threshold=info.threshold,
            calibration=ConfidenceEstimator.from_profile(loaded.metadata.get("profile") or {}),
            segmenter=SegmentIndex.from_metadata(info).masks,
            min_count=min_count,
            max_groups=max_groups,
        )

    def evaluate(
        self, labelled: Sequence[LabelledRow], window: Sequence[StoredRow]
    ) -> dict[str, Any]:
        """Every metric for ``all`` and each segment (JSON-safe: None, never NaN)."""
        lab = self._rows(
            [r.features or {} for r in labelled],
            [r.predicted_class for r in labelled],
            [r.probabilities or {} for r in labelled],
            [r.actual or "" for r in labelled],
        )
        win = self._rows(
            [r.features or {} for r in window],
            [r.predicted_class for r in window],
            [r.probabilities or {} for r in window],
            None,
        )
        lab_masks, win_masks = self._masks(lab.features), self._masks(win.features)
        segments = [
            self._segment(label, lab, lab_masks[label], win, win_masks[label])
            for label in lab_masks
        ]
        return {
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "classes": list(self.classes),
            "min_count": self.min_count,
            "excluded": {"labelled": lab.excluded, "predictions": win.excluded},
            "segments": segments,
        }

    def _masks(self, features: list[dict[str, Any]]) -> dict[str, NDArray[np.bool_]]:
        """``all`` first, then the declared groups, at most ``max_groups`` of them."""
        masks = self._segmenter(features)
        groups = [label for label in masks if label != ALL]
        if len(groups) > self._max_groups:
            log.warning(
                "segment groups beyond ML_SEGMENT_MAX_GROUPS are not reported",
                extra={"declared": len(groups), "max_groups": self._max_groups},
            )
            groups = groups[: self._max_groups]
        everyone = masks.get(ALL, np.ones(len(features), dtype=bool))
        return {ALL: everyone} | {label: masks[label] for label in groups}

    def _rows(
        self,
        features: list[dict[str, Any]],
        predicted: list[str],
        probabilities: list[Mapping[str, Any]],
        actual: list[str] | None,
    ) -> _Rows:
        """The rows whose classes and probabilities fit this model, as arrays."""
        k = len(self.classes)
        # One pass: a stored probability is the service's own float; anything else (absent,
        # text, bool) becomes NaN and leaves its row out.
        proba = np.fromiter(
            (
                v if type(v) in (float, int) else math.nan
                for probs in probabilities
                for v in (probs.get(c) for c in self.classes)
            ),
            dtype=np.float64,
            count=len(probabilities) * k,
        ).reshape(len(probabilities), k)
        pred = np.asarray(predicted, dtype=str)
        keep = np.isfinite(proba).all(axis=1) & np.isin(pred, self.classes)
        act = None
        if actual is not None:
            act = np.asarray(actual, dtype=str)
            keep &= np.isin(act, self.classes)
            act = act[keep]
        return _Rows(
            features=[f for f, k in zip(features, keep.tolist(), strict=True) if k],
            predicted=pred[keep],
            actual=act,
            proba=proba[keep],
            excluded=int(keep.size - keep.sum()),
        )

    def _segment(
        self,
        label: str,
        lab: _Rows,
        lab_mask: NDArray[np.bool_],
        win: _Rows,
        win_mask: NDArray[np.bool_],
    ) -> dict[str, Any]:
        """One segment's entry: realised on its labelled rows, estimated on its window rows."""
        actual = cast(NDArray[np.str_], lab.actual)  # labelled rows always carry their label
        real = realised(
            actual[lab_mask],
            lab.predicted[lab_mask],
            lab.proba[lab_mask],
            self.classes,
            positive_class=self.positive_class,
            min_count=self.min_count,
        ).to_dict()
        predicted = win.predicted[win_mask]
        est = estimated(
            predicted,
            win.proba[win_mask],
            self.classes,
            calibration=self._calibration,
            positive_class=self.positive_class,
            min_count=self.min_count,
        ).to_dict()
        n = int(predicted.size)
        classes = {}
        for c in self.classes:
            rate = proportion(int(np.sum(predicted == c)), n, min_count=self.min_count)
            classes[c] = {
                **real["classes"][c],
                "positive_rate": rate.to_dict(),
                "recall_estimated": est["recall"][c],
                "precision_estimated": est["precision"][c],
            }
        return {
            "segment": label,
            "labelled": real["n"],
            "predictions": n,
            "accuracy": real["accuracy"],
            "classes": classes,
            "roc_auc": real["roc_auc"],
            "roc_auc_estimated": est["roc_auc"],
            "brier_score": real["brier_score"],
            "calibration_error": real["calibration_error"],
            "reliability": real["reliability"],
        }
