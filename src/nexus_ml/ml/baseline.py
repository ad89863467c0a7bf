"""The typed form of a bundle's ``baseline``: the holdout's clinical metrics at its operating
point, as ``stats.clinical.realised(...).to_dict()`` writes them (checked field by field)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from nexus_ml.ml.strict import REL_TOL, Count, Name, Positive, Ratio, Strict


class IntervalEntry(Strict):
    """A proportion with its 95 % interval and denominator (value null below the minimum)."""

    value: Ratio | None
    lower: Ratio | None
    upper: Ratio | None
    n: Count

    @model_validator(mode="after")
    def _ordered(self) -> IntervalEntry:
        v, lo, hi = self.value, self.lower, self.upper
        if (
            v is not None
            and lo is not None
            and hi is not None
            and not lo - REL_TOL <= v <= hi + REL_TOL
        ):
            raise ValueError("an interval must hold its value (lower <= value <= upper)")
        return self


class ClassEntry(Strict):
    """One class's baseline metrics."""

    recall: IntervalEntry
    precision: IntervalEntry
    f1: Ratio | None
    prevalence: IntervalEntry
    positive_rate: IntervalEntry


class ReliabilityEntry(Strict):
    """One bin of the reliability curve."""

    lower: Ratio
    upper: Ratio
    mean_predicted: Ratio | None
    observed: Ratio | None
    count: Count


class Baseline(Strict):
    """The holdout's clinical metrics at the operating point (``Realised.to_dict()``)."""

    n: Positive
    classes: dict[Name, ClassEntry]
    accuracy: IntervalEntry
    roc_auc: IntervalEntry
    # Binary: in [0, 1]; scikit-learn's multiclass Brier score reaches 2.
    brier_score: Annotated[float, Field(ge=0.0, le=2.0)] | None
    calibration_error: Ratio | None
    reliability: Annotated[list[ReliabilityEntry], Field(max_length=100)]

    @model_validator(mode="after")
    def _consistent(self) -> Baseline:
        if sum(b.count for b in self.reliability) > self.n:
            raise ValueError("reliability counts add up to more than n")
        return self
