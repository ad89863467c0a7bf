"""The reviewed list of trusted types: each listed estimator loads; what runs code does not."""

from __future__ import annotations

import builtins
import functools
import importlib
import io
import json
import operator
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_array
from tests.helpers import single_openmp_thread
from tests.ml.forge import Doubler

from nexus_ml.ml.bundle import BundleError, load_trusted
from nexus_ml.ml.trusted import TRUSTED_ESTIMATORS, TRUSTED_INTERNALS, TRUSTED_TYPES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"
NUMERIC = ["age", "creatinine"]
CATEGORICAL = ["sex", "site"]


def _frame(n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A small EHR-like frame: numbers with missing values, categories with a missing one."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 95, n).astype(float)
    creatinine = np.where(rng.random(n) < 0.25, np.nan, rng.lognormal(0.0, 0.4, n))
    sex = rng.choice(["F", "M"], n).astype(object)
    site = rng.choice(np.array(["north", "south", "east", None], dtype=object), n)
    frame = pd.DataFrame({"age": age, "creatinine": creatinine, "sex": sex, "site": site})
    risk = (age - 55) / 15 + np.nan_to_num(creatinine, nan=1.0) + rng.normal(0, 0.7, n)
    labels = {
        "binary": np.where(risk > 1.0, "yes", "no"),
        "multiclass": np.select([risk < 0.5, risk < 1.6], ["low", "medium"], "high"),
    }
    return frame, labels


def _preprocessor(scaler: Any, encoder: Any) -> ColumnTransformer:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", scaler)])
    categorical = Pipeline(
        [("impute", SimpleImputer(strategy="constant", fill_value="missing")), ("encode", encoder)]
    )
    return ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])


def _onehot() -> OneHotEncoder:
    return OneHotEncoder(handle_unknown="ignore")


def _ordinal() -> OrdinalEncoder:
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)


# Every listed estimator and transformer, each in a DataFrame pipeline as a notebook builds it.
PIPELINES: dict[str, Callable[[], Pipeline]] = {
    "logistic-standard-onehot": lambda: Pipeline(
        [("pre", _preprocessor(StandardScaler(), _onehot())), ("clf", LogisticRegression())]
    ),
    "hgb-minmax-ordinal": lambda: Pipeline(
        [
            ("pre", _preprocessor(MinMaxScaler(), _ordinal())),
            ("clf", HistGradientBoostingClassifier(max_iter=15, random_state=0)),
        ]
    ),
    "hgb-native-categorical": lambda: Pipeline(
        [
            # Native categories: scikit-learn adds FunctionTransformer(partial(check_array)).
            (
                "pre",
                ColumnTransformer(
                    [("cat", _ordinal(), CATEGORICAL)],
                    remainder="passthrough",  # a FunctionTransformer with no func, once fitted
                ),
            ),
            (
                "clf",
                HistGradientBoostingClassifier(
                    categorical_features=[0, 1], max_iter=15, random_state=0
                ),
            ),
        ]
    ),
    "forest-robust-onehot": lambda: Pipeline(
        [
            ("pre", _preprocessor(RobustScaler(), _onehot())),
            ("clf", RandomForestClassifier(n_estimators=8, random_state=0)),
        ]
    ),
    "extra-trees-ordinal": lambda: Pipeline(
        [
            ("pre", _preprocessor(StandardScaler(), _ordinal())),
            ("clf", ExtraTreesClassifier(n_estimators=8, random_state=0)),
        ]
    ),
    "gradient-boosting-onehot": lambda: Pipeline(
        [
            ("pre", _preprocessor(StandardScaler(), _onehot())),
            ("clf", GradientBoostingClassifier(n_estimators=8, random_state=0)),
        ]
    ),
    "decision-tree-selector": lambda: Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(), make_column_selector(dtype_include="number")),
                        (
                            "cat",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer(strategy="most_frequent")),
                                    ("encode", _onehot()),
                                ]
                            ),
                            make_column_selector(dtype_include=object),
                        ),
                    ]
                ),
            ),
            ("clf", DecisionTreeClassifier(max_depth=5, random_state=0)),
        ]
    ),
    "calibrated-sigmoid-logistic": lambda: Pipeline(
        [
            ("pre", _preprocessor(StandardScaler(), _onehot())),
            ("clf", CalibratedClassifierCV(LogisticRegression(), cv=3)),
        ]
    ),
    "calibrated-isotonic-hgb": lambda: Pipeline(
        [
            ("pre", _preprocessor(StandardScaler(), _ordinal())),
            (
                "clf",
                CalibratedClassifierCV(
                    HistGradientBoostingClassifier(max_iter=10, random_state=0),
                    method="isotonic",
                    cv=3,
                ),
            ),
        ]
    ),
}


