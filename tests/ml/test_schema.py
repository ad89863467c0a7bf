from __future__ import annotations

import math
import re
from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_ml.ml.schema import (
    FeatureSchema,
    FeatureSpec,
    ValidationProblem,
    check_instance,
    validate_batch,
    validate_instance,
)

SCHEMA = FeatureSchema(
    (
        FeatureSpec("mean_radius", "numeric", 6.0, 28.0),
        FeatureSpec("age", "numeric", 0.0, 100.0),
        FeatureSpec("bmi", "numeric", 10.0, 60.0),
    )
)
GOOD = {"mean_radius": 14.2, "age": 51, "bmi": 27.5}
SECRET = 987654.321  # a distinctive value that must never appear in a message


def with_value(name: str, value: Any) -> dict[str, Any]:
    row = dict(GOOD)
    row[name] = value
    return row


def test_valid_instance_is_float64_in_schema_order() -> None:
    shuffled = {"bmi": 27.5, "age": 51, "mean_radius": 14.2}
    row = validate_instance(SCHEMA, shuffled)
    assert row.dtype == np.float64
    assert row.shape == (3,)
    assert row.tolist() == [14.2, 51.0, 27.5]


def test_out_of_training_range_is_not_an_error() -> None:
    row = validate_instance(SCHEMA, with_value("age", 1e6))
    assert row[1] == 1e6


@pytest.mark.parametrize(
    "features",
    [
        OrderedDict(GOOD),
        MappingProxyType(GOOD),
        {"mean_radius": np.float64(14.2), "age": np.int64(51), "bmi": np.float32(27.5)},
        {"mean_radius": 14.2, "age": 10**300, "bmi": 27.5},
    ],
    ids=["ordered-dict", "mapping-proxy", "numpy-scalars", "big-int"],
)
def test_other_mappings_and_number_types_are_accepted(features: Any) -> None:
    row = validate_instance(SCHEMA, features)
    assert row.shape == (3,)
    assert np.isfinite(row).all()


@pytest.mark.parametrize(
    ("features", "field", "fragment"),
    [
        ({"age": 51, "bmi": 27.5}, "mean_radius", "missing"),
        ({**GOOD, "zip_code": SECRET}, "zip_code", "unknown"),
        (with_value("age", "51"), "age", "string"),
        (with_value("age", b"51"), "age", "string"),
        (with_value("age", None), "age", "null"),
        (with_value("age", True), "age", "boolean"),
        (with_value("age", False), "age", "boolean"),
        (with_value("age", np.bool_(True)), "age", "boolean"),
        (with_value("age", math.nan), "age", "NaN"),
        (with_value("age", math.inf), "age", "infinity"),
        (with_value("age", -math.inf), "age", "infinity"),
        (with_value("age", np.float64("nan")), "age", "NaN"),
        (with_value("age", [SECRET]), "age", "number"),
        (with_value("age", {"v": SECRET}), "age", "number"),
        (with_value("age", 10**400), "age", "too large"),
        (with_value("age", complex(SECRET, 1)), "age", "number"),
        ([14.2, 51, 27.5], "features", "object"),
        ("mean_radius=14.2", "features", "object"),
        (None, "features", "object"),
    ],
)
def test_bad_instance_is_refused_naming_the_field(features: Any, field: str, fragment: str) -> None:
    with pytest.raises(ValidationProblem) as info:
        validate_instance(SCHEMA, features)
    assert info.value.field == field
    assert fragment in info.value.message
    assert str(SECRET) not in str(info.value)


def test_missing_is_reported_before_unknown_and_values() -> None:
    features = {"age": "x", "bogus": 1, "bmi": 2.0}
    with pytest.raises(ValidationProblem) as info:
        validate_instance(SCHEMA, features)
    assert info.value.field == "mean_radius"


