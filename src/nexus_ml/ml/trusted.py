"""The reviewed list of types a model artifact may contain, and the audit of a skops schema.

skops refuses most code by default, but its defaults trust every scikit-learn class and numpy's
ufuncs. Ours is narrower on purpose: the usual clinical estimators and transformers, plus exactly
the internal types skops needs to rebuild each of them (found by saving fitted examples with
``skops.io.dump`` and listing what the file names). The names are scikit-learn's private module
paths, pinned knowingly: ``tests/ml/test_trusted.py`` imports each one, so an upgrade that moves
a class fails loudly there instead of refusing every bundle at load. docs/security.md holds the
same list with why each is safe; a test keeps the two equal.

Nothing here loads an artifact: :func:`audit_schema` reads the JSON schema skops writes and
returns every type it would refuse, each with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# The estimators and transformers a bundle may be built from, each with why it is safe: its
# fitted state is arrays and numbers, and its predict/transform call no user-supplied code.
TRUSTED_ESTIMATORS: Mapping[str, str] = {
    "sklearn.pipeline.Pipeline": "chains listed steps; calls nothing else",
    "sklearn.compose._column_transformer.ColumnTransformer": (
        "routes columns by name or index to listed transformers"
    ),
    "sklearn.compose._column_transformer.make_column_selector": (
        "selects columns by dtype or regular expression"
    ),
    "sklearn.impute._base.SimpleImputer": "fills missing values with fitted constants",
    "sklearn.preprocessing._encoders.OneHotEncoder": "compares values with fitted categories",
    "sklearn.preprocessing._encoders.OrdinalEncoder": "compares values with fitted categories",
    "sklearn.preprocessing._data.StandardScaler": "affine map with fitted arrays",
    "sklearn.preprocessing._data.MinMaxScaler": "affine map with fitted arrays",
    "sklearn.preprocessing._data.RobustScaler": "affine map with fitted arrays",
    "sklearn.linear_model._logistic.LogisticRegression": "dot product and softmax",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier": (
        "sums fitted trees' leaf values"
    ),
    "sklearn.ensemble._forest.RandomForestClassifier": "averages fitted trees",
    "sklearn.ensemble._forest.ExtraTreesClassifier": "averages fitted trees",
    "sklearn.ensemble._gb.GradientBoostingClassifier": "sums fitted regression trees",
    "sklearn.tree._classes.DecisionTreeClassifier": "walks one fitted tree",
    "sklearn.calibration.CalibratedClassifierCV": (
        "maps a listed classifier's scores through fitted calibrators"
    ),
}

# Types skops needs to rebuild the estimators above; none is a user-facing step.
TRUSTED_INTERNALS: Mapping[str, str] = {
    "sklearn.tree._tree.Tree": "a fitted tree's node arrays (every tree ensemble above)",
    "sklearn.tree._classes.ExtraTreeClassifier": "ExtraTreesClassifier's member trees",
    "sklearn.tree._classes.DecisionTreeRegressor": "GradientBoostingClassifier's stages",
    "sklearn.dummy.DummyClassifier": "GradientBoostingClassifier's prior (its init_)",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper": (
        "HistGradientBoosting's fitted bin edges"
    ),
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": (
        "HistGradientBoosting's fitted node arrays"
    ),
    "sklearn._loss.loss.HalfBinomialLoss": "the boosting loss of two classes (link only)",
    "sklearn._loss.loss.HalfMultinomialLoss": "the boosting loss of three or more classes",
    "sklearn._loss._loss.CyHalfBinomialLoss": "compiled part of HalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss": "compiled part of HalfMultinomialLoss",
    "sklearn._loss.link.LogitLink": "the logistic link of the binomial loss",
    "sklearn._loss.link.MultinomialLogit": "the softmax link of the multinomial loss",
    "sklearn._loss.link.Interval": "a loss's valid range (two numbers)",
    "sklearn.preprocessing._label.LabelEncoder": "class labels of boosting and calibration",
    "sklearn.calibration._CalibratedClassifier": "CalibratedClassifierCV's fitted folds",
    "sklearn.calibration._SigmoidCalibration": "Platt scaling: two fitted numbers",
    "sklearn.isotonic.IsotonicRegression": "isotonic calibration: fitted step function",
    "numpy.random._generator.Generator": "a fitted estimator's random state (never drawn from)",
    "numpy.random.mtrand.RandomState": "a fitted estimator's random state (never drawn from)",
    "numpy.random.PCG64": "the bit generator a Generator names",
    "numpy.random.MT19937": "the bit generator a RandomState names",
}

# Plain data: containers, scalars and arrays, and the `object` type make_column_selector names.
TRUSTED_PLAIN = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.slice",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.NoneType",
        "builtins.object",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.float32",
        "numpy.int64",
        "numpy.int32",
        "numpy.uint64",
        "numpy.bool_",
        "numpy.str_",
    }
)
TRUSTED_TYPES = frozenset(TRUSTED_ESTIMATORS) | frozenset(TRUSTED_INTERNALS) | TRUSTED_PLAIN

# FunctionTransformer calls whatever its ``func`` holds, so it is refused — except in the two
# shapes scikit-learn builds by itself: ColumnTransformer's ``remainder="passthrough"`` (no func)
# and HistGradientBoosting's own preprocessor for ``categorical_features`` (func is
# ``functools.partial(check_array, ...)``, which only validates an array).
FUNCTION_TRANSFORMER = "sklearn.preprocessing._function_transformer.FunctionTransformer"
_PARTIAL = "functools.partial"
_CHECK_ARRAY = "sklearn.utils.validation.check_array"
_CALLABLE_ATTRIBUTES = ("func", "inverse_func")

# skops loaders that rebuild a callable: whatever they name can run code when called.
_CODE_LOADERS = frozenset({"FunctionNode", "MethodNode", "PartialNode", "OperatorFuncNode"})
_LIBRARIES = ("sklearn.", "numpy.", "scipy.")
_RANDOM_LOADERS = frozenset({"RandomGeneratorNode", "RandomStateNode"})


@dataclass(frozen=True)
class Refusal:
    """A type an artifact names that may not be loaded, and why."""

    type_name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.type_name} ({self.reason})"


def audit_schema(schema: Any, skops_untrusted: frozenset[str] = frozenset()) -> list[Refusal]:
    """Every type ``schema`` names that is not trusted, with its reason; empty if all are.

    ``skops_untrusted`` is ``skops.io.get_untrusted_types`` of the same file: skops declares some
    names (a bit generator's) that the schema holds as plain text, and both lists must pass.
    """
    refused: dict[str, str] = {}
    for name, loader, allowed in _named_types(schema):
        if allowed or name in TRUSTED_TYPES:
            continue
        refused.setdefault(name, _why(name, loader))
    for name in skops_untrusted - TRUSTED_TYPES - _approved_callables(schema):
        refused.setdefault(name, _why(name, None))
    return [Refusal(name, refused[name]) for name in sorted(refused)]


def _approved_callables(schema: Any) -> frozenset[str]:
    """The callable names allowed because they sit where scikit-learn itself put them."""
    return frozenset(n for n, _, allowed in _named_types(schema) if allowed)


def _why(name: str, loader: str | None) -> str:
    if name == FUNCTION_TRANSFORMER:
        return "can run code: calls its func on every request"
    if loader in _CODE_LOADERS or name.startswith(("builtins.", "_operator.", "operator.")):
        return "a function: can run code"
    if not name.startswith(_LIBRARIES):
        return "a class outside scikit-learn and numpy: can run code"
    return "not on the reviewed list of trusted types"


def _named_types(node: Any, allowed: bool = False) -> Iterator[tuple[str, str | None, bool]]:
    """``(module.name, loader, allowed_here)`` of every node in a skops schema, depth first.

    ``allowed_here`` is true only for the validator callable inside a FunctionTransformer of a
    shape scikit-learn builds itself; everywhere else a callable stands on the list or is refused.
    """
    stack: list[tuple[Any, bool]] = [(node, allowed)]
    while stack:
        current, ok = stack.pop()
        if isinstance(current, list):
            stack.extend((child, ok) for child in current)
            continue
        if not isinstance(current, dict):
            continue
        name = _type_name(current)
        if name is not None:
            loader = current.get("__loader__")
            loader = loader if isinstance(loader, str) else None
            if name == FUNCTION_TRANSFORMER and _is_sklearns_own(current):
                yield name, loader, True
                stack.extend((child, True) for child in _callables_of(current))
                stack.extend((child, False) for child in _non_callables_of(current))
                continue
            yield name, loader, ok and name in (_PARTIAL, _CHECK_ARRAY)
            if loader in _RANDOM_LOADERS:
                bit_generator = _bit_generator(current)
                yield f"numpy.random.{bit_generator}", loader, False
            ok = ok and name == _PARTIAL  # only a partial's own func may inherit the allowance
        stack.extend((child, ok) for child in current.values())


def _attributes(transformer: dict[str, Any]) -> dict[str, Any]:
    content = transformer.get("content")
    inner = content.get("content") if isinstance(content, dict) else None
    return inner if isinstance(inner, dict) else {}


def _callables_of(transformer: dict[str, Any]) -> list[Any]:
    attrs = _attributes(transformer)
    return [attrs[key] for key in _CALLABLE_ATTRIBUTES if key in attrs]


def _non_callables_of(transformer: dict[str, Any]) -> list[Any]:
    attrs = _attributes(transformer)
    return [value for key, value in attrs.items() if key not in _CALLABLE_ATTRIBUTES]


def _is_sklearns_own(transformer: dict[str, Any]) -> bool:
    """True for a FunctionTransformer with no func, or with ``partial(check_array, ...)``."""
    attrs = _attributes(transformer)
    if not attrs:
        return False
    for key in _CALLABLE_ATTRIBUTES:
        value = attrs.get(key)
        if value is None or _is_null(value):
            continue
        if key == "func" and _is_check_array_partial(value):
            continue
        return False
    return all(_is_null(attrs[key]) for key in ("kw_args", "inv_kw_args") if key in attrs)


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and node.get("is_json") is True and node.get("content") == "null"


def _type_name(node: Any) -> str | None:
    if not isinstance(node, dict) or "__class__" not in node:
        return None
    return f"{node.get('__module__')}.{node['__class__']}"


def _is_check_array_partial(node: Any) -> bool:
    if _type_name(node) != _PARTIAL:
        return False
    content = node.get("content")
    return isinstance(content, dict) and _type_name(content.get("func")) == _CHECK_ARRAY


def _bit_generator(node: dict[str, Any]) -> str:
    """The bit generator's class name a random state node holds as plain text (``PCG64``)."""
    content = node.get("content")
    if not isinstance(content, dict):
        return "<missing>"
    # Generator: content.bit_generator.content.bit_generator; RandomState: content.content.…
    state = content.get("bit_generator") or content
    inner = state.get("content") if isinstance(state, dict) else None
    named = inner.get("bit_generator") if isinstance(inner, dict) else None
    try:
        value = json.loads(named["content"]) if isinstance(named, dict) else None
    except (TypeError, ValueError):
        value = None
    return value if isinstance(value, str) and value.isidentifier() else "<missing>"
