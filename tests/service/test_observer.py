"""What one model's observer records per prediction: counts, latency, confidence, data quality.

The quality score is the share of clean feature values over the last ``QUALITY_WINDOW``
requests. The issues of an answered request are its warnings, found by the schema check (a
value exactly on the training range's edge is clean, one past it ``out_of_range``); those of a
refused one are the problems it was refused for.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.ml.schema import Issue, check_instance
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.observer import QUALITY_WINDOW, ModelObserver


@pytest.fixture(scope="module")
def loaded(bundled_models: Path) -> LoadedModel:
    models = ModelRegistry(bundled_models)
    assert not models.load_all()
    return models.all()[0]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def observer(registry: CollectorRegistry, loaded: LoadedModel) -> ModelObserver:
    return ModelObserver(build_metrics(registry), loaded)


def _range(loaded: LoadedModel, feature: str) -> tuple[float, float]:
    spec = loaded.metadata["profile"]["features"][feature]
    return float(spec["min"]), float(spec["max"])


def _middle(loaded: LoadedModel) -> list[float]:
    """A row whose every value lies strictly inside its training range."""
    return [sum(_range(loaded, f)) / 2 for f in loaded.schema.names]


def _with(loaded: LoadedModel, feature: str, value: float) -> list[float]:
    row = _middle(loaded)
    row[loaded.schema.names.index(feature)] = value
    return row


def _warnings(loaded: LoadedModel, row: list[float]) -> list[Issue]:
    """The warnings the schema check gives this row's answer (what serving passes on)."""
    return check_instance(loaded.schema, dict(zip(loaded.schema.names, row, strict=True))).warnings


def _score(registry: CollectorRegistry, loaded: LoadedModel) -> float | None:
    return registry.get_sample_value("ml_data_quality_score", {"model": loaded.name})


def _issues(registry: CollectorRegistry, loaded: LoadedModel, feature: str, kind: str) -> float:
    labels = {"model": loaded.name, "feature": feature, "kind": kind}
    return registry.get_sample_value("ml_data_quality_issues_total", labels) or 0.0


def test_a_prediction_is_counted_by_class_with_its_latency_and_confidence(
    observer: ModelObserver, registry: CollectorRegistry, loaded: LoadedModel
) -> None:
    first, second = loaded.classes[:2]
    observer.observe(_warnings(loaded, _middle(loaded)), first, 0.75, 0.004)
    observer.observe(_warnings(loaded, _middle(loaded)), first, 0.5, 0.002)
    observer.observe(_warnings(loaded, _middle(loaded)), second, 0.25, 0.001)
    name, version = loaded.name, loaded.version

    def count(cls: str) -> float | None:
        labels = {"model": name, "version": version, "predicted_class": cls}
        return registry.get_sample_value("ml_model_predictions_total", labels)

    assert (count(first), count(second)) == (2.0, 1.0)
    for metric, total in (
        ("ml_model_prediction_duration_seconds", 0.007),
        ("ml_model_confidence_score", 1.5),
    ):
        assert registry.get_sample_value(f"{metric}_count", {"model": name}) == 3.0
        assert registry.get_sample_value(f"{metric}_sum", {"model": name}) == pytest.approx(total)
    assert _score(registry, loaded) == 1.0


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("field", ["confidence", "latency"])
def test_a_non_finite_confidence_or_latency_is_refused_and_nothing_recorded(
    observer: ModelObserver,
    registry: CollectorRegistry,
    loaded: LoadedModel,
    field: str,
    bad: float,
) -> None:
    values = {"confidence": 0.5, "latency": 0.01, field: bad}
    before = _score(registry, loaded)
    # The message names what was refused (never the value: it could come from a request).
    message = r"^refusing to observe a non-finite confidence or latency$"
    with pytest.raises(ValueError, match=message):
        observer.observe(_warnings(loaded, _middle(loaded)), loaded.classes[0], **values)
    count = {"model": loaded.name}
    assert not registry.get_sample_value("ml_model_prediction_duration_seconds_count", count)
    assert not registry.get_sample_value("ml_model_confidence_score_count", count)
    assert _score(registry, loaded) == before  # no request scored either


def test_the_largest_finite_values_are_recorded(
    observer: ModelObserver, registry: CollectorRegistry, loaded: LoadedModel
) -> None:
    # The refusal is for infinities and NaN only: any finite number is an observation.
    observer.observe(_warnings(loaded, _middle(loaded)), loaded.classes[0], -1e308, 1e308)
    count = {"model": loaded.name}
    assert registry.get_sample_value("ml_model_prediction_duration_seconds_count", count) == 1.0
    assert registry.get_sample_value("ml_model_confidence_score_count", count) == 1.0


