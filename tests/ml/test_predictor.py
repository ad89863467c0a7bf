"""The compiled predictor answers exactly as scikit-learn does (class identical, proba 1e-9)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

from nexus_ml.ml import predictor as predictor_module
from nexus_ml.ml.datasets import Dataset
from nexus_ml.ml.errors import NotEvaluable
from nexus_ml.ml.predictor import Predictor, _headroom, compile_predictor
from nexus_ml.ml.schema import FeatureSchema, FeatureSpec
from nexus_ml.ml.training import TrainResult

TOLERANCE = 1e-9
N_RANDOM = 10_000


def random_rows(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Rows around and well beyond the training data, including saturating extremes."""
    rng = np.random.default_rng(seed)
    mean, std = X.mean(axis=0), X.std(axis=0)
    rows = mean + rng.standard_normal((n, X.shape[1])) * std * rng.choice([0.5, 2, 10], (n, 1))
    rows[: n // 20] *= 1e3  # a few far outside: probabilities of exactly 0 and 1
    return rows


def assert_equivalent(pipeline: Pipeline, predictor: Predictor, X: np.ndarray) -> None:
    expected_class = pipeline.predict(X)
    expected_proba = pipeline.predict_proba(X)
    classes = np.asarray(predictor.classes)

    proba = predictor.predict_batch(X)
    assert proba.shape == expected_proba.shape
    np.testing.assert_allclose(proba, expected_proba, rtol=0, atol=TOLERANCE)
    indices, proba2 = predictor.predict_batch_indices(X)
    assert (classes[indices] == expected_class).all()
    np.testing.assert_array_equal(proba2, proba)

    for i, row in enumerate(X):
        index, p = predictor.predict_one(row)
        assert classes[index] == expected_class[i]
        assert np.abs(p - expected_proba[i]).max() <= TOLERANCE


@pytest.mark.parametrize("name", ["diagnostic", "diabetes_risk"])
def test_bundled_models_compile_to_the_folded_binary_path(
    name: str, trained: dict[str, TrainResult]
) -> None:
    predictor = compile_predictor(trained[name].pipeline)
    assert predictor.kind == "binary"
    assert predictor.classes == tuple(trained[name].pipeline.classes_)


@pytest.mark.parametrize("name", ["diagnostic", "diabetes_risk"])
def test_every_dataset_row_matches_sklearn(
    name: str, trained: dict[str, TrainResult], datasets: dict[str, Dataset]
) -> None:
    pipeline = trained[name].pipeline
    assert_equivalent(pipeline, compile_predictor(pipeline), datasets[name].X)


@pytest.mark.parametrize(("name", "seed"), [("diagnostic", 1), ("diabetes_risk", 2)])
def test_random_rows_match_sklearn(
    name: str, seed: int, trained: dict[str, TrainResult], datasets: dict[str, Dataset]
) -> None:
    pipeline = trained[name].pipeline
    X = random_rows(datasets[name].X, N_RANDOM // 2, seed)
    # The extremes really do saturate, so the stable logistic is exercised.
    assert np.isin(pipeline.predict_proba(X), (0.0, 1.0)).any()
    assert_equivalent(pipeline, compile_predictor(pipeline), X)


def test_multiclass_uses_softmax_and_matches_sklearn() -> None:
    X, y = load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    pipeline = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))])
    pipeline.fit(X, labels)
    predictor = compile_predictor(pipeline)
    assert predictor.kind == "multinomial"
    assert_equivalent(pipeline, predictor, np.vstack([X, random_rows(X, 2000, 3)]))


def test_scaler_without_mean_or_std_is_folded_too(datasets: dict[str, Dataset]) -> None:
    d = datasets["diabetes_risk"]
    pipeline = Pipeline(
        [
            ("s", StandardScaler(with_mean=False, with_std=False)),
            ("c", LogisticRegression(max_iter=5000)),
        ]
    ).fit(d.X, d.y)
    predictor = compile_predictor(pipeline)
    assert predictor.kind == "binary"
    assert_equivalent(pipeline, predictor, d.X)


def test_a_nullable_number_keeps_the_folded_path_and_its_missing_value_names_the_row(
    datasets: dict[str, Dataset],
) -> None:
    # An imported scaler-and-logistic pipeline whose schema lets a feature be missing: the
    # pipeline has no imputer, so a missing value cannot be scored either way; the folded
    # path answers every complete row as scikit-learn does and refuses the incomplete one
    # by its index (scikit-learn's refusal does not say which row).
    d = datasets["diabetes_risk"]
    pipeline = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))])
    pipeline.fit(d.X, d.y)
    features = tuple(
        FeatureSpec(name, "number", nullable=(i == 1)) for i, name in enumerate(d.feature_names)
    )
    predictor = Predictor(pipeline, FeatureSchema(features))
    assert predictor.kind == "binary"
    assert_equivalent(pipeline, predictor, d.X)
    rows = np.array(d.X[:4], dtype=np.float64)
    rows[2, 1] = np.nan
    with pytest.raises(NotEvaluable) as batch:
        predictor.predict_batch(rows)
    assert batch.value.row == 2
    with pytest.raises(NotEvaluable) as one:
        predictor.predict_one(rows[2])
    assert one.value.row == 0