def _dump(estimator: Any) -> bytes:
    buffer = io.BytesIO()
    sio.dump(estimator, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fitted() -> dict[tuple[str, str], tuple[Pipeline, bytes]]:
    """Every example pipeline fitted on both targets, with its skops artifact (fitted once)."""
    frame, labels = _frame()
    out = {}
    with single_openmp_thread():
        for kind, build in PIPELINES.items():
            for target, y in labels.items():
                pipeline = build().fit(frame, y)
                out[kind, target] = (pipeline, _dump(pipeline))
    return out


@pytest.mark.parametrize("target", ["binary", "multiclass"])
@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_each_listed_estimator_round_trips_in_a_dataframe_pipeline(
    fitted: dict[tuple[str, str], tuple[Pipeline, bytes]], kind: str, target: str
) -> None:
    frame, _ = _frame()
    pipeline, artifact = fitted[kind, target]
    loaded = load_trusted(artifact)
    assert type(loaded) is Pipeline
    np.testing.assert_array_equal(loaded.predict_proba(frame), pipeline.predict_proba(frame))
    assert list(loaded.classes_) == list(pipeline.classes_)


def test_the_examples_cover_every_listed_estimator(
    fitted: dict[tuple[str, str], tuple[Pipeline, bytes]],
) -> None:
    """The round trip above is the list's evidence: no trusted estimator goes untried."""
    seen: set[str] = set()
    for _, artifact in fitted.values():
        with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
            seen |= _names(json.loads(zf.read("schema.json")))
        seen |= set(sio.get_untrusted_types(data=artifact))
    assert set(TRUSTED_ESTIMATORS) <= seen
    # Every internal type is needed by some example: nothing was added "just in case".
    assert set(TRUSTED_INTERNALS) - seen <= {"numpy.random.PCG64", "numpy.random.MT19937"}


def _names(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if "__class__" in current:
                found.add(f"{current.get('__module__')}.{current['__class__']}")
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found


@pytest.mark.parametrize("name", sorted(set(TRUSTED_ESTIMATORS) | set(TRUSTED_INTERNALS)))
def test_every_trusted_type_is_where_it_is_pinned(name: str) -> None:
    """scikit-learn's private module paths are pinned: an upgrade that moves one fails here.

    skops writes ``type.__module__``, so a class re-exported from its old path but defined
    elsewhere would still be refused at load; the test compares the defining module.
    """
    module_name, _, attribute = name.rpartition(".")
    module = importlib.import_module(module_name)
    obj = getattr(module, attribute, None)
    assert obj is not None, f"{name} moved: scikit-learn no longer defines it there"
    if module_name != "numpy.random":  # numpy.random re-exports the bit generators skops names
        assert f"{obj.__module__}.{obj.__qualname__}" == name, (
            f"{name} is now {obj.__module__}.{obj.__qualname__}: review and update ml/trusted.py"
        )


def _refusal(artifact: bytes) -> str:
    with pytest.raises(BundleError) as error:
        load_trusted(artifact)
    assert error.value.reason == "untrusted"
    return str(error.value)


def _pipeline_with(step: Any) -> Pipeline:
    frame, labels = _frame()
    return Pipeline(
        [
            ("pre", _preprocessor(StandardScaler(), _onehot())),
            ("extra", step),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, labels["binary"])


def _double(x: Any) -> Any:
    return np.asarray(x) * 2


@pytest.mark.parametrize(
    ("step", "names"),
    [
        (FunctionTransformer(np.abs), ["FunctionTransformer", "numpy.absolute"]),
        (FunctionTransformer(lambda x: x), ["FunctionTransformer", "<lambda>"]),
        (FunctionTransformer(_double), ["FunctionTransformer", "test_trusted._double"]),
        # No func, but an inverse: not the shape scikit-learn builds by itself.
        (FunctionTransformer(inverse_func=np.exp, check_inverse=False), ["numpy.exp"]),
        (Doubler(), ["tests.ml.forge.Doubler"]),
    ],
    ids=["numpy-ufunc", "lambda", "function", "inverse-func", "custom-class"],
)
def test_code_is_refused_with_its_name_and_reason(step: Any, names: list[str]) -> None:
    message = _refusal(_dump(_pipeline_with(step)))
    for name in names:
        assert re.search(rf"{re.escape(name)}[^;]* \([^)]*can run code", message), message


@pytest.mark.parametrize(
    ("func", "name"),
    [
        (builtins.eval, "builtins.eval"),
        (operator.attrgetter("fit"), "operator.attrgetter"),
        (functools.partial(np.add, 1), "functools.partial"),
        # scikit-learn's own validator, but outside the one place scikit-learn puts it.
        (functools.partial(check_array), "functools.partial"),
    ],
    ids=["eval", "attrgetter", "partial", "partial-check-array-elsewhere"],
)
def test_callables_are_refused_wherever_they_sit(func: Any, name: str) -> None:
    # A column selector is called on the data: the callable runs at every transform.
    frame, labels = _frame()
    pipeline = Pipeline(
        [
            ("pre", ColumnTransformer([("num", SimpleImputer(), NUMERIC)])),
            ("clf", LogisticRegression()),
        ]
    ).fit(frame, labels["binary"])
    pipeline.steps[0][1].transformers[0] = ("num", SimpleImputer(), func)
    message = _refusal(_dump(pipeline))
    assert re.search(rf"{re.escape(name)} \([^)]*can run code", message), message


def test_an_estimator_outside_the_list_is_refused_as_unreviewed() -> None:
    frame, labels = _frame()
    pipeline = Pipeline(
        [("pre", _preprocessor(StandardScaler(), _onehot())), ("clf", KNeighborsClassifier())]
    ).fit(frame, labels["binary"])
    message = _refusal(_dump(pipeline))
    assert "KNeighborsClassifier (not on the reviewed list of trusted types)" in message


def _rewrite_schema(artifact: bytes, edit: Callable[[str], str]) -> bytes:
    """The same skops file with its schema.json text edited (a hand-forged artifact)."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(artifact)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "schema.json":
                data = edit(data.decode()).encode()
            dst.writestr(item, data)
    return out.getvalue()


def test_a_forged_bit_generator_name_is_refused(
    fitted: dict[tuple[str, str], tuple[Pipeline, bytes]],
) -> None:
    """skops rebuilds a random state by calling ``numpy.random.<name>``: the name is checked."""
    _, artifact = fitted["hgb-minmax-ordinal", "binary"]
    forged = _rewrite_schema(artifact, lambda text: text.replace('"\\"PCG64\\""', '"\\"seed\\""'))
    assert forged != artifact
    assert "numpy.random.seed" in _refusal(forged)


def test_a_forged_builtin_in_a_passthrough_shape_is_refused(
    fitted: dict[tuple[str, str], tuple[Pipeline, bytes]],
) -> None:
    """A FunctionTransformer shaped like scikit-learn's own, but whose func is not the validator."""
    _, artifact = fitted["hgb-native-categorical", "binary"]
    forged = _rewrite_schema(
        artifact,
        lambda text: re.sub(
            r'"check_array",(\s*)"__module__": "sklearn.utils.validation"',
            r'"eval",\1"__module__": "builtins"',
            text,
        ),
    )
    assert forged != artifact
    message = _refusal(forged)
    assert "builtins.eval (a function: can run code)" in message
    assert "FunctionTransformer (can run code" in message


def test_the_security_doc_lists_exactly_the_trusted_types() -> None:
    section = DOCS.read_text(encoding="utf-8").split("### Trusted types", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", section, flags=re.MULTILINE))
    listed = set(TRUSTED_ESTIMATORS) | set(TRUSTED_INTERNALS)
    assert documented == listed, (
        f"docs only: {sorted(documented - listed)}; code only: {sorted(listed - documented)}"
    )
    assert listed <= TRUSTED_TYPES
