"""A decision threshold is served by every predictor kind, exactly at the boundary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from nexus_ml.ml.bundle import load_bundle, save_bundle
from nexus_ml.ml.predictor import Predictor, ThresholdPredictor, compile_predictor
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.ml.training import TrainResult

pytestmark = pytest.mark.usefixtures("one_openmp_thread")

PIPELINES: dict[str, tuple[str, Callable[[], Pipeline]]] = {
    "folded-logistic": (
        "binary",
        lambda: Pipeline([("s", StandardScaler()), ("c", LogisticRegression())]),
    ),
    "linear-fallback": (
        "fallback",
        lambda: Pipeline([("s", MinMaxScaler()), ("c", LogisticRegression())]),
    ),
    "naive-bayes": ("fallback", lambda: Pipeline([("c", GaussianNB())])),
    "forest": (
        "trees",
        lambda: Pipeline([("c", RandomForestClassifier(n_estimators=20, random_state=0))]),
    ),
    "boosting": (
        "trees",
        lambda: Pipeline([("c", HistGradientBoostingClassifier(max_iter=20, random_state=0))]),
    ),
}


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 3))
    y = np.where(X[:, 0] + 0.5 * X[:, 1] + rng.normal(0, 0.8, 300) > 0.3, "sick", "well")
    return X, y


def _served(predictor: Predictor, X: np.ndarray) -> tuple[list[int], list[int]]:
    ones = [predictor.predict_one(row)[0] for row in X]
    batch = predictor.predict_batch_indices(X)[0].tolist()
    return ones, batch


@pytest.mark.parametrize("positive_class", ["sick", "well"])
@pytest.mark.parametrize("case", sorted(PIPELINES))
def test_every_kind_serves_positive_iff_probability_reaches_the_threshold(
    case: str, positive_class: str
) -> None:
    kind, make = PIPELINES[case]
    X, y = _data()
    pipeline = make().fit(X, y)
    plain = compile_predictor(pipeline)
    assert plain.kind == kind
    proba = plain.predict_batch(X)
    pos = plain.classes.index(positive_class)
    p = proba[:, pos]
    # A probability strictly inside (0, 1) that several rows do not share: the boundary row.
    inside = np.flatnonzero((p > 0.05) & (p < 0.95))
    k = int(inside[len(inside) // 2])
    at = float(p[k])
    for threshold in (at, float(np.nextafter(at, 1.0))):
        predictor = compile_predictor(pipeline, positive_class=positive_class, threshold=threshold)
        assert isinstance(predictor, ThresholdPredictor) and predictor.kind == kind
        want = np.where(p >= threshold, pos, 1 - pos).tolist()
        ones, batch = _served(predictor, X)
        assert ones == want and batch == want
        # Exactly at the threshold serves the positive class; one float above it does not.
        assert (want[k] == pos) is (threshold == at)
        # Probabilities are the argmax predictor's, bit for bit.
        np.testing.assert_array_equal(predictor.predict_batch(X), proba)
        np.testing.assert_array_equal(predictor.predict_one(X[k])[1], proba[k])


def test_without_a_threshold_the_plain_predictor_serves() -> None:
    X, y = _data()
    pipeline = PIPELINES["folded-logistic"][1]().fit(X, y)
    predictor = compile_predictor(pipeline, positive_class="sick", threshold=None)
    assert type(predictor) is Predictor
    assert [predictor.classes[i] for i in predictor.predict_batch_indices(X)[0]] == list(
        pipeline.predict(X)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"positive_class": None, "threshold": 0.5}, "^a threshold needs a positive class$"),
        ({"positive_class": "ill", "threshold": 0.5}, "one of its classes"),
        (
            {"positive_class": "ill", "threshold": 0.5},
            "^a threshold needs a binary model and one of its classes$",
        ),
        (
            {"positive_class": "sick", "threshold": 1.0},
            "^a threshold must lie strictly between 0 and 1$",
        ),
        (
            {"positive_class": "sick", "threshold": 0.0},
            "^a threshold must lie strictly between 0 and 1$",
        ),
        ({"positive_class": "sick", "threshold": -0.0}, "strictly between 0 and 1"),
    ],
)
def test_a_threshold_needs_a_binary_class_and_a_probability(
    kwargs: dict[str, Any], message: str
) -> None:
    X, y = _data()
    pipeline = PIPELINES["folded-logistic"][1]().fit(X, y)
    with pytest.raises(ValueError, match=message):
        compile_predictor(pipeline, **kwargs)


def test_a_multiclass_model_takes_no_threshold() -> None:
    X, _ = _data()
    y = np.array(["a", "b", "c"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    pipeline = PIPELINES["folded-logistic"][1]().fit(X, y)
    with pytest.raises(ValueError, match="binary model"):
        compile_predictor(pipeline, positive_class="a", threshold=0.5)


def test_a_bundle_with_a_threshold_loads_a_threshold_predictor(
    trained: dict[str, TrainResult], model_path: Path
) -> None:
    r = trained["diagnostic"]
    version = save_bundle(
        model_path,
        "diagnostic",
        r.pipeline,
        schema=r.schema,
        classes=r.classes,
        metrics=r.metrics,
        profile=r.profile,
        operating_point={"positive_class": "malignant", "threshold": 0.2},
    )
    predictor = load_bundle(model_path, "diagnostic", version).predictor
    assert isinstance(predictor, ThresholdPredictor)
    assert predictor.classes[predictor.positive] == "malignant" and predictor.threshold == 0.2


@pytest.mark.parametrize("threshold", [5e-324, 0.5, float(np.nextafter(1.0, 0.0))])
def test_a_threshold_just_inside_its_bounds_is_served_with_the_schema_it_was_given(
    threshold: float,
) -> None:
    X, y = _data()
    pipeline = PIPELINES["folded-logistic"][1]().fit(X, y)
    schema = FeatureSchema.from_training(X, ["a", "b", "c"])
    predictor = compile_predictor(pipeline, schema, positive_class="sick", threshold=threshold)
    assert isinstance(predictor, ThresholdPredictor) and predictor.threshold == threshold
    assert predictor.schema is schema


def test_without_a_threshold_the_argmax_predictor_is_served_with_the_schema_it_was_given() -> None:
    X, y = _data()
    pipeline = PIPELINES["folded-logistic"][1]().fit(X, y)
    schema = FeatureSchema.from_training(X, ["a", "b", "c"])
    predictor = compile_predictor(pipeline, schema)
    assert type(predictor) is Predictor and predictor.schema is schema
    assert [f.name for f in predictor.schema.features] == ["a", "b", "c"]