@pytest.mark.parametrize(
    ("pipeline", "kind"),
    [
        (Pipeline([("s", MinMaxScaler()), ("c", LogisticRegression(max_iter=5000))]), "fallback"),
        (Pipeline([("s", StandardScaler()), ("c", GaussianNB())]), "fallback"),
        # A forest after a transform: the transform runs, then the exact tree walk (ml/trees.py).
        (
            Pipeline([("s", StandardScaler()), ("c", RandomForestClassifier(5, random_state=0))]),
            "trees",
        ),
    ],
    ids=["other-scaler", "other-estimator", "forest"],
)
def test_other_pipelines_answer_as_predict_proba(
    pipeline: Pipeline, kind: str, datasets: dict[str, Dataset]
) -> None:
    d = datasets["diagnostic"]
    pipeline.fit(d.X, d.y)
    predictor = compile_predictor(pipeline)
    assert predictor.kind == kind
    assert_equivalent(pipeline, predictor, d.X[:50])


@pytest.mark.parametrize(
    "pipeline",
    [
        Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))]),
        Pipeline([("s", MinMaxScaler()), ("c", LogisticRegression(max_iter=5000))]),
        Pipeline([("s", StandardScaler()), ("c", GaussianNB())]),
    ],
    ids=["folded", "other-scaler", "other-estimator"],
)
def test_a_float32_batch_answers_the_bits_of_the_same_rows_in_float64(
    pipeline: Pipeline, datasets: dict[str, Dataset]
) -> None:
    """Every path computes in float64 whatever the rows come in: the folded one by its float64
    weights, the general one by handing the pipeline float64 rows (scikit-learn's scalers keep
    float32 and round each step in it)."""
    d = datasets["diagnostic"]
    pipeline.fit(d.X, d.y)
    predictor = compile_predictor(pipeline)
    rows = d.X[:50].astype(np.float32)
    indices, proba = predictor.predict_batch_indices(rows)
    expected_indices, expected = predictor.predict_batch_indices(rows.astype(np.float64))
    assert proba.dtype == np.float64
    np.testing.assert_array_equal(proba, expected)
    np.testing.assert_array_equal(indices, expected_indices)


@pytest.mark.parametrize(
    ("estimator", "kind"),
    [
        (LogisticRegression(max_iter=5000), "fallback"),
        (RandomForestClassifier(5, random_state=0), "trees"),
    ],
    ids=["linear", "forest"],
)
def test_a_bare_estimator_outside_a_pipeline_answers_as_its_own_predict_proba(
    estimator: ClassifierMixin, kind: str, datasets: dict[str, Dataset]
) -> None:
    """A fitted estimator handed over without a Pipeline around it is served whole (no steps
    to run before it): the general path for a linear one, the tree walk for a forest."""
    d = datasets["diagnostic"]
    estimator.fit(d.X, d.y)
    predictor = compile_predictor(estimator)
    assert predictor.kind == kind
    assert_equivalent(estimator, predictor, d.X[:50])  # type: ignore[arg-type]


def test_predictor_that_disagrees_with_its_pipeline_falls_back(
    datasets: dict[str, Dataset],
) -> None:
    d = datasets["diagnostic"]
    pipeline = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))])
    pipeline.fit(d.X, d.y)

    class Sabotaged(Predictor):
        def _probe_rows(self) -> np.ndarray:
            self._b = 100.0  # a wrong bias: the self-check must catch it
            return super()._probe_rows()

    assert Sabotaged(pipeline).kind == "fallback"


