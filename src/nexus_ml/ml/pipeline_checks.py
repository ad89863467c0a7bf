"""Semantic checks of a loaded pipeline against its metadata, and a probe prediction.

The type allowlist says what an artifact may *contain*; these checks say whether what it holds
can serve this schema. They follow scikit-learn's conventions rather than today's two estimator
types, so a wider allowlist keeps them meaningful: every step but the last transforms, the last
gives probabilities over ``classes_``; each step's ``n_features_in_`` is the width it is fed;
per-feature fitted arrays have that width; every fitted float is finite. Then the pipeline and
the compiled predictor both answer rows built from the reference profile, and must give the same
finite probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.validation import check_array

from nexus_ml.ml.errors import BundleError
from nexus_ml.ml.metadata import CategoricalProfile, NumericProfile, Profile
from nexus_ml.ml.operating import decide
from nexus_ml.ml.predictor import Predictor, ThresholdPredictor, compile_predictor
from nexus_ml.ml.schema import FeatureSchema, FeatureSpec

# Fitted attributes whose last axis is the step's input features (scikit-learn's names).
_PER_FEATURE = (
    "mean_",
    "var_",
    "scale_",
    "coef_",
    "min_",
    "data_min_",
    "data_max_",
    "data_range_",
    "center_",
    "max_abs_",
)
# Points of the 1001-point quantile sketch the probe walks: extremes, tails, quartiles, median.
_PROBE_AT = (0, 10, 50, 250, 500, 750, 950, 990, 1000)
_MIXED_ROWS = 8
_SUM_TOLERANCE = 1e-6
# The predictor's own self-check tolerance: compiled maths must match scikit-learn this closely.
_AGREEMENT = 1e-9


def _label(i: int, est: object) -> str:
    return f"step {i} ({type(est).__name__})"


def check_pipeline(pipeline: Any, feature_names: Sequence[str]) -> None:
    """Refuse a pipeline whose structure, widths or fitted numbers cannot serve the schema."""
    estimators = _estimators(pipeline)
    width = len(feature_names)
    for i, est in enumerate(estimators):
        n_in = getattr(est, "n_features_in_", None)
        if isinstance(n_in, bool) or not isinstance(n_in, int | np.integer):
            raise BundleError(f"{_label(i, est)} records no input feature count", "mismatch")
        if n_in != width:
            fed = "the schema has" if i == 0 else "the previous step gives"
            raise BundleError(
                f"{_label(i, est)} expects {n_in} features, {fed} {width}", "mismatch"
            )
        names_in = getattr(est, "feature_names_in_", None)
        if i == 0 and names_in is not None and [str(n) for n in names_in] != list(feature_names):
            raise BundleError("the pipeline's feature names differ from the schema's", "mismatch")
        _check_fitted(i, est, int(n_in))
        if i < len(estimators) - 1:
            width = _output_width(i, est)
    _check_classifier(len(estimators) - 1, estimators[-1])
    for i, est in enumerate(estimators):
        _check_functions(i, est)


def _check_functions(i: int, est: Any) -> None:
    """Refuse a FunctionTransformer anywhere inside that wraps more than scikit-learn's input
    check (HistGradientBoosting builds one around ``check_array``; nothing else is code we
    trained)."""
    seen: set[int] = set()
    stack: list[Any] = [est]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, FunctionTransformer):
            func = node.func.func if isinstance(node.func, partial) else node.func
            if func not in (None, check_array) or node.inverse_func is not None:
                raise BundleError(
                    f"{_label(i, est)} holds a FunctionTransformer that runs code", "untrusted"
                )
        if isinstance(node, BaseEstimator):
            stack.extend(vars(node).values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())


def _estimators(pipeline: Any) -> list[Any]:
    steps = getattr(pipeline, "steps", None)
    if not isinstance(steps, list) or not steps:
        raise BundleError("the pipeline has no steps", "structure")
    estimators = []
    for i, step in enumerate(steps):
        if not (isinstance(step, tuple) and len(step) == 2 and isinstance(step[0], str)):
            raise BundleError(f"step {i} is not a (name, estimator) pair", "structure")
        est = step[1]
        if est is None or isinstance(est, str):  # "passthrough" / "drop"
            raise BundleError(f"step {i} is not a fitted estimator", "structure")
        estimators.append(est)
    for i, est in enumerate(estimators[:-1]):
        if not callable(getattr(est, "transform", None)):
            raise BundleError(f"{_label(i, est)} is not a transformer", "structure")
    last = estimators[-1]
    if not callable(getattr(last, "predict_proba", None)) or not hasattr(last, "classes_"):
        raise BundleError(
            f"{_label(len(estimators) - 1, last)} is not a classifier with probabilities",
            "structure",
        )
    return estimators


def _check_fitted(i: int, est: Any, n_in: int) -> None:
    for attr, value in sorted(getattr(est, "__dict__", {}).items()):
        if not attr.endswith("_") or attr.startswith("_") or value is None:
            continue
        if isinstance(value, float | np.floating) and not math.isfinite(value):
            raise BundleError(f"{_label(i, est)}.{attr} is not finite", "non_finite")
        float_array = isinstance(value, np.ndarray) and value.dtype.kind in "fc"
        if float_array and not np.isfinite(value).all():
            raise BundleError(f"{_label(i, est)}.{attr} holds NaN or infinity", "non_finite")
        if attr in _PER_FEATURE:
            arr = np.asarray(value)
            if arr.ndim not in (1, 2) or arr.shape[-1] != n_in:
                raise BundleError(
                    f"{_label(i, est)}.{attr} has shape {arr.shape}, not {n_in} features",
                    "mismatch",
                )
    coef, intercept = getattr(est, "coef_", None), getattr(est, "intercept_", None)
    if coef is not None and intercept is not None:
        rows = np.asarray(coef).shape[0] if np.ndim(coef) == 2 else 1
        if np.shape(intercept) != (rows,):
            raise BundleError(f"{_label(i, est)}.intercept_ does not match coef_", "mismatch")


def _output_width(i: int, est: Any) -> int:
    try:
        return len(est.get_feature_names_out())
    except Exception as exc:  # any failure means the width cannot be known
        raise BundleError(
            f"{_label(i, est)} cannot tell its output width ({type(exc).__name__})", "structure"
        ) from None


def _check_classifier(i: int, est: Any) -> None:
    classes = np.asarray(est.classes_)
    if classes.ndim != 1 or classes.size < 2 or np.unique(classes).size != classes.size:
        raise BundleError(
            f"{_label(i, est)}.classes_ must be 2 or more distinct labels", "mismatch"
        )
    coef = getattr(est, "coef_", None)
    if coef is not None:
        # A linear classifier has one row of weights for two classes, else one per class.
        expected = 1 if classes.size == 2 else classes.size
        if np.ndim(coef) != 2 or np.shape(coef)[0] != expected:
            raise BundleError(
                f"{_label(i, est)}.coef_ has {np.shape(coef)[0] if np.ndim(coef) else 0} rows "
                f"for {classes.size} classes",
                "mismatch",
            )


def probe_rows(profile: Profile, schema: FeatureSchema) -> np.ndarray:
    """Rows like the reference: each feature's quantiles (a number) or categories, level by
    level, then mixed levels; a feature that may be missing is missing in every other mixed row.
    """
    columns = [_levels(profile, spec) for spec in schema.features]
    n_levels = len(_PROBE_AT)
    rng = np.random.default_rng(0)
    rows: list[list[Any]] = []
    for r in range(n_levels + _MIXED_ROWS):
        row: list[Any] = []
        for spec, (levels, sketch) in zip(schema.features, columns, strict=True):
            if r < n_levels:
                row.append(levels[r % len(levels)])
            elif spec.nullable and r % 2 == 1:
                row.append(None if spec.is_category else math.nan)
            else:
                row.append(sketch[int(rng.integers(0, len(sketch)))])
        rows.append(row)
    if schema.numeric_only:
        return np.ascontiguousarray(np.array(rows, dtype=np.float64))
    out = np.empty((len(rows), len(schema)), dtype=object)
    out[:] = rows
    return out


def _levels(profile: Profile, spec: FeatureSpec) -> tuple[list[Any], list[Any]]:
    """A feature's probe levels and the values mixed rows draw from."""
    feature = profile.features[spec.name]
    if isinstance(feature, NumericProfile) and not spec.is_category:
        return [feature.quantiles[i] for i in _PROBE_AT], feature.quantiles
    if isinstance(feature, CategoricalProfile) and spec.is_category and feature.categories:
        return list(feature.categories), list(feature.categories)
    # The metadata model already refuses a profile whose type differs from the schema's.
    raise BundleError(f"feature {spec.name} has no reference values to probe", "metadata")


