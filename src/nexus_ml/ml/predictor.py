"""Fast single-row prediction that answers exactly as the scikit-learn pipeline does.

For StandardScaler + LogisticRegression over number features that are never missing, the scaler
is folded into the weights, so a prediction is one dot product and a logistic/softmax. Any other
pipeline the bundle loader trusts takes the general path: the rows become the pandas DataFrame
the pipeline was fitted on (``ml.frame.to_frame``: the schema's column names in order, numbers
as float64 with NaN for missing, categories as object) and ``predict_proba`` answers; a pipeline
fitted on a bare array gets the float64 array instead.
For one row, ``ndarray.dot`` beat a plain Python loop over ``row.tolist()`` at every size
measured (1.00 vs 1.12 µs per prediction at 2 features, 1.05 vs 2.44 µs at 30), so the one-row
path stays in numpy; ``benchmarks/bench_model_predict.py`` keeps the loop for comparison.

Every answer is finite. Finite inputs can overflow (1.7e308 times a weight of 24 is infinite;
two such terms of opposite sign make NaN), and an overflowed decision has no trustworthy sign.
The compiled paths therefore take the dot product with weights divided by a power of two,
2**k with 2**k >= 2 * sum(|w|): no product or partial sum of finite inputs can then exceed
half the float maximum, and scaling by a power of two is exact, so the result is bit for bit
the unscaled one wherever that one does not overflow. Multiplying back by 2**k overflows only
when the decision itself is beyond the float range: that row raises ``NotEvaluable``, and so
does the fallback when a pipeline step overflows. Past that check nothing can overflow: the
logistic exponentiates only ``-|z|``, and the softmax subtracts the row's maximum, so every
exponent is <= 0 and the denominator is >= 1 (a finite score minus a finite maximum may round
to -inf, whose exp is the correct 0).

A binary model with a decision threshold (``operating_point.threshold`` in its metadata) is a
``ThresholdPredictor``: the same probabilities, then the positive class iff P(positive) >=
threshold, whatever the kind. It is a subclass, so the argmax paths above carry no test for a
threshold they do not have: they run the same code, as fast and bit for bit as before.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import ThreadpoolController

from nexus_ml.ml.errors import NotEvaluable
from nexus_ml.ml.frame import to_frame
from nexus_ml.ml.operating import decide
from nexus_ml.ml.schema import FeatureSchema, FeatureSpec
from nexus_ml.ml.trees import TreeEvaluator, compile_trees

__all__ = [
    "Kind",
    "NotEvaluable",
    "Predictor",
    "ThresholdPredictor",
    "compile_predictor",
    "fold_scaler",
]

# The compiled maths is re-checked against the pipeline on probe rows before it is trusted.
_SELF_CHECK_TOLERANCE = 1e-9

Kind = Literal["binary", "multinomial", "trees", "fallback"]
_INF = math.inf


def _ignoring_overflow() -> Any:
    # Overflow is detected by the finiteness checks below, not by numpy's warning (which
    # would name no row, and print once per process).
    return np.errstate(over="ignore", invalid="ignore")


def _headroom(weights: np.ndarray) -> float:
    """2**k, the least power of two above 2 * the largest L1 norm of a weight column (k >= 0)."""
    l1 = float(np.abs(weights).sum(axis=0).max()) if weights.size else 0.0
    return math.ldexp(1.0, max(0, math.frexp(2.0 * l1)[1]))


def fold_scaler(pipeline: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Weights (n_classes_or_1, n_features) and intercepts with the scaler folded in, or None."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2:
        return None
    scaler, clf = pipeline.steps[0][1], pipeline.steps[1][1]
    if type(scaler) is not StandardScaler or type(clf) is not LogisticRegression:
        return None
    coef = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64).reshape(-1)
    n_features = coef.shape[1]
    mean = np.zeros(n_features) if scaler.mean_ is None else np.asarray(scaler.mean_, np.float64)
    scale = np.ones(n_features) if scaler.scale_ is None else np.asarray(scaler.scale_, np.float64)
    # ((x - m) / s) . c + b  ==  x . (c / s) + (b - (m / s) . c)
    weights = coef / scale
    bias = intercept - coef @ (mean / scale)
    return weights, bias


class Predictor:
    """Probabilities for one row or a batch, in the order of ``pipeline.classes_``."""

    def __init__(self, pipeline: Any, schema: FeatureSchema | None = None) -> None:
        self.pipeline = pipeline
        self.classes: tuple[str, ...] = tuple(str(c) for c in pipeline.classes_)
        self.n_features = int(pipeline.n_features_in_)
        self.schema = schema if schema is not None else _number_schema(pipeline)
        # A pipeline fitted on a DataFrame is given one (with its column names); one fitted on
        # an array gets an array (a DataFrame would make scikit-learn warn about names).
        self._takes_frame = getattr(pipeline, "feature_names_in_", None) is not None
        steps = getattr(pipeline, "steps", None)
        if isinstance(steps, list) and steps:
            self._transforms = [step.transform for _, step in steps[:-1]]
            self._final = steps[-1][1]
        else:  # a bare estimator
            self._transforms, self._final = [], pipeline
        self._linear = hasattr(self._final, "coef_") and hasattr(self._final, "decision_function")
        self._threads: ThreadpoolController | None = None  # made on first use of the general path
        self.kind: Kind = "fallback"
        # Rows of numbers only: a category is no number to fold. A nullable number may: its
        # missing value is NaN, which a scaler-and-logistic pipeline cannot take (scikit-learn
        # refuses it without saying which row); the folded scores refuse it naming the row.
        folded = fold_scaler(pipeline) if self.schema.numeric_only else None
        if folded is not None:
            weights, bias = folded
            # Weights (n_features, n_outputs) divided by 2**k: their dot products cannot overflow.
            self._scale = _headroom(weights.T)
            if weights.shape[0] == 1 and len(self.classes) == 2:
                self.kind = "binary"
                self._w = np.ascontiguousarray(weights[0] / self._scale)
                self._b = float(bias[0])
            elif weights.shape[0] == len(self.classes) > 2:
                self.kind = "multinomial"
                self._W = np.ascontiguousarray(weights.T / self._scale)
                self._bias = bias
            if self.kind != "fallback" and not self._agrees_with_pipeline():
                # e.g. an old one-vs-rest LogisticRegression: its probabilities are not softmax.
                self.kind = "fallback"
        # A tree ensemble as the last step: the preceding steps still transform, then a walk
        # over scikit-learn's own fitted arrays answers bit for bit as predict_proba does
        # (ml/trees.py proves it and self-checks), without its per-call validation and
        # thread dispatch: 60-100x faster for one row of a 100-tree forest.
        self._trees: TreeEvaluator | None = None
        if self.kind == "fallback" and not self._linear:
            self._trees = compile_trees(self._final)
            if self._trees is not None:
                self.kind = "trees"

    def predict_one(self, row: np.ndarray) -> tuple[int, np.ndarray]:
        """Index of the predicted class and the probabilities for one 1-D row."""
        if self.kind == "binary":
            # ndarray.dot is the cheapest numpy call here (~0.4 µs against ~0.8 for @). It
            # cannot overflow; the Python float product overflows to inf quietly, and only
            # when the decision itself is out of range.
            z = float(row.dot(self._w)) * self._scale + self._b
            if not -_INF < z < _INF:
                raise NotEvaluable(0)
            # Stable logistic: never exponentiate a large positive number.
            if z >= 0.0:
                p = 1.0 / (1.0 + math.exp(-z))
            else:
                e = math.exp(z)
                p = e / (1.0 + e)
            # Same rule as LogisticRegression.predict: positive class iff the decision is > 0.
            return (1 if z > 0.0 else 0), np.array((1.0 - p, p))
        if self.kind == "multinomial":
            index, proba = self._multinomial(row[np.newaxis, :])
            return int(index[0]), proba[0]
        indices, proba = self._fallback(row.reshape(1, -1))
        return int(indices[0]), proba[0]

    def predict_batch(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n_rows, n_classes) for a 2-D array."""
        return self.predict_batch_indices(X)[1]

    def predict_batch_indices(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class indices and probabilities for a 2-D array (ties broken as sklearn)."""
        if self.kind == "binary":
            zs = X @ self._w
            with _ignoring_overflow():
                z = zs * self._scale + self._b
            _check_scores(z)
            p = _expit(z)
            return (z > 0.0).astype(np.intp), np.column_stack((1.0 - p, p))
        if self.kind == "multinomial":
            return self._multinomial(X)
        return self._fallback(X)

    def _multinomial(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scaled = X @ self._W
        with _ignoring_overflow():
            scores = scaled * self._scale + self._bias
            _check_scores(scores)
            return scores.argmax(axis=1), _softmax(scores)

    def _fallback(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pipeline's own answer, refused where any step's arithmetic overflowed."""
        if self._threads is None:
            self._threads = ThreadpoolController()
        try:
            # One OpenMP thread per call (HistGradientBoosting's prediction is OpenMP): a
            # thread team per request spins against the other workers and requests, and made
            # one row cost 400 ms instead of 15 on a loaded 2-core host; the limit costs ~12 µs.
            with self._threads.limit(limits=1, user_api="openmp"), _ignoring_overflow():
                # Pipeline.predict_proba step by step (the same calls), so the transforms run
                # once for both the scores and the probabilities.
                Xt = self.pipeline_input(X)
                for transform in self._transforms:
                    Xt = transform(Xt)
                if self._linear:
                    # The scores the probabilities come from: an overflow in a scaler or a dot
                    # product shows here (or as scikit-learn's own "contains infinity" refusal).
                    # Trees and forests compare and add bounded leaf values: nothing overflows.
                    _check_scores(np.asarray(self._final.decision_function(Xt), np.float64))
                if self._trees is not None:
                    proba = self._trees.predict_proba(Xt)
                else:
                    proba = np.asarray(self._final.predict_proba(Xt), dtype=np.float64)
        except ValueError as exc:
            if isinstance(exc, NotEvaluable):
                raise
            # scikit-learn refused an intermediate array (infinite after scaling); which row
            # it was is not said, and finding out would cost one call per row.
            raise NotEvaluable(None) from None
        _check_scores(proba)
        return proba.argmax(axis=1), proba

    def pipeline_input(self, X: np.ndarray) -> Any:
        """What the pipeline's own methods are given for rows ``X`` in schema order."""
        if self._takes_frame:
            return to_frame(X, self.schema)
        return np.asarray(X, dtype=np.float64)

    def _agrees_with_pipeline(self) -> bool:
        probes = self._probe_rows()
        expected = self.pipeline.predict_proba(self.pipeline_input(probes))
        got = self.predict_batch(probes)
        return got.shape == expected.shape and bool(
            np.all(np.abs(got - expected) <= _SELF_CHECK_TOLERANCE)
        )

    def _probe_rows(self) -> np.ndarray:
        scaler = self.pipeline.steps[0][1]
        n = self.n_features
        mean = np.zeros(n) if scaler.mean_ is None else scaler.mean_
        scale = np.ones(n) if scaler.scale_ is None else scaler.scale_
        rng = np.random.default_rng(0)
        return np.asarray(mean + rng.normal(0.0, 2.0, size=(16, n)) * scale, dtype=np.float64)


class ThresholdPredictor(Predictor):
    """A binary predictor serving the positive class iff P(positive) >= ``threshold``.

    The probabilities are the argmax predictor's, unchanged; only the served index differs.
    """

    def __init__(
        self,
        pipeline: Any,
        schema: FeatureSchema | None = None,
        *,
        positive_class: str,
        threshold: float,
    ) -> None:
        classes = [str(c) for c in pipeline.classes_]
        if len(classes) != 2 or positive_class not in classes:
            raise ValueError("a threshold needs a binary model and one of its classes")
        if not 0.0 < threshold < 1.0:
            raise ValueError("a threshold must lie strictly between 0 and 1")
        # Set before the base class runs its self-check, which calls predict_batch_indices.
        self.positive = classes.index(positive_class)
        self.threshold = float(threshold)
        super().__init__(pipeline, schema)

    def predict_one(self, row: np.ndarray) -> tuple[int, np.ndarray]:
        """Index of the served class and the probabilities for one 1-D row."""
        _, proba = super().predict_one(row)
        pos = self.positive
        return (pos if proba[pos] >= self.threshold else 1 - pos), proba

    def predict_batch_indices(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Served class indices and probabilities for a 2-D array."""
        _, proba = super().predict_batch_indices(X)
        return decide(proba, self.positive, self.threshold), proba


def compile_predictor(
    pipeline: Any,
    schema: FeatureSchema | None = None,
    *,
    positive_class: str | None = None,
    threshold: float | None = None,
) -> Predictor:
    """Build the fastest exact predictor for a fitted pipeline serving ``schema``.

    With a ``threshold`` (binary models only) it serves ``positive_class`` iff its probability
    is at least the threshold; without, the class scikit-learn's ``predict`` gives.
    """
    if threshold is None:
        return Predictor(pipeline, schema)
    if positive_class is None:
        raise ValueError("a threshold needs a positive class")
    return ThresholdPredictor(pipeline, schema, positive_class=positive_class, threshold=threshold)


def _number_schema(pipeline: Any) -> FeatureSchema:
    """Without a schema: number features named as the pipeline names its inputs."""
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        names = [f"x{i}" for i in range(int(pipeline.n_features_in_))]
    return FeatureSchema(tuple(FeatureSpec(str(n)) for n in names))


def _check_scores(scores: np.ndarray) -> None:
    """Raise NotEvaluable for the first row (of a 1-D or 2-D array) holding NaN or +/-inf."""
    finite = np.isfinite(scores)
    if not finite.all():
        bad = finite if finite.ndim == 1 else finite.all(axis=1)
        raise NotEvaluable(int(np.argmin(bad)))


def _expit(z: np.ndarray) -> np.ndarray:
    # exp of -|z| never overflows; the two branches are the same function.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softmax(scores: np.ndarray) -> np.ndarray:
    # Finite scores only, under _ignoring_overflow (the caller's): the difference of two finite
    # numbers may overflow to -inf, and exp(-inf) == 0 is the right answer there.
    shifted = scores - scores.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted
