"""The clinical evaluator on hand-made stored rows: what it leaves out, and the group cap."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import recall_score

from nexus_ml.service.clinical import ClinicalEvaluator
from nexus_ml.stats.performance import ConfidenceEstimator
from nexus_ml.storage.records import LabelledPrediction, WindowRow, utcnow

CLASSES = ("neg", "pos")


def by_site(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """A segmenter over a ``site`` feature with groups a, b, c (declared order)."""
    site = np.array([r.get("site") for r in rows], dtype=object)
    return {"all": np.ones(len(rows), dtype=bool)} | {f"site={s}": site == s for s in "abc"}


def evaluator(max_groups: int = 16) -> ClinicalEvaluator:
    return ClinicalEvaluator(
        classes=CLASSES,
        positive_class="pos",
        threshold=None,
        calibration=ConfidenceEstimator(calibrate=False).fit_profile({}),
        segmenter=by_site,
        min_count=1,
        max_groups=max_groups,
    )


def labelled(i: int, predicted: str, actual: str, probs: dict[str, Any]) -> LabelledPrediction:
    now = utcnow()
    site = "abc"[i % 3]
    p = max(v for v in probs.values() if isinstance(v, float)) if probs else 0.5
    return LabelledPrediction(
        f"{i:032x}", now, "v1", predicted, p, actual, predicted == actual, now, {"site": site},
        probs,
    )  # fmt: skip


def window(rows: list[LabelledPrediction]) -> list[WindowRow]:
    return [
        WindowRow(r.features or {}, r.confidence, r.predicted_class, r.created_at,
                  r.probabilities or {})
        for r in rows
    ]  # fmt: skip


def good_rows(n: int = 60) -> list[LabelledPrediction]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        p = float(rng.uniform(0.05, 0.95))
        predicted = "pos" if p >= 0.5 else "neg"
        actual = "pos" if rng.uniform() < p else "neg"
        out.append(labelled(i, predicted, actual, {"neg": 1 - p, "pos": p}))
    return out


def test_rows_that_do_not_fit_the_model_are_left_out_and_counted() -> None:
    good = good_rows()
    bad = [
        labelled(900, "pos", "maybe", {"neg": 0.2, "pos": 0.8}),  # a label the model lacks
        labelled(901, "other", "pos", {"neg": 0.2, "other": 0.8}),  # an older version's class
        labelled(902, "pos", "pos", {"neg": 0.2}),  # a probability missing
        labelled(903, "pos", "pos", {"neg": "0.2", "pos": 0.8}),  # not a number
        labelled(904, "pos", "neg", {"neg": float("nan"), "pos": 0.8}),
    ]
    result = evaluator().evaluate(good + bad, window(good + bad))
    # The label "maybe" is checked only where there are labels: the window keeps that row.
    assert result["excluded"] == {"labelled": 5, "predictions": 4}
    everyone = result["segments"][0]
    assert everyone["labelled"] == len(good) and everyone["predictions"] == len(good) + 1
    want = recall_score(
        [r.actual for r in good], [r.predicted_class for r in good], pos_label="pos"
    )
    assert everyone["classes"]["pos"]["recall"]["value"] == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("cap", "reported"), [(16, 3), (2, 2), (1, 1)])
def test_groups_beyond_the_cap_are_not_reported(cap: int, reported: int) -> None:
    rows = good_rows()
    result = evaluator(max_groups=cap).evaluate(rows, window(rows))
    labels = [s["segment"] for s in result["segments"]]
    assert labels == ["all", *[f"site={s}" for s in "abc"][:reported]]  # declared order kept
