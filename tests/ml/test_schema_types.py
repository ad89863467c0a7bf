"""Typed request validation: each type, the null rule, warnings, every problem listed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from nexus_ml.ml.schema import (
    MAX_PROBLEMS,
    FeatureSchema,
    FeatureSpec,
    ValidationProblem,
    check_batch,
    check_instance,
    feature_name_problem,
)

SCHEMA = FeatureSchema(
    (
        FeatureSpec("Heart rate (bpm)", "number", 30.0, 200.0),
        FeatureSpec("age", "integer", 18.0, 99.0),
        FeatureSpec("lactate", "number", 0.1, 20.0, nullable=True),
        FeatureSpec("sex", "category", categories=("F", "M")),
        FeatureSpec("site", "category", nullable=True, categories=("north", "south")),
    )
)
GOOD: dict[str, Any] = {
    "Heart rate (bpm)": 80.5,
    "age": 51,
    "lactate": 1.2,
    "sex": "F",
    "site": "north",
}
SECRET = "987654.321-secret"


def problems(features: Any, schema: FeatureSchema = SCHEMA) -> list[tuple[str, str | None]]:
    with pytest.raises(ValidationProblem) as info:
        check_instance(schema, features)
    assert SECRET not in str(info.value)
    assert all(SECRET not in p.message and SECRET not in p.field for p in info.value.problems)
    return [(p.field, p.kind) for p in info.value.problems]


def test_a_valid_row_keeps_types_in_schema_order() -> None:
    row, warnings = check_instance(SCHEMA, dict(reversed(list(GOOD.items()))))
    assert row.dtype == object
    assert row.tolist() == [80.5, 51.0, 1.2, "F", "north"]
    assert warnings == []


def test_null_is_answered_only_where_the_feature_is_nullable() -> None:
    row, warnings = check_instance(SCHEMA, {**GOOD, "lactate": None, "site": None})
    assert math.isnan(row[2]) and row[4] is None
    assert warnings == []  # a declared missing value is not a warning
    assert problems({**GOOD, "Heart rate (bpm)": None, "sex": None}) == [
        ("Heart rate (bpm)", "missing"),
        ("sex", "missing"),
    ]


@pytest.mark.parametrize(
    ("feature", "value", "kind"),
    [
        ("Heart rate (bpm)", SECRET, "wrong_type"),
        ("Heart rate (bpm)", True, "wrong_type"),
        ("Heart rate (bpm)", math.inf, "non_finite"),
        ("Heart rate (bpm)", math.nan, "non_finite"),
        ("age", 2.5, "wrong_type"),
        ("age", False, "wrong_type"),
        ("age", SECRET, "wrong_type"),
        ("sex", 1, "wrong_type"),
        ("sex", True, "wrong_type"),
        ("sex", [SECRET], "wrong_type"),
        ("lactate", SECRET, "wrong_type"),
        ("site", 3.5, "wrong_type"),
    ],
)
def test_wrong_types_are_refused_naming_the_feature(feature: str, value: Any, kind: str) -> None:
    assert problems({**GOOD, feature: value}) == [(feature, kind)]


def test_an_integer_feature_takes_whole_numbers_of_either_json_kind() -> None:
    assert check_instance(SCHEMA, {**GOOD, "age": 40.0}).row[1] == 40.0
    assert check_instance(SCHEMA, {**GOOD, "age": 40}).row[1] == 40.0


def test_a_numbers_only_schema_refuses_a_fractional_integer_beside_whole_numbers() -> None:
    # Numbers-only rows take a fast check first; a fractional value of the integer feature
    # must not pass it because the other (number) features happen to hold whole values.
    schema = FeatureSchema(
        (FeatureSpec("age", "integer", 18.0, 99.0), FeatureSpec("hr", "number", 30.0, 200.0))
    )
    with pytest.raises(ValidationProblem) as info:
        check_instance(schema, {"age": 51.5, "hr": 80.0})
    assert [(p.field, p.kind) for p in info.value.problems] == [("age", "wrong_type")]
    assert check_instance(schema, {"age": 51, "hr": 80.5}).row.tolist() == [51.0, 80.5]


def test_every_problem_of_a_request_is_listed() -> None:
    features = {**GOOD, "age": 2.5, "sex": 7, "bogus": SECRET}
    del features["Heart rate (bpm)"]
    with pytest.raises(ValidationProblem) as info:
        check_instance(SCHEMA, features)
    listed = [(p.field, p.kind) for p in info.value.problems]
    # Missing first, then unknown names, then values in schema order.
    assert listed == [
        ("Heart rate (bpm)", "missing"),
        ("bogus", None),
        ("age", "wrong_type"),
        ("sex", "wrong_type"),
    ]
    assert info.value.field == "Heart rate (bpm)"
    assert str(info.value).endswith("(and 3 more)")
    assert SECRET not in str(info.value)


def test_a_batch_lists_every_instances_problems_bounded() -> None:
    bad = {**GOOD, "age": 2.5, "sex": 1}
    with pytest.raises(ValidationProblem) as info:
        check_batch(SCHEMA, [GOOD, bad, GOOD, bad])
    assert [p.field for p in info.value.problems] == [
        "instances[1].age",
        "instances[1].sex",
        "instances[3].age",
        "instances[3].sex",
    ]
    with pytest.raises(ValidationProblem) as info:
        check_batch(SCHEMA, [bad] * MAX_PROBLEMS)
    assert len(info.value.problems) == MAX_PROBLEMS
    assert info.value.omitted == MAX_PROBLEMS
    assert str(info.value).endswith(f"(and {2 * MAX_PROBLEMS - 1} more)")


def test_warnings_name_out_of_range_and_unseen_category_never_the_value() -> None:
    row, warnings = check_instance(
        SCHEMA, {**GOOD, "Heart rate (bpm)": 250.0, "age": 17, "site": SECRET}
    )
    assert warnings == [
        ("Heart rate (bpm)", "out_of_range"),
        ("age", "out_of_range"),
        ("site", "unseen_category"),
    ]
    assert row[4] == SECRET  # the pipeline gets the value; the warning does not
    _, batch_warnings = check_batch(SCHEMA, [GOOD, {**GOOD, "lactate": 0.0}])
    assert batch_warnings == [[], [("lactate", "out_of_range")]]


def test_an_unseen_category_is_refused_where_the_pipeline_cannot_answer_it() -> None:
    strict = SCHEMA.refusing_unseen(frozenset({"sex"}))
    assert problems({**GOOD, "sex": SECRET, "site": "west"}, strict) == [("sex", "unseen_category")]
    assert check_instance(strict, {**GOOD, "site": "west"}).warnings == [
        ("site", "unseen_category")
    ]


def test_number_schemas_stay_float_arrays_and_accept_nulls_where_allowed() -> None:
    schema = FeatureSchema(
        (FeatureSpec("a", "number", 0.0, 1.0), FeatureSpec("b", "integer", 0.0, 9.0, True))
    )
    X, warnings = check_batch(schema, [{"a": 0.5, "b": 3}, {"a": 0.5, "b": None}])
    assert X.dtype == np.float64
    assert X[0].tolist() == [0.5, 3.0] and math.isnan(X[1, 1])
    assert warnings == [[], []]
    assert problems({"a": 0.5, "b": 3.5}, schema) == [("b", "wrong_type")]
    assert problems({"a": 10**400, "b": 3}, schema) == [("a", "non_finite")]


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "non-empty"),
        ("x" * 129, "at most 128"),
        ("a\nb", "printable"),
        ("a\x00b", "printable"),
        ("a\u200bb", "printable"),  # a zero-width space: invisible in a dashboard
    ],
)
def test_feature_names_are_bounded_printable_text(name: str, fragment: str) -> None:
    assert fragment in str(feature_name_problem(name))
    with pytest.raises(ValueError, match=fragment):
        FeatureSchema((FeatureSpec(name),))


def test_any_printable_name_of_a_users_file_is_accepted() -> None:
    for name in ("od280/od315_of_diluted_wines", "BMI (kg/m²)", "x" * 128, "[/]", "a b"):
        assert feature_name_problem(name) is None


def test_an_unknown_key_is_echoed_bounded_and_printable() -> None:
    listed = problems({**GOOD, "zz\n\x1b[31m" + "y" * 500: 1})
    [(field, kind)] = listed
    assert kind is None and len(field) <= 64 and field.isprintable()


def test_legacy_numeric_reads_as_a_non_null_number() -> None:
    schema = FeatureSchema.from_list([{"name": "a", "type": "numeric", "min": 0.0, "max": 1.0}])
    assert schema.features[0] == FeatureSpec("a", "number", 0.0, 1.0, nullable=False)
    assert schema.to_list() == [
        {"name": "a", "type": "number", "nullable": False, "min": 0.0, "max": 1.0}
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x" * 257, "must be at most 256 characters"),
        ("F\x00", "must not contain a NUL character"),
        ("\ud800", "must be valid Unicode text"),
    ],
)
def test_a_category_no_store_can_hold_is_refused_with_its_reason(value: str, message: str) -> None:
    # Each would fail the record after the answer was computed (PostgreSQL's JSON holds no
    # NUL, no UTF-8 store a lone surrogate, the metadata bounds a category's length).
    with pytest.raises(ValidationProblem) as info:
        check_instance(SCHEMA, {**GOOD, "site": value})
    assert [(p.field, p.message, p.kind) for p in info.value.problems] == [
        ("site", message, "wrong_type")
    ]


def test_a_category_of_exactly_the_longest_length_is_accepted() -> None:
    longest = "é" * 256  # characters, not bytes: 512 in UTF-8
    row, warnings = check_instance(SCHEMA, {**GOOD, "site": longest})
    assert row[4] == longest
    assert warnings == [("site", "unseen_category")]  # unseen in training: answered, warned


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ({"age": 51}, "must be a list of feature objects"),
        ("[]", "must be a list of feature objects"),
        (b"[]", "must be a list of feature objects"),
        (7, "must be a list of feature objects"),
        ([], "must contain at least one instance"),
        ([GOOD, GOOD, GOOD], "must contain at most 2 instances"),
    ],
    ids=["object", "text", "bytes", "number", "empty", "over"],
)
def test_a_batch_that_is_not_a_list_of_instances_is_refused_with_the_reason(
    instances: Any, message: str
) -> None:
    with pytest.raises(ValidationProblem) as info:
        check_batch(SCHEMA, instances, max_instances=2)
    assert [(p.field, p.message) for p in info.value.problems] == [("instances", message)]
    assert str(info.value) == f"instances: {message}"


def test_a_batch_of_exactly_the_most_instances_is_checked() -> None:
    assert check_batch(SCHEMA, [GOOD, GOOD], max_instances=2).X.shape == (2, 5)


@pytest.mark.parametrize(
    ("feature", "value", "message"),
    [
        ("sex", None, "must be a string, not null (this feature may not be missing)"),
        ("sex", True, "must be a string, not a boolean"),
        ("age", None, "must be a number, not null (this feature may not be missing)"),
        ("age", False, "must be a number, not a boolean"),
    ],
)
def test_a_refusal_names_what_the_feature_takes(feature: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationProblem) as info:
        check_instance(SCHEMA, {**GOOD, feature: value})
    assert [(p.field, p.message) for p in info.value.problems] == [(feature, message)]


@pytest.mark.parametrize(
    ("feature", "value", "message", "kind"),
    [
        ("sex", 1, "must be a string (a category)", "wrong_type"),
        ("sex", [SECRET], "must be a string (a category)", "wrong_type"),
        ("Heart rate (bpm)", SECRET, "must be a number, not a string", "wrong_type"),
        ("Heart rate (bpm)", SECRET.encode(), "must be a number, not a string", "wrong_type"),
        ("Heart rate (bpm)", [1.0], "must be a number", "wrong_type"),
        ("Heart rate (bpm)", {"v": 1.0}, "must be a number", "wrong_type"),
        ("Heart rate (bpm)", 10**400, "is too large to represent as a number", "non_finite"),
        ("Heart rate (bpm)", math.nan, "must be a finite number, not NaN", "non_finite"),
        ("Heart rate (bpm)", -math.inf, "must be a finite number, not infinity", "non_finite"),
        ("age", 51.5, "must be a whole number (an integer feature)", "wrong_type"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_every_refusal_of_a_value_has_its_own_message_and_kind(
    feature: str, value: Any, message: str, kind: str
) -> None:
    with pytest.raises(ValidationProblem) as info:
        check_instance(SCHEMA, {**GOOD, feature: value})
    assert [(p.field, p.message, p.kind) for p in info.value.problems] == [(feature, message, kind)]
    assert SECRET not in str(info.value)


def test_an_unseen_category_the_model_cannot_answer_is_refused_with_its_reason() -> None:
    strict = SCHEMA.refusing_unseen(frozenset({"sex"}))
    with pytest.raises(ValidationProblem) as info:
        check_instance(strict, {**GOOD, "sex": SECRET})
    assert [(p.field, p.message, p.kind) for p in info.value.problems] == [
        (
            "sex",
            "is a category not seen in training, which this model cannot answer",
            "unseen_category",
        )
    ]


NUMBERS = FeatureSchema(
    (FeatureSpec("a", "number", 1.0, 2.0), FeatureSpec("b", "number", -5.0, 5.0))
)


@pytest.mark.parametrize("schema", [NUMBERS, SCHEMA], ids=["numbers-only", "typed"])
def test_a_value_exactly_on_a_training_bound_is_in_range_and_a_hair_outside_is_not(
    schema: FeatureSchema,
) -> None:
    spec = schema.features[0]
    base = {f.name: GOOD.get(f.name, f.min) for f in schema.features}

    def warned(value: float) -> list[Any]:
        return check_instance(schema, {**base, spec.name: value}).warnings

    assert warned(spec.min) == warned(spec.max) == []
    assert warned(math.nextafter(spec.min, -math.inf)) == [(spec.name, "out_of_range")]
    assert warned(math.nextafter(spec.max, math.inf)) == [(spec.name, "out_of_range")]


def test_every_feature_out_of_range_is_named_whatever_its_place() -> None:
    # The numbers-only check stops at the first value out of range, then names them all.
    assert check_instance(NUMBERS, {"a": 1.5, "b": 6.0}).warnings == [("b", "out_of_range")]
    assert check_instance(NUMBERS, {"a": 0.0, "b": 6.0}).warnings == [
        ("a", "out_of_range"),
        ("b", "out_of_range"),
    ]
    assert check_instance(NUMBERS, {"a": 3.0, "b": 0.0}).warnings == [("a", "out_of_range")]


def test_a_missing_value_does_not_hide_the_warnings_of_the_features_after_it() -> None:
    row, warnings = check_instance(SCHEMA, {**GOOD, "lactate": None, "site": "west"})
    assert math.isnan(row[2])  # a missing number is NaN, a missing category None
    assert warnings == [("site", "unseen_category")]
    category_first = FeatureSchema(
        (
            FeatureSpec("site", "category", nullable=True, categories=("north",)),
            FeatureSpec("age", "integer", 18.0, 99.0),
        )
    )
    row, warnings = check_instance(category_first, {"site": None, "age": 17})
    assert row[0] is None
    assert warnings == [("age", "out_of_range")]


def test_one_problem_given_by_its_parts_is_listed_as_itself() -> None:
    one = ValidationProblem("f[0]", "must be a number", feature="f", kind="wrong_type")
    assert [(p.field, p.message, p.feature, p.kind) for p in one.problems] == [
        ("f[0]", "must be a number", "f", "wrong_type")
    ]
    assert (one.field, one.message, one.feature, one.kind, one.omitted) == (
        "f[0]",
        "must be a number",
        "f",
        "wrong_type",
        0,
    )
    assert str(one) == "f[0]: must be a number"


@pytest.mark.parametrize(
    ("features", "problem"),
    [
        ([1, 2], ("features", "must be an object of feature name to value", None, None)),
        (
            {k: v for k, v in GOOD.items() if k != "age"},
            ("age", "required feature is missing", "age", "missing"),
        ),
        ({**GOOD, "bogus": 1}, ("bogus", "unknown feature", None, None)),
    ],
    ids=["not-an-object", "missing", "unknown"],
)
def test_a_request_of_the_wrong_shape_is_refused_with_its_reason(
    features: Any, problem: tuple[str, str, str | None, str | None]
) -> None:
    with pytest.raises(ValidationProblem) as info:
        check_instance(SCHEMA, features)
    assert [(p.field, p.message, p.feature, p.kind) for p in info.value.problems] == [problem]


def test_an_integer_past_a_float_in_a_batch_is_named_by_its_instance() -> None:
    # Plain ints pass the numbers-only fast check (their sum is an exact int) and overflow only
    # when the batch becomes a float array: the exact path must still name its instance.
    with pytest.raises(ValidationProblem) as info:
        check_batch(NUMBERS, [{"a": 1.5, "b": 0.0}, {"a": 10**400, "b": 0}])
    assert [(p.field, p.kind) for p in info.value.problems] == [("instances[1].a", "non_finite")]


def test_a_stored_feature_without_a_type_reads_as_a_number() -> None:
    # Bundles written before the types (issue 13) list name, min and max only.
    [spec] = FeatureSchema.from_list([{"name": "age", "min": 18, "max": 99}]).features
    assert (spec.type, spec.min, spec.max, spec.nullable) == ("number", 18.0, 99.0, False)
