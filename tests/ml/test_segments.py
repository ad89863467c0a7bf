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
    "segment",
    [
        Segment("age", ("0-40", "other"), (0.0, 40.0)),  # lacks "missing" (nullable)
        Segment("age", ("0-40", "40-30", "missing", "other"), (0.0, 40.0, 30.0)),
        Segment("sex", ("2", "1", "other")),
        Segment("sex", ("1.0", "other")),  # not canonical
        Segment("sex", ("7", "other")),  # outside the training range
        Segment("sex", ("x", "other")),
        Segment("site", ("east", "north", "other", "missing"), (0.0, 1.0)),
        Segment("site", ("east", "missing", "other")),
        Segment("weight", ("other",)),
    ],
)
def test_stored_segments_must_be_closed_lists(segment: Segment) -> None:
    with pytest.raises(SegmentError):
        check_segments(SCHEMA, [segment], max_groups=64)


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