def test_the_self_check_trusts_a_difference_exactly_at_its_tolerance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The compiled maths is trusted iff every probe is within the tolerance, the limit
    included: set the tolerance to the largest difference the probes show, then one below."""
    X, y = load_iris(return_X_y=True)
    pipeline = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))])
    pipeline.fit(X, y == 0)
    compiled = Predictor(pipeline)
    assert compiled.kind == "binary"
    probes = compiled._probe_rows()
    largest = float(np.abs(compiled.predict_batch(probes) - pipeline.predict_proba(probes)).max())
    monkeypatch.setattr(predictor_module, "_SELF_CHECK_TOLERANCE", largest)
    assert Predictor(pipeline).kind == "binary"
    monkeypatch.setattr(predictor_module, "_SELF_CHECK_TOLERANCE", np.nextafter(largest, -1.0))
    assert Predictor(pipeline).kind == "fallback"


class _ThreadRecorder(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A final step that records the thread pools it is called under."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _ThreadRecorder:
        self.classes_ = np.unique(y)
        self.n_features_in_ = X.shape[1]
        self.seen_: list[dict[str, int]] = []
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.seen_.append({i["user_api"]: i["num_threads"] for i in threadpool_info()})
        return np.tile([0.25, 0.75], (len(X), 1))


def test_the_general_path_runs_on_one_openmp_thread_and_leaves_blas_alone() -> None:
    """One OpenMP thread per call (a thread team per request spins against the other workers);
    BLAS keeps whatever the process set."""
    recorder = _ThreadRecorder()
    pipeline = Pipeline([("c", recorder)]).fit(np.zeros((4, 2)), ["a", "b", "a", "b"])
    predictor = Predictor(pipeline)
    assert predictor.kind == "fallback"
    with threadpool_limits(limits=2):
        outside = {i["user_api"]: i["num_threads"] for i in threadpool_info()}
        if outside.get("openmp") != 2:
            pytest.skip("no OpenMP runtime loaded in this process")
        predictor.predict_batch(np.zeros((1, 2)))
        predictor.predict_one(np.zeros(2))
    assert recorder.seen_ == [{**outside, "openmp": 1}] * 2


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], 16.0),  # column L1 4: 2 * 4 = 8 < 16
        ([[3.0], [0.0]], 8.0),  # 2 * 3 = 6 < 8
        ([[-0.05], [0.05]], 1.0),  # small weights need no headroom: k >= 0
        ([[0.5, -3.0], [0.5, 0.0]], 8.0),  # the largest column, not the sum of all
        (np.zeros((3, 0)), 1.0),  # no weights at all
    ],
)
def test_the_headroom_is_the_least_power_of_two_above_twice_the_largest_column_l1(
    columns: list[list[float]], expected: float
) -> None:
    assert _headroom(np.asarray(columns, dtype=np.float64)) == expected


def test_the_self_check_probes_around_the_training_data_in_its_own_units() -> None:
    """Data far from the origin and narrow: a wrong bias shows only near the data (far from it
    every probability is 0 or 1 whatever the bias), so that is where the probes must be."""
    rng = np.random.default_rng(3)
    X = 1e4 + rng.normal(size=(300, 3)) * 1e-3
    y = (X[:, 0] - 1e4) + 0.5e-3 * rng.normal(size=300) > 0
    pipeline = Pipeline([("s", StandardScaler()), ("c", LogisticRegression())]).fit(X, y)
    assert Predictor(pipeline).kind == "binary"

    class WrongBias(Predictor):
        def _agrees_with_pipeline(self) -> bool:
            self._b += 1.0  # one logit off: as wrong as a bad fold would be
            return super()._agrees_with_pipeline()

    assert WrongBias(pipeline).kind == "fallback"


def test_without_a_schema_a_pipeline_fitted_on_a_frame_keeps_its_column_names() -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    pipeline = Pipeline([("s", MinMaxScaler()), ("c", GaussianNB())]).fit(X, y)
    predictor = Predictor(pipeline)
    assert [f.name for f in predictor.schema.features] == list(X.columns)
    # Warnings are errors here: a frame with other column names would make scikit-learn warn.
    np.testing.assert_allclose(
        predictor.predict_batch(X.to_numpy()), pipeline.predict_proba(X), rtol=0, atol=1e-12
    )


def test_the_general_path_answers_float64_whatever_the_final_step_computes_in() -> None:
    """A final step answering in float32 would reach the stored and shown probabilities as
    0.10000000149011612 instead of 0.1."""

    class Float32Answers(_ThreadRecorder):
        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return np.tile(np.array([0.9, 0.1], dtype=np.float32), (len(X), 1))

    pipeline = Pipeline([("c", Float32Answers())]).fit(np.zeros((4, 2)), ["a", "b", "a", "b"])
    index, proba = Predictor(pipeline).predict_one(np.zeros(2))
    assert index == 0 and proba.dtype == np.float64
    assert Predictor(pipeline).predict_batch(np.zeros((3, 2))).dtype == np.float64


def test_one_row_of_a_multinomial_model_answers_the_bits_of_a_one_row_batch() -> None:
    """predict_one on the compiled multinomial path is the batch arithmetic on one row: the same
    bits, not the pipeline's answer within the 1e-9 the self-check allows."""
    X, y = load_iris(return_X_y=True)
    pipeline = Pipeline([("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))])
    predictor = Predictor(pipeline.fit(X, y))
    assert predictor.kind == "multinomial"
    for row in random_rows(X, 200, seed=5):
        index, proba = predictor.predict_one(row)
        indices, batch = predictor.predict_batch_indices(row[np.newaxis, :])
        assert index == indices[0] and proba.tobytes() == batch[0].tobytes()