def test_values_on_the_training_range_edges_are_clean_and_past_them_are_issues(
    observer: ModelObserver, registry: CollectorRegistry, loaded: LoadedModel
) -> None:
    feature = loaded.schema.names[0]
    lo, hi = _range(loaded, feature)
    for edge in (lo, hi):
        observer.observe(
            _warnings(loaded, _with(loaded, feature, edge)), loaded.classes[0], 0.9, 0.001
        )
    assert _score(registry, loaded) == 1.0
    assert _issues(registry, loaded, feature, "out_of_range") == 0.0
    for outside in (math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf)):
        observer.observe(
            _warnings(loaded, _with(loaded, feature, outside)), loaded.classes[0], 0.9, 0.001
        )
    assert _issues(registry, loaded, feature, "out_of_range") == 2.0
    n = len(loaded.schema.names)
    # 2 bad values among 4 requests of n values each.
    assert _score(registry, loaded) == pytest.approx(1 - 2 / (4 * n))


def test_the_score_covers_exactly_the_last_window_of_requests(
    observer: ModelObserver, registry: CollectorRegistry, loaded: LoadedModel
) -> None:
    feature = loaded.schema.names[1]
    _, hi = _range(loaded, feature)
    n = len(loaded.schema.names)
    bad, good = _with(loaded, feature, hi + abs(hi) + 1.0), _middle(loaded)
    cls = loaded.classes[0]
    observer.observe(_warnings(loaded, bad), cls, 0.9, 0.001)  # the oldest request: one issue
    for _ in range(QUALITY_WINDOW - 2):
        observer.observe(_warnings(loaded, good), cls, 0.9, 0.001)
    observer.observe(_warnings(loaded, bad), cls, 0.9, 0.001)
    # Exactly QUALITY_WINDOW requests: both bad ones count.
    assert _score(registry, loaded) == pytest.approx(1 - 2 / (QUALITY_WINDOW * n))
    observer.observe(_warnings(loaded, good), cls, 0.9, 0.001)
    # One more: the oldest leaves the window, the newest bad one stays.
    assert _score(registry, loaded) == pytest.approx(1 - 1 / (QUALITY_WINDOW * n))
    observer.observe(
        _warnings(loaded, good), cls, 0.9, 0.001
    )  # a clean request leaves: nothing changes
    assert _score(registry, loaded) == pytest.approx(1 - 1 / (QUALITY_WINDOW * n))
    for _ in range(QUALITY_WINDOW):
        observer.observe(_warnings(loaded, good), cls, 0.9, 0.001)
    assert _score(registry, loaded) == 1.0
    # The issue counter is cumulative: the window only bounds the score.
    assert _issues(registry, loaded, feature, "out_of_range") == 2.0


def test_a_refusal_counts_one_issue_for_a_schema_feature_and_nothing_for_a_stranger(
    observer: ModelObserver, registry: CollectorRegistry, loaded: LoadedModel
) -> None:
    feature = loaded.schema.names[2]
    n = len(loaded.schema.names)
    before = _score(registry, loaded)
    observer.refused([("not_a_feature_of_the_schema", "missing")])
    assert _score(registry, loaded) == before  # nothing pushed: no request scored yet
    assert _issues(registry, loaded, "not_a_feature_of_the_schema", "missing") == 0.0
    observer.refused([(feature, "missing")])
    observer.refused([(feature, "missing")])
    observer.refused([(feature, "non_finite")])
    assert _issues(registry, loaded, feature, "missing") == 2.0
    assert _issues(registry, loaded, feature, "non_finite") == 1.0
    # Each refused request is one request with one bad value.
    assert _score(registry, loaded) == pytest.approx(1 - 3 / (3 * n))
    observer.observe(_warnings(loaded, _middle(loaded)), loaded.classes[0], 0.9, 0.001)
    assert _score(registry, loaded) == pytest.approx(1 - 3 / (4 * n))


def test_a_refused_batch_scores_as_one_request_of_at_most_every_value_bad(
    observer: ModelObserver, registry: CollectorRegistry, loaded: LoadedModel
) -> None:
    names = loaded.schema.names
    n = len(names)
    # A batch can list more problems than one row has values: the score never goes below 0.
    problems = [(f, "missing") for f in names] * 3
    observer.refused(problems)
    assert _score(registry, loaded) == 0.0
    assert _issues(registry, loaded, names[0], "missing") == 3.0
    observer.refused([(names[0], "missing"), (names[1], "wrong_type")])
    assert _score(registry, loaded) == pytest.approx(1 - (n + 2) / (2 * n))