def test_an_unknown_field_name_is_truncated() -> None:
    with pytest.raises(ValidationProblem) as info:
        validate_instance(SCHEMA, {**GOOD, "x" * 10_000: 1})
    assert len(info.value.field) <= 64


def test_batch_is_2d_in_schema_order() -> None:
    X = validate_batch(SCHEMA, [GOOD, with_value("bmi", 30)])
    assert X.shape == (2, 3)
    assert X.dtype == np.float64
    assert X[1].tolist() == [14.2, 51.0, 30.0]


@pytest.mark.parametrize(
    ("instances", "field"),
    [
        ([GOOD, GOOD, GOOD, with_value("mean_radius", math.nan)], "instances[3].mean_radius"),
        ([GOOD, {"age": 1, "bmi": 2}], "instances[1].mean_radius"),
        ([GOOD, {**GOOD, "extra": 1}], "instances[1].extra"),
        ([GOOD, 7], "instances[1]"),
        ([GOOD, with_value("age", 10**400)], "instances[1].age"),
        ([], "instances"),
        (GOOD, "instances"),
        ("abc", "instances"),
        (None, "instances"),
    ],
)
def test_bad_batch_names_the_instance_and_field(instances: Any, field: str) -> None:
    with pytest.raises(ValidationProblem) as info:
        validate_batch(SCHEMA, instances)
    assert info.value.field == field


def test_batch_size_limit() -> None:
    assert validate_batch(SCHEMA, [GOOD] * 3, max_instances=3).shape == (3, 3)
    with pytest.raises(ValidationProblem, match="at most 2"):
        validate_batch(SCHEMA, [GOOD] * 3, max_instances=2)


values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.floats(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["mean_radius", "age", "bmi", "other"]), values))
def test_any_input_validates_or_raises_validation_problem(features: dict[str, Any]) -> None:
    try:
        row = validate_instance(SCHEMA, features)
    except ValidationProblem as exc:
        assert exc.field
        return
    assert set(features) == set(SCHEMA.names)
    assert np.isfinite(row).all()
    assert all(type(v) in (int, float) for v in features.values())


def test_schema_round_trips_through_its_metadata_form() -> None:
    X = np.array([[1.0, 5.0, 3.0], [2.0, 4.0, 9.0]])
    schema = FeatureSchema.from_training(X, ["a", "b", "c"])
    assert schema.features[1] == FeatureSpec("b", "numeric", 4.0, 5.0)
    assert FeatureSchema.from_list(schema.to_list()) == schema


@pytest.mark.parametrize(
    ("X", "names"),
    [
        (np.zeros(3), ["a", "b", "c"]),  # one dimension
        (np.zeros((2, 2)), ["a", "b", "c"]),  # a column short
        (np.zeros((2, 4)), ["a", "b", "c"]),  # a column too many
        (np.zeros((0, 3)), ["a", "b", "c"]),  # no rows
    ],
    ids=["1-d", "column-short", "column-over", "no-rows"],
)
def test_training_data_of_the_wrong_shape_is_refused_with_the_reason(
    X: np.ndarray, names: list[str]
) -> None:
    with pytest.raises(
        ValueError, match=r"^X must be a non-empty 2-D array with one column per feature name$"
    ):
        FeatureSchema.from_training(X, names)


def test_one_training_row_gives_each_feature_its_value_as_both_bounds() -> None:
    schema = FeatureSchema.from_training(np.array([[1.0, -2.0]]), ["a", "b"])
    assert [(f.min, f.max) for f in schema.features] == [(1.0, 1.0), (-2.0, -2.0)]


