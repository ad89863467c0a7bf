"""Promotion policy per model, and the evaluation of a candidate against the champion.

``manual`` (the default): a retrained version waits for a person's promote. ``auto``: it is
promoted when, on the very rows the candidate was held out on, it is no worse than the champion
minus a tolerance on accuracy, on the positive class's recall (each class's recall for
multiclass models) and on that recall within each declared segment group. A schema change
is never promoted automatically (``ml.compat``). Policies come from a small TOML file
(``ML_PROMOTION_POLICY_FILE``)::

    [default]
    mode = "manual"

    [models.diagnostic]
    mode = "auto"
    accuracy_tolerance = 0.01
    recall_tolerance = 0.02
    segment_recall_tolerance = 0.05
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nexus_ml.ml.segments import ALL, SegmentIndex
from nexus_ml.ml.training import Holdout, OperatingPoint, score_rows

Tolerance = Annotated[float, Field(ge=0.0, le=1.0)]
# A segment group with fewer holdout rows of the class than this is reported, not judged:
# its recall moves by 1/n with one patient.
MIN_SEGMENT_CASES = 5


class Policy(BaseModel):
    """One model's promotion policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["manual", "auto"] = "manual"
    accuracy_tolerance: Tolerance = 0.01
    recall_tolerance: Tolerance = 0.02
    segment_recall_tolerance: Tolerance = 0.05


class PolicyBook(BaseModel):
    """The default policy and per-model ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Policy = Policy()
    models: dict[str, Policy] = Field(default_factory=dict)

    def for_model(self, name: str) -> Policy:
        """``name``'s policy (the default if it has none of its own)."""
        return self.models.get(name, self.default)


class PolicyError(ValueError):
    """The policy file cannot be read or breaks a rule (the message names the key)."""


def load_policies(path: str | os.PathLike[str] | None) -> PolicyBook:
    """The policies in ``path`` (TOML), or the default book (every model manual) if None."""
    if path is None:
        return PolicyBook()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        return PolicyBook.model_validate(data)
    except OSError as exc:
        raise PolicyError(f"promotion policy file unreadable ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"promotion policy file is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"promotion policy {where}: {first['msg']}") from None


@dataclass(frozen=True)
class Scores:
    """What a policy compares: accuracy, recall per class, and per segment group."""

    accuracy: float
    recall: dict[str, float | None]
    # segment label -> (class -> recall), with the class's row count in the group.
    segments: dict[str, dict[str, tuple[float | None, int]]]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the report."""
        return {
            "accuracy": self.accuracy,
            "recall": self.recall,
            "segments": {
                label: {c: {"recall": r, "n": n} for c, (r, n) in by_class.items()}
                for label, by_class in self.segments.items()
            },
        }


def _recall(actual: np.ndarray, predicted: np.ndarray, cls: str) -> tuple[float | None, int]:
    cases = actual == cls
    n = int(cases.sum())
    return (float(np.mean(predicted[cases] == cls)) if n else None), n


def score_holdout(
    pipeline: Any,
    holdout: Holdout,
    point: OperatingPoint,
    *,
    feature_names: Sequence[str],
    segments: SegmentIndex | None,
) -> Scores:
    """Score ``pipeline`` at ``point`` on ``holdout``, overall and per segment group."""
    scored = score_rows(pipeline, holdout.X, holdout.y, point)
    actual = np.asarray(holdout.y).astype(str)
    classes = [str(c) for c in pipeline.classes_]
    recall = {c: _recall(actual, scored.predicted, c)[0] for c in classes}
    by_segment: dict[str, dict[str, tuple[float | None, int]]] = {}
    if segments is not None and segments.segments:
        for label, mask in segments.masks(_rows(holdout.X, feature_names)).items():
            if label == ALL:
                continue
            by_segment[label] = {
                c: _recall(actual[mask], scored.predicted[mask], c) for c in classes
            }
    return Scores(accuracy=scored.accuracy, recall=recall, segments=by_segment)


def _rows(X: Any, names: Sequence[str]) -> list[Mapping[str, Any]]:
    if hasattr(X, "to_dict"):  # a DataFrame (typed tables)
        return list(X.to_dict("records"))
    return [dict(zip(names, row, strict=True)) for row in np.asarray(X).tolist()]


@dataclass(frozen=True)
class Criterion:
    """One comparison: candidate ≥ champion − tolerance."""

    metric: str
    candidate: float | None
    champion: float | None
    tolerance: float
    passed: bool | None  # None: not judged (too few cases, or no value)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "metric": self.metric,
            "candidate": self.candidate,
            "champion": self.champion,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


def _judge(metric: str, cand: float | None, champ: float | None, tol: float) -> Criterion:
    passed = None if cand is None or champ is None else cand >= champ - tol - 1e-12
    return Criterion(metric, cand, champ, tol, passed)


def compare(
    candidate: Scores, champion: Scores, policy: Policy, *, positive_class: str | None
) -> list[Criterion]:
    """Every criterion of ``policy`` on the two scores (the same rows)."""
    judged = [positive_class] if positive_class is not None else sorted(candidate.recall)
    out = [_judge("accuracy", candidate.accuracy, champion.accuracy, policy.accuracy_tolerance)]
    for cls in judged:
        out.append(
            _judge(
                f"recall[{cls}]",
                candidate.recall.get(cls),
                champion.recall.get(cls),
                policy.recall_tolerance,
            )
        )
    for label in sorted(candidate.segments):
        for cls in judged:
            cand, n = candidate.segments[label].get(cls, (None, 0))
            champ, _ = champion.segments.get(label, {}).get(cls, (None, 0))
            criterion = _judge(
                f"recall[{cls}]@{label}", cand, champ, policy.segment_recall_tolerance
            )
            if n < MIN_SEGMENT_CASES:
                criterion = Criterion(criterion.metric, cand, champ, criterion.tolerance, None)
            out.append(criterion)
    return out


def accepted(criteria: Sequence[Criterion]) -> bool:
    """True when no judged criterion failed."""
    return all(c.passed is not False for c in criteria)