def unseen_refused(predictor: Predictor, rows: np.ndarray) -> frozenset[str]:
    """Category features for which the pipeline cannot answer a category unseen in training."""
    refused = set()
    for j, spec in enumerate(predictor.schema.features):
        if not spec.is_category:
            continue
        row = rows[:1].copy()
        # Sorts after every training category, so it is not one of them.
        row[0, j] = (max(spec.categories) if spec.categories else "") + "\x00unseen"
        try:
            with np.errstate(all="ignore"):
                proba = predictor.predict_batch(row)
        except Exception:  # whatever the pipeline raises on an unknown category
            refused.add(spec.name)
            continue
        if not np.isfinite(proba).all():
            refused.add(spec.name)
    return frozenset(refused)


def check_probe(pipeline: Any, predictor: Predictor, rows: np.ndarray) -> None:
    """The pipeline and the compiled predictor give the same finite probabilities on ``rows``,
    and the class the pipeline would serve (at the predictor's threshold, if it has one)."""
    n_classes = len(predictor.classes)
    given = predictor.pipeline_input(rows)
    try:
        with np.errstate(all="ignore"):
            expected = np.asarray(pipeline.predict_proba(given), dtype=np.float64)
            if isinstance(predictor, ThresholdPredictor):
                served = decide(expected, predictor.positive, predictor.threshold)
                labels = [predictor.classes[i] for i in served]
            else:
                labels = [str(c) for c in pipeline.predict(given)]
    except Exception as exc:  # whatever scikit-learn raises on this pipeline
        raise BundleError(
            f"the pipeline cannot predict reference rows ({type(exc).__name__})", "probe"
        ) from None
    if expected.shape != (len(rows), n_classes):
        raise BundleError("the pipeline's probabilities have the wrong shape", "probe")
    if not np.isfinite(expected).all():
        raise BundleError("the pipeline predicts NaN or infinity on reference rows", "probe")
    if (
        (expected < 0).any()
        or (expected > 1).any()
        or not np.allclose(expected.sum(axis=1), 1.0, rtol=0, atol=_SUM_TOLERANCE)
    ):
        raise BundleError("the pipeline's answers on reference rows are not probabilities", "probe")
    with np.errstate(all="ignore"):
        batch = predictor.predict_batch(rows)
        ones = [predictor.predict_one(row) for row in rows]
    if batch.shape != expected.shape or not (np.abs(batch - expected) <= _AGREEMENT).all():
        raise BundleError("the compiled predictor disagrees with the pipeline", "probe")
    for (index, proba), label, want in zip(ones, labels, expected, strict=True):
        if not (np.abs(proba - want) <= _AGREEMENT).all():
            raise BundleError("the one-row predictor disagrees with the pipeline", "probe")
        if predictor.classes[index] != label:
            raise BundleError("the predicted class disagrees with the pipeline", "probe")


def compile_checked(
    pipeline: Any,
    profile: Profile,
    schema: FeatureSchema,
    *,
    positive_class: str | None = None,
    threshold: float | None = None,
) -> Predictor:
    """Compile the predictor (at ``threshold``, if any), then check it and the pipeline on rows
    like the reference.

    The predictor's schema refuses unseen categories of the features whose pipeline cannot
    answer them (found here by probing), so a request never reaches a pipeline that raises.
    """
    try:
        # A pipeline with extreme (finite) weights overflows here; the probe judges the result.
        with np.errstate(all="ignore"):
            predictor = compile_predictor(
                pipeline, schema, positive_class=positive_class, threshold=threshold
            )
    except Exception as exc:  # whatever a pipeline that passed the checks still raises
        raise BundleError(
            f"the predictor could not be compiled ({type(exc).__name__})", "probe"
        ) from None
    rows = probe_rows(profile, schema)
    check_probe(pipeline, predictor, rows)
    refused = unseen_refused(predictor, rows)
    if refused:
        predictor.schema = predictor.schema.refusing_unseen(refused)
    return predictor
