"""Segment declarations: parsing, refusals naming the feature, closed groups, masks."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from nexus_ml.config import Settings
from nexus_ml.ml.schema import FeatureSchema, FeatureSpec
from nexus_ml.ml.segments import (
    ALL,
    MAX_DISTINCT_VALUES,
    MAX_SEGMENT_GROUPS,
    MAX_STORED_SEGMENT_GROUPS,
    Segment,
    SegmentError,
    SegmentIndex,
    check_segments,
    declaration_text,
    number_label,
    parse_segments,
)

SCHEMA = FeatureSchema(
    (
        FeatureSpec("age", "integer", 18.0, 98.0, nullable=True),
        FeatureSpec("sex", "number", 1.0, 2.0),
        FeatureSpec("site", "category", nullable=True, categories=("east", "north", "other")),
        FeatureSpec("bmi", "number", 10.0, 50.0),
    )
)
FRAME = {
    "age": np.array([20.0, 45.0, np.nan, 70.0]),
    "sex": np.array([1.0, 2.0, 2.0, 1.0]),
    "bmi": np.linspace(10.0, 50.0, 40)[:4],
}


def test_a_declaration_gives_closed_groups() -> None:
    segments = parse_segments(" sex, age:0-40-65-120 ,site", SCHEMA, FRAME)
    assert segments == [
        Segment("sex", ("1", "2", "other")),
        Segment("age", ("0-40", "40-65", "65-120", "missing", "other"), (0.0, 40.0, 65.0, 120.0)),
        # A category named "other" is that group, once.
        Segment("site", ("east", "north", "other", "missing")),
    ]
    assert segments[1].labels()[:2] == ["age=0-40", "age=40-65"]
    assert segments[1].to_dict() == {
        "feature": "age",
        "groups": ["0-40", "40-65", "65-120", "missing", "other"],
        "edges": [0.0, 40.0, 65.0, 120.0],
    }


@pytest.mark.parametrize("text", [None, "", "  "])
def test_no_declaration_is_no_segments(text: str | None) -> None:
    assert parse_segments(text, SCHEMA, FRAME) == []


def test_negative_and_fractional_edges() -> None:
    schema = FeatureSchema((FeatureSpec("z", "number", -20.0, 20.0),))
    (segment,) = parse_segments("z:-10--0.5-2.5", schema)
    assert segment.edges == (-10.0, -0.5, 2.5)
    assert segment.groups == ("-10--0.5", "-0.5-2.5", "other")


def test_a_stored_declaration_reads_back_as_the_same_segments() -> None:
    schema = FeatureSchema((*SCHEMA.features, FeatureSpec("z", "number", -20.0, 20.0)))
    segments = parse_segments("sex,z:-10--0.5-2.5,site,age:0-40-65-120", schema, FRAME)
    text = declaration_text(s.to_dict() for s in segments)
    assert text == "sex,z:-10--0.5-2.5,site,age:0-40-65-120"
    assert parse_segments(text, schema, FRAME) == segments


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("weight", ["'weight'", "not a feature"]),
        ("age:0-40,age:40-60", ["age", "twice"]),
        ("age:65-40-120", ["age", "strictly increasing"]),
        ("age:40-40", ["age", "strictly increasing"]),
        ("age:40", ["age", "at least two edges"]),
        ("age:a-b", ["age", "numbers joined by '-'"]),
        ("age:0-40-", ["age", "numbers joined by '-'"]),
        ("age:0-1e999", ["age", "finite"]),
        ("site:0-1", ["site", "no bin edges"]),
        ("sex,,age:0-1", ["empty item"]),
        ("age:0-40x", ["age", "numbers joined by '-'"]),
    ],
)
def test_bad_declarations_are_refused_naming_the_feature(text: str, words: list[str]) -> None:
    with pytest.raises(SegmentError) as refused:
        parse_segments(text, SCHEMA, FRAME)
    for word in words:
        assert word in str(refused.value)


def test_value_groups_need_the_training_values() -> None:
    with pytest.raises(SegmentError, match="sex: no training values"):
        parse_segments("sex", SCHEMA)


def test_a_numeric_feature_with_many_values_needs_edges() -> None:
    frame = {"bmi": np.arange(MAX_DISTINCT_VALUES + 1, dtype=float) + 10.0}
    with pytest.raises(SegmentError, match=r"bmi.*needs bin edges"):
        parse_segments("bmi", SCHEMA, frame)
    frame = {"bmi": np.arange(MAX_DISTINCT_VALUES, dtype=float) + 10.0}
    (segment,) = parse_segments("bmi", SCHEMA, frame)
    assert len(segment.groups) == MAX_DISTINCT_VALUES + 1


def test_more_groups_than_the_cap_are_refused() -> None:
    text = "sex,age:0-40-65-120"  # 3 + 5 groups
    assert len(parse_segments(text, SCHEMA, FRAME, max_groups=8)) == 2
    with pytest.raises(SegmentError, match="8 groups, more than the maximum of 7"):
        parse_segments(text, SCHEMA, FRAME, max_groups=7)


def test_a_category_that_is_free_text_cannot_be_a_group() -> None:
    long = FeatureSpec("note", "category", categories=("a" * 65, "b"))
    schema = FeatureSchema((long,))
    with pytest.raises(SegmentError) as refused:
        parse_segments("note", schema)
    assert "note" in str(refused.value)
    assert "a" * 65 not in str(refused.value)


@pytest.mark.parametrize(
    ("segment", "words"),
    [
        # lacks "missing" (nullable)
        (Segment("age", ("0-40", "other"), (0.0, 40.0)), ["closed list of groups"]),
        (
            Segment("age", ("0-40", "40-30", "missing", "other"), (0.0, 40.0, 30.0)),
            ["edges must be strictly increasing"],
        ),
        (Segment("sex", ("2", "1", "other")), ["value groups must be strictly increasing"]),
        (Segment("sex", ("1", "1", "other")), ["value groups must be strictly increasing"]),
        (Segment("sex", ("1.0", "other")), ["canonical form"]),
        (Segment("sex", ("7", "other")), ["outside the training range"]),
        (Segment("sex", ("x", "other")), ["a value group is not a number"]),
        (
            Segment("sex", ("1", *(f"1.{i}" for i in range(1, 10)), "2", "other")),
            [f"more than {MAX_DISTINCT_VALUES} value groups"],
        ),
        (Segment("age", ("20", "20.5", "missing", "other")), ["must be whole"]),
        (
            Segment("site", ("east", "north", "other", "missing"), (0.0, 1.0)),
            ["a category feature has no edges"],
        ),
        (Segment("site", ("east", "missing", "other")), ["closed list of groups"]),
    ],
)
def test_stored_segments_must_be_closed_lists(segment: Segment, words: list[str]) -> None:
    with pytest.raises(SegmentError) as refused:
        check_segments(SCHEMA, [segment], max_groups=64)
    message = str(refused.value)
    # Each refusal names the stored feature and says which rule the segment breaks.
    assert message.startswith(f"segment {segment.feature}: "), message
    for word in words:
        assert word in message


def test_a_stored_segment_of_an_unknown_feature_is_refused_without_echoing_it() -> None:
    with pytest.raises(SegmentError) as refused:
        check_segments(SCHEMA, [Segment("weight", ("other",))], max_groups=64)
    assert str(refused.value) == "a segment names a feature the model does not have"


@pytest.mark.parametrize(
    "segment",
    [
        Segment("age", ("20", "45", "70", "missing", "other")),  # an integer's whole values
        Segment("sex", ("1", "1.5", "2", "other")),  # a number's values need not be whole
        Segment("sex", (*(f"1.{i}" for i in range(1, 10)), "2", "other")),  # exactly the maximum
        Segment("age", ("18-98", "missing", "other"), (18.0, 98.0)),
        Segment("site", ("east", "north", "other", "missing")),
    ],
)
def test_stored_segments_that_are_closed_lists_are_accepted(segment: Segment) -> None:
    check_segments(SCHEMA, [segment], max_groups=64)


def test_a_stored_category_segment_whose_categories_cannot_be_labels_is_refused() -> None:
    schema = FeatureSchema((FeatureSpec("note", "category", categories=("a" * 65, "b")),))
    with pytest.raises(SegmentError) as refused:
        check_segments(schema, [Segment("note", ("a" * 65, "b", "other"))], max_groups=64)
    assert str(refused.value) == "segment note: a category cannot be a group name"


def test_a_category_of_exactly_the_longest_group_name_is_a_group() -> None:
    schema = FeatureSchema((FeatureSpec("note", "category", categories=("a" * 64, "b")),))
    (segment,) = parse_segments("note", schema)
    assert segment.groups == ("a" * 64, "b", "other")
    check_segments(schema, [segment], max_groups=64)


def test_whole_numbers_are_labelled_as_integers_below_1e15_and_as_python_writes_them_from_it() -> (
    None
):
    assert number_label(1e15 - 1) == "999999999999999"
    assert number_label(-(1e15 - 1)) == "-999999999999999"
    assert number_label(1e15) == repr(1e15) == "1000000000000000.0"
    assert number_label(-1e15) == "-1000000000000000.0"
    assert number_label(40.0) == "40" and number_label(0.5) == "0.5"
    for value in (1e15 - 1, 1e15, -1e15, 0.5, 40.0):
        assert float(number_label(value)) == value


def test_refusals_of_a_declaration_are_exact() -> None:
    with pytest.raises(SegmentError) as refused:
        parse_segments("sex,,age:0-1", SCHEMA, FRAME)
    assert str(refused.value) == "segments: an empty item (two commas, or a trailing comma)"
    with pytest.raises(SegmentError) as refused:
        parse_segments("age:0-40x", SCHEMA, FRAME)
    assert str(refused.value) == (
        "segment age: bin edges must be numbers joined by '-' (0-40-65-120)"
    )


def test_an_unknown_feature_is_echoed_bounded_and_printable() -> None:
    with pytest.raises(SegmentError) as refused:
        parse_segments("w" * 100, SCHEMA, FRAME)
    assert str(refused.value) == f"segment {'w' * 64!r}: not a feature of the model"
    with pytest.raises(SegmentError) as refused:
        parse_segments("we\x00i\nght", SCHEMA, FRAME)
    assert str(refused.value) == "segment 'we?i?ght': not a feature of the model"


def test_a_feature_whose_name_holds_a_colon_takes_edges_after_the_last_colon() -> None:
    schema = FeatureSchema((FeatureSpec("lab:crp", "number", 0.0, 100.0),))
    (segment,) = parse_segments("lab:crp:0-10-100", schema)
    assert segment.feature == "lab:crp"
    assert segment.edges == (0.0, 10.0, 100.0)
    (whole,) = parse_segments("lab:crp", schema, {"lab:crp": [1.0, 2.0]})
    assert whole.groups == ("1", "2", "other")


def test_value_groups_come_from_a_plain_list_column_with_gaps() -> None:
    # A training frame given as a mapping of lists: a missing value is None, not NaN.
    (segment,) = parse_segments("sex", SCHEMA, {"sex": [2, None, 1, 2, None]})
    assert segment.groups == ("1", "2", "other")


def _expected_group(segment: Segment, value: Any) -> str:
    """Plain-Python statement of the grouping rule, one row at a time."""
    if value is None:
        return "missing" if "missing" in segment.groups else "other"
    if segment.feature == "site":
        return value if isinstance(value, str) and value in segment.groups else "other"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "other"
    if segment.edges is None:
        return next((g for g in segment.groups[:-1] if float(g) == value), "other")
    edges = segment.edges
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        last = i == len(edges) - 2
        if lo <= value < hi or (last and value == hi):
            return segment.groups[i]
    return "other"


def test_masks_follow_the_rule_row_by_row() -> None:
    segments = parse_segments("sex,age:0-40-65-120,site", SCHEMA, FRAME)
    index = SegmentIndex(segments, SCHEMA)
    ages: list[Any] = [0, 39.999, 40, 64, 65, 120, 120.5, -1, None, "40", True, 18]
    sexes: list[Any] = [1, 2, 2.0, 1.5, None, 3, 1, 2, 1, 2, 1, False]
    sites: list[Any] = [
        "east",
        "north",
        "other",
        "west",
        None,
        3,
        "east",
        "",
        "north",
        "x",
        "e",
        None,
    ]
    rows: list[dict[str, Any]] = [
        {"age": a, "sex": s, "site": t} for a, s, t in zip(ages, sexes, sites, strict=True)
    ]
    del rows[-1]["age"]  # absent counts as missing
    masks = index.masks(rows)
    assert list(masks) == index.labels
    assert masks[ALL].all()
    for segment in segments:
        stacked = np.stack([masks[label] for label in segment.labels()])
        assert (stacked.sum(axis=0) == 1).all()  # disjoint and covering
        for i, row in enumerate(rows):
            want = _expected_group(segment, row.get(segment.feature))
            assert masks[f"{segment.feature}={want}"][i], (segment.feature, i)
    assert masks["age=40-65"].tolist()[:4] == [False, False, True, True]
    assert masks["age=65-120"][5]  # the last bin is closed
    assert masks["age=other"][6] and masks["age=other"][7] and masks["age=other"][9]
    assert masks["age=missing"][8] and masks["age=missing"][11]
    assert masks["site=missing"][4] and masks["site=other"][3] and masks["site=other"][2]


def test_numpy_numbers_are_numbers() -> None:
    index = SegmentIndex(parse_segments("sex,age:0-40-65-120", SCHEMA, FRAME), SCHEMA)
    rows = [{"age": np.int64(50), "sex": np.float64(2.0)}, {"age": np.float32(70), "sex": 1}]
    masks = index.masks(rows)
    assert masks["age=40-65"].tolist() == [True, False]
    assert masks["age=65-120"].tolist() == [False, True]
    assert masks["sex=2"].tolist() == [True, False] and masks["sex=1"].tolist() == [False, True]


def test_masks_of_no_rows_and_no_segments() -> None:
    index = SegmentIndex(parse_segments("age:0-120", SCHEMA, FRAME), SCHEMA)
    masks = index.masks([])
    assert all(m.shape == (0,) for m in masks.values())
    assert SegmentIndex([], SCHEMA).masks([{"age": 3}]) == {ALL: np.array([True])}


def test_the_deployment_setting_agrees_with_the_bundle_bounds() -> None:
    # config sits below ml and repeats the numbers: a setting above what a bundle may hold
    # could never be used, and the default is the cap training applies by default.
    field = Settings.model_fields["segment_max_groups"]
    assert field.default == MAX_SEGMENT_GROUPS
    assert [m.le for m in field.metadata if hasattr(m, "le")] == [MAX_STORED_SEGMENT_GROUPS]


def test_masks_select_rows_and_take_anything_that_is_not_a_value_as_missing_or_other() -> None:
    index = SegmentIndex(parse_segments("age:0-40-120,site", SCHEMA, FRAME), SCHEMA)
    # A stored row that is not a mapping holds no value; a category value that is not a
    # string (even one that cannot be hashed) is no category.
    rows: list[Any] = [None, {"age": 50, "site": ["east"]}, {"age": 10, "site": {"a": 1}}]
    masks = index.masks(rows)
    ids = np.arange(len(rows))
    assert ids[masks[ALL]].tolist() == [0, 1, 2]  # boolean masks: they select rows
    assert ids[masks["age=missing"]].tolist() == [0]
    assert ids[masks["site=missing"]].tolist() == [0]
    assert ids[masks["site=other"]].tolist() == [1, 2]
    assert ids[masks["age=40-120"]].tolist() == [1]
    assert all(mask.dtype == bool for mask in masks.values())