def test_training_numbers_given_as_text_get_numeric_bounds() -> None:
    # Read from a text file without conversion: "10" sorts before "9" as text.
    schema = FeatureSchema.from_training([["9", "0.5"], ["10", "-1"]], ["a", "b"])
    assert [(f.min, f.max) for f in schema.features] == [(9.0, 10.0), (-1.0, 0.5)]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ((), "a schema needs at least one feature"),
        ((FeatureSpec("a"), FeatureSpec("a")), "feature names must be unique"),
        ((FeatureSpec("a", "categorical"),), "feature 'a' has unsupported type 'categorical'"),
        ((FeatureSpec(""),), "a feature name must be non-empty text"),
        ((FeatureSpec("a" * 129),), "a feature name must be at most 128 characters"),
        ((FeatureSpec("a\nb"),), "a feature name must hold printable characters only"),
    ],
    ids=["empty", "duplicate", "bad-type", "empty-name", "long-name", "control-character"],
)
def test_invalid_schema_is_refused(features: tuple[FeatureSpec, ...], message: str) -> None:
    # A stored or imported schema's refusal says which rule it breaks, in full.
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        FeatureSchema(features)


def test_a_stored_feature_without_bounds_or_nullable_is_unbounded_and_required() -> None:
    schema = FeatureSchema.from_list([{"name": "a", "type": "number"}])
    assert schema.features[0] == FeatureSpec("a", "number", -math.inf, math.inf, nullable=False)
    # Unbounded: no value of it is ever out of its training range.
    for value in (-1e308, 0.0, 1e308):
        assert validate_instance(schema, {"a": value}).tolist() == [value]
        assert check_instance(schema, {"a": value}).warnings == []


def test_categories_given_as_a_list_are_kept_as_a_tuple() -> None:
    # A frozen spec must hash and compare the same whatever sequence it was given.
    spec = FeatureSpec("site", "category", categories=["north", "south"])  # type: ignore[arg-type]
    assert spec.categories == ("north", "south") and type(spec.categories) is tuple
    assert hash(spec) == hash(FeatureSpec("site", "category", categories=("north", "south")))


# Names a display string cannot carry unambiguously: monitoring must get the feature itself.
AWKWARD = FeatureSchema(
    (
        FeatureSpec("blood.pressure", "numeric", 50.0, 200.0),
        FeatureSpec("instances[0].age", "numeric", 0.0, 100.0),
        FeatureSpec("plain", "numeric", 0.0, 1.0),
    )
)
AWKWARD_GOOD = {"blood.pressure": 120.0, "instances[0].age": 40.0, "plain": 0.5}


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("blood.pressure", None, "missing"),
        ("blood.pressure", "120", "wrong_type"),
        ("instances[0].age", math.nan, "non_finite"),
        ("instances[0].age", True, "wrong_type"),
        ("plain", 10**400, "non_finite"),
    ],
)
def test_a_value_problem_carries_its_feature_and_kind(name: str, value: Any, kind: str) -> None:
    one = {**AWKWARD_GOOD, name: value}
    with pytest.raises(ValidationProblem) as single:
        validate_instance(AWKWARD, one)
    with pytest.raises(ValidationProblem) as batch:
        validate_batch(AWKWARD, [AWKWARD_GOOD, one])
    for problem, field in ((single.value, name), (batch.value, f"instances[1].{name}")):
        assert (problem.feature, problem.kind, problem.field) == (name, kind, field)


@pytest.mark.parametrize("name", ["blood.pressure", "instances[0].age", "plain"])
def test_a_missing_feature_carries_its_name(name: str) -> None:
    row = {k: v for k, v in AWKWARD_GOOD.items() if k != name}
    with pytest.raises(ValidationProblem) as info:
        validate_batch(AWKWARD, [row])
    assert (info.value.feature, info.value.kind) == (name, "missing")


@pytest.mark.parametrize(
    "features",
    [{**AWKWARD_GOOD, "plain.extra": 1.0}, [1.0, 2.0, 3.0], None],
    ids=["unknown-name", "not-an-object", "null"],
)
def test_a_structural_problem_names_no_feature(features: Any) -> None:
    # A client's own key never becomes a feature (and so never a metric label).
    with pytest.raises(ValidationProblem) as info:
        validate_instance(AWKWARD, features)
    assert info.value.feature is None and info.value.kind is None
