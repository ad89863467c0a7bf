"""Schema compatibility: names, types, nullability and classes; never a value."""

from __future__ import annotations

from typing import Any

from nexus_ml.ml.compat import IncompatibleVersion, schema_differences, schema_hash


def meta(features: list[tuple[str, str, bool]], classes: list[str]) -> dict[str, Any]:
    return {
        "features": [
            {"name": n, "type": t, "nullable": null, "min": 0, "max": 9} for n, t, null in features
        ],
        "classes": classes,
    }


BASE = meta([("age", "number", False), ("sex", "category", True)], ["no", "yes"])


def test_the_same_schema_is_compatible_whatever_the_order_or_ranges() -> None:
    other = meta([("sex", "category", True), ("age", "number", False)], ["no", "yes"])
    other["features"][1]["max"] = 120  # training ranges are not part of the contract
    assert schema_differences(BASE, other) == []
    assert schema_hash(BASE) == schema_hash(other)


def test_each_kind_of_difference_is_named() -> None:
    other = meta(
        [("age", "integer", False), ("sex", "category", False), ("bmi", "number", False)],
        ["no", "maybe", "yes"],
    )
    assert schema_differences(BASE, other) == [
        "features added: bmi",
        "feature types changed: age number→integer",
        "features no longer nullable: sex",
        "classes no, yes → no, maybe, yes",
    ]
    assert schema_hash(BASE) != schema_hash(other)
    # A feature that becomes nullable breaks nobody.
    relaxed = meta([("age", "number", True), ("sex", "category", True)], ["no", "yes"])
    assert schema_differences(BASE, relaxed) == []


def test_long_lists_are_bounded_and_the_message_says_what_to_do() -> None:
    many = meta([(f"f{i}", "number", False) for i in range(20)], ["no", "yes"])
    [removed, added] = schema_differences(many, BASE)
    assert removed.startswith("features removed: f0, f1") and removed.endswith("and 12 more")
    error = IncompatibleVersion("ward", "20260101T000000Z-0123abcd", [removed, added])
    assert "--replace-incompatible" in str(error) and error.differences == (removed, added)
