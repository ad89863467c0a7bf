"""The typed model of metadata.json: strict fields, consistent profile, messages without values."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.ml.forge import swap_names

from nexus_ml.ml.bundle import METADATA_FILE, BundleError, save_bundle
from nexus_ml.ml.metadata import OperatingPoint, parse_metadata, read_json
from nexus_ml.ml.segments import Segment, SegmentIndex
from nexus_ml.ml.training import TrainResult

Meta = dict[str, Any]
SECRET = "SECRET-4711"  # stands for a value that must never reach a message


@pytest.fixture(scope="module")
def good(trained: dict[str, TrainResult], tmp_path_factory: pytest.TempPathFactory) -> Meta:
    """The metadata of a real bundle, as read from disk."""
    path = tmp_path_factory.mktemp("meta")
    r = trained["diabetes_risk"]
    version = save_bundle(
        path,
        "diabetes_risk",
        r.pipeline,
        schema=r.schema,
        classes=r.classes,
        metrics=r.metrics,
        profile=r.profile,
        source={"kind": "bundled", "dataset": "diabetes_risk"},
    )
    meta: Meta = json.loads((path / "diabetes_risk" / version / METADATA_FILE).read_text())
    return meta


def _feature(meta: Meta, i: int = 0) -> dict[str, Any]:
    name = meta["profile"]["feature_names"][i]
    feat: dict[str, Any] = meta["profile"]["features"][name]
    return feat


def _widen(feature: dict[str, Any]) -> None:
    feature["max"] = feature["quantiles"][-1] = feature["max"] + 1.0


def _set(path: str, value: Any) -> Callable[[Meta], None]:
    def edit(meta: Meta) -> None:
        *parents, last = path.split(".")
        node = meta
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value

    return edit


BAD: dict[str, Callable[[Meta], None]] = {
    "holdout-secret-string": _set("training_metrics.holdout_accuracy", SECRET),
    "holdout-negative": _set("training_metrics.holdout_accuracy", -0.1),
    "holdout-null": _set("training_metrics.holdout_accuracy", None),
    "n-samples-float": _set("training_metrics.n_samples", 442.0),
    "sizes-disagree": _set("training_metrics.n_train", 1),
    "extra-metric-string": _set("training_metrics.note", SECRET),
    "n-features-off": _set("training_metrics.n_features", 9),
    "feature-min-above-max": _set("features.0.min", 1e9),
    "feature-type": _set("features.0.type", SECRET),
    "feature-name-empty": _set("features.0.name", ""),
    "one-class": _set("classes", ["low"]),
    "classes-repeat": _set("classes", ["low", "low"]),
    "sha-not-hex": _set("sha256", SECRET),
    "created-not-utc": _set("created_at", "2026-01-01T00:00:00"),
    "created-garbage": _set("created_at", SECRET),
    "csv-source-without-path": _set("source", {"kind": "csv", "target": "y"}),
    "source-kind": _set("source", {"kind": SECRET}),
    "profile-version": _set("profile.version", 2),
    "profile-n-samples": _set("profile.n_samples", 443),
    "profile-names-order": lambda m: m["profile"]["feature_names"].reverse(),
    "profile-feature-type": lambda m: _feature(m).__setitem__("type", SECRET),
    "profile-mean-outside": lambda m: _feature(m).__setitem__("mean", 1e9),
    "profile-std-negative": lambda m: _feature(m).__setitem__("std", -1.0),
    "profile-sketch-unlike-range": lambda m: _feature(m).__setitem__("max", 1e9),
    "profile-range-unlike-schema": lambda m: _widen(_feature(m)),
    "profile-edges-unsorted": lambda m: _feature(m)["bin_edges"].reverse(),
    "profile-quantile-string": lambda m: _feature(m)["quantiles"].__setitem__(3, SECRET),
    "profile-extra-feature": lambda m: m["profile"]["features"].__setitem__(
        "extra\nline", _feature(m)
    ),
    "balance-counts": _set("profile.class_balance.counts", [1, 1]),
    "confidence-n": _set("profile.confidence.n", 1),
    "confidence-edges": lambda m: m["profile"]["confidence"]["bin_edges"].reverse(),
    "confidence-correct-above-count": lambda m: m["profile"]["confidence"][
        "correct_counts"
    ].__setitem__(-1, 10**6),
    "confidence-accuracy-unlike-holdout": _set("profile.confidence.accuracy", 0.1),
    "calibration-decreasing": lambda m: m["profile"]["confidence"]["calibration"]["y"].reverse(),
    "calibration-lengths": lambda m: m["profile"]["confidence"]["calibration"]["x"].pop(),
}


def test_real_metadata_passes(good: Meta) -> None:
    info = parse_metadata(good)
    assert info.feature_names == good["profile"]["feature_names"]
    assert info.training_metrics.holdout_accuracy == good["training_metrics"]["holdout_accuracy"]


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_metadata_is_refused_without_echoing_values(good: Meta, case: str) -> None:
    meta = copy.deepcopy(good)
    BAD[case](meta)
    with pytest.raises(BundleError) as refused:
        parse_metadata(meta)
    assert refused.value.reason == "metadata"
    message = str(refused.value)
    assert message.startswith("metadata")
    assert SECRET not in message
    assert "\n" not in message


def test_a_finite_extra_training_metric_is_allowed(good: Meta) -> None:
    meta = copy.deepcopy(good)
    meta["training_metrics"]["macro_f1"] = 0.8
    assert parse_metadata(meta).training_metrics.model_extra == {"macro_f1": 0.8}


def test_a_consistent_renaming_passes_the_model(good: Meta) -> None:
    # Consistent across schema and profile: the typed model alone cannot object (the manifest
    # and folder permissions are what stop this; see docs/security.md).
    meta = copy.deepcopy(good)
    swap_names(meta)
    assert parse_metadata(meta).feature_names[:2] == ["sex", "age"]


@pytest.mark.parametrize("text", [b"NaN", b'{"a": -Infinity}', b'{"a": 1, "a": 2}', b"{", b"\xff"])
def test_read_json_is_strict(text: bytes, tmp_path: Path) -> None:
    with pytest.raises(BundleError) as refused:
        read_json(text, "metadata.json")
    assert refused.value.reason == "metadata"


# --- clinical fields: operating point, segments, baseline --------------------------------------


def _interval(value: float | None, n: int) -> dict[str, Any]:
    if value is None:
        return {"value": None, "lower": None, "upper": None, "n": n}
    return {"value": value, "lower": max(0.0, value - 0.1), "upper": min(1.0, value + 0.1), "n": n}


def _baseline(meta: Meta) -> dict[str, Any]:
    """A well-formed baseline for ``meta``'s classes and holdout (numbers made up)."""
    n = meta["training_metrics"]["n_holdout"]
    one = {
        "recall": _interval(0.7, n // 2),
        "precision": _interval(0.6, n // 2),
        "f1": 0.65,
        "prevalence": _interval(0.5, n),
        "positive_rate": _interval(0.5, n),
    }
    return {
        "n": n,
        "classes": {c: copy.deepcopy(one) for c in meta["classes"]},
        "accuracy": _interval(0.7, n),
        "roc_auc": _interval(0.8, n),
        "brier_score": 0.2,
        "calibration_error": 0.05,
        "reliability": [
            {
                "lower": i / 10,
                "upper": (i + 1) / 10,
                "mean_predicted": None,
                "observed": None,
                "count": 0,
            }
            for i in range(10)
        ],
    }


def _clinical(meta: Meta) -> Meta:
    out = copy.deepcopy(meta)
    out["operating_point"] = {"positive_class": "high", "threshold": 0.4}
    out["segments"] = [
        {"feature": "age", "groups": ["0-40", "40-120", "other"], "edges": [0.0, 40.0, 120.0]}
    ]
    out["baseline"] = _baseline(meta)
    return out


def test_a_bundle_written_before_the_clinical_fields_still_loads(good: Meta) -> None:
    old = {k: v for k, v in good.items() if k not in ("operating_point", "segments", "baseline")}
    info = parse_metadata(old)
    # diabetes_risk's two classes are equally common: the tie goes to the second class.
    assert info.operating_point == OperatingPoint(positive_class=info.classes[1], threshold=None)
    assert info.positive_class == info.classes[1]
    assert info.threshold is None
    assert info.segments == [] and info.segment_list() == ()
    assert info.baseline is None


def test_new_bundles_write_the_default_operating_point(good: Meta) -> None:
    assert good["operating_point"] == {"positive_class": good["classes"][1], "threshold": None}
    assert good["segments"] == [] and good["baseline"] is None


def test_clinical_fields_round_trip(good: Meta) -> None:
    meta = _clinical(good)
    info = parse_metadata(json.loads(json.dumps(meta)))
    assert info.positive_class == "high" and info.threshold == 0.4
    assert info.segment_list() == (Segment("age", ("0-40", "40-120", "other"), (0.0, 40.0, 120.0)),)
    assert info.baseline is not None
    assert info.model_dump(mode="json")["baseline"] == meta["baseline"]
    assert SegmentIndex.from_metadata(info).labels == [
        "all",
        "age=0-40",
        "age=40-120",
        "age=other",
    ]


CLINICAL_BAD: dict[str, Callable[[Meta], None]] = {
    "positive-unknown": _set("operating_point.positive_class", SECRET),
    "positive-null-binary": _set("operating_point.positive_class", None),
    "threshold-one": _set("operating_point.threshold", 1.0),
    "threshold-zero": _set("operating_point.threshold", 0.0),
    "threshold-string": _set("operating_point.threshold", SECRET),
    "threshold-nan": _set("operating_point.threshold", float("nan")),
    "operating-extra": _set("operating_point.note", SECRET),
    "segment-unknown-feature": _set("segments.0.feature", SECRET),
    "segment-groups-not-closed": _set("segments.0.groups", ["0-40", SECRET, "other"]),
    "segment-edges-unsorted": _set("segments.0.edges", [40.0, 0.0, 120.0]),
    "segment-edges-infinite": _set("segments.0.edges", [0.0, 40.0, float("inf")]),
    "segment-twice": lambda m: m["segments"].append(copy.deepcopy(m["segments"][0])),
    "segment-too-many": lambda m: m["segments"].__setitem__(
        0,
        {
            "feature": "age",
            "groups": [*(f"{i}-{i + 1}" for i in range(70)), "other"],
            "edges": [float(i) for i in range(71)],
        },
    ),
    "segment-extra": _set("segments.0.note", SECRET),
    "baseline-n": _set("baseline.n", 1),
    "baseline-classes": lambda m: m["baseline"]["classes"].__setitem__(
        SECRET, m["baseline"]["classes"]["high"]
    ),
    "baseline-class-order": lambda m: m["baseline"].__setitem__(
        "classes", dict(reversed(m["baseline"]["classes"].items()))
    ),
    "baseline-recall-above-one": _set("baseline.classes.high.recall.value", 1.5),
    "baseline-value-outside-interval": _set("baseline.accuracy.value", 0.99),
    "baseline-string": _set("baseline.roc_auc.value", SECRET),
    "baseline-reliability-counts": _set("baseline.reliability.0.count", 10**6),
    "baseline-extra": _set("baseline.note", SECRET),
}


@pytest.mark.parametrize("case", sorted(CLINICAL_BAD))
def test_bad_clinical_fields_are_refused_without_echoing_values(good: Meta, case: str) -> None:
    meta = _clinical(good)
    CLINICAL_BAD[case](meta)
    with pytest.raises(BundleError) as refused:
        parse_metadata(meta)
    message = str(refused.value)
    assert refused.value.reason == "metadata"
    assert message.startswith("metadata")
    assert SECRET not in message
    assert "\n" not in message


def test_a_multiclass_model_has_no_positive_class(good: Meta) -> None:
    meta = copy.deepcopy(good)
    meta["operating_point"] = {"positive_class": None, "threshold": None}
    with pytest.raises(BundleError, match="positive_class must be one of the classes"):
        parse_metadata(meta)  # binary: it must have one
    meta["classes"] = ["a", "b", "c"]
    meta["profile"]["class_balance"] = {"classes": ["a", "b", "c"], "counts": [400, 40, 2]}
    assert parse_metadata(meta).positive_class is None
    meta["operating_point"] = {"positive_class": "a", "threshold": None}
    with pytest.raises(BundleError, match="more than two classes has no positive class"):
        parse_metadata(meta)
