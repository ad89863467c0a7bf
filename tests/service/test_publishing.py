"""The publisher keeps one observer per served model and retires what stopped serving."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from nexus_ml.ml.metadata import BundleMetadata
from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.publishing import ModelPublisher
from nexus_ml.stats.clinical import realised


@pytest.fixture(scope="module")
def served(bundled_models: Path) -> list[LoadedModel]:
    models = ModelRegistry(bundled_models)
    assert not models.load_all()
    return models.all()


def versions_of(loaded: LoadedModel, n: int) -> list[LoadedModel]:
    return [dataclasses.replace(loaded, version=f"{loaded.version}-{i}") for i in range(n)]


def info(registry: CollectorRegistry, loaded: LoadedModel) -> float | None:
    return registry.get_sample_value(
        "ml_model_info", {"model": loaded.name, "version": loaded.version}
    )


@pytest.mark.parametrize("swaps", [1, 2, 5])
def test_a_swap_replaces_the_observer_and_retires_the_old_version(
    served: list[LoadedModel], swaps: int
) -> None:
    registry = CollectorRegistry()
    publisher = ModelPublisher(build_metrics(registry), multiproc_dir=None)
    other = served[1]
    publisher.publish(other)
    chain = versions_of(served[0], swaps + 1)
    for old, new in itertools.pairwise(chain):
        publisher.publish(old)
        kept = publisher.observer(old)
        publisher.publish(new)
        assert publisher.observer(new) is publisher.observer(new) is not kept
        assert info(registry, old) is None and info(registry, new) == 1.0
    # One observer per model name, whatever the number of swaps.
    assert len(publisher._observers) == 2
    assert publisher.observer(other).version == other.version


def test_republishing_the_same_version_keeps_its_observer(served: list[LoadedModel]) -> None:
    publisher = ModelPublisher(build_metrics(CollectorRegistry()), multiproc_dir=None)
    publisher.publish(served[0])
    first = publisher.observer(served[0])
    publisher.publish(served[0])
    assert publisher.observer(served[0]) is first


def test_a_request_on_a_swapped_out_version_is_observed_but_not_cached(
    served: list[LoadedModel],
) -> None:
    registry = CollectorRegistry()
    publisher = ModelPublisher(build_metrics(registry), multiproc_dir=None)
    old, new = versions_of(served[0], 2)
    publisher.publish(old)
    publisher.publish(new)
    stale = publisher.observer(old)  # a request that started before the swap finishes
    assert stale.version == old.version and stale is not publisher.observer(old)
    stale.observe([], old.classes[0], confidence=0.9, latency=0.001)
    labels = {"model": old.name, "version": old.version, "predicted_class": old.classes[0]}
    assert registry.get_sample_value("ml_model_predictions_total", labels) == 1.0
    assert publisher.observer(new) is publisher.observer(new)
    assert len(publisher._observers) == 1


@pytest.mark.parametrize("keep", [[], [0], [0, 1]])
def test_models_no_longer_served_lose_their_observer(
    served: list[LoadedModel], keep: list[int]
) -> None:
    publisher = ModelPublisher(build_metrics(CollectorRegistry()), multiproc_dir=None)
    for loaded in served:
        publisher.publish(loaded)
    publisher.forget_unserved([served[i].name for i in keep])
    assert sorted(publisher._observers) == sorted(served[i].name for i in keep)


def baseline(registry: CollectorRegistry, model: str, metric: str, cls: str = "") -> float | None:
    return registry.get_sample_value(
        "ml_model_baseline", {"model": model, "metric": metric, "class": cls}
    )


def with_info(loaded: LoadedModel, version: str, **changes: object) -> LoadedModel:
    """``loaded`` as another version whose (validated) metadata has ``changes``."""
    info = BundleMetadata.model_validate({**loaded.info.model_dump(mode="json"), **changes})
    return dataclasses.replace(loaded, version=version, info=info)


def test_publishing_exports_the_bundle_baseline_and_positive_class(
    served: list[LoadedModel],
) -> None:
    registry = CollectorRegistry()
    publisher = ModelPublisher(build_metrics(registry), multiproc_dir=None)
    binary = next(m for m in served if len(m.classes) == 2)
    neg, pos = binary.classes
    rng = np.random.default_rng(0)
    n = binary.info.training_metrics.n_holdout  # the baseline is of the holdout
    actual = rng.choice([neg, pos], size=n)
    p_pos = np.clip(np.where(actual == pos, 0.7, 0.3) + rng.normal(0, 0.2, n), 0.01, 0.99)
    predicted = np.where(p_pos >= 0.5, pos, neg)
    proba = np.column_stack([1 - p_pos, p_pos])
    held = realised(actual, predicted, proba, [neg, pos], positive_class=pos, min_count=30)
    first = with_info(
        binary,
        "v1",
        baseline=held.to_dict(),
        operating_point={"positive_class": pos, "threshold": None},
    )
    publisher.publish(first)
    name = binary.name
    assert baseline(registry, name, "accuracy") == held.accuracy.value
    assert baseline(registry, name, "roc_auc") == held.roc_auc.value
    assert baseline(registry, name, "brier_score") == held.brier_score
    assert baseline(registry, name, "calibration_error") == held.calibration_error
    for cls in (neg, pos):
        assert baseline(registry, name, "recall", cls) == held.classes[cls].recall.value
        assert baseline(registry, name, "precision", cls) == held.classes[cls].precision.value
    positive = "ml_model_positive_class"
    assert registry.get_sample_value(positive, {"model": name, "class": pos}) == 1.0
    assert registry.get_sample_value(positive, {"model": name, "class": neg}) == 0.0

    # A version trained before clinical baselines: its holdout accuracy is the accuracy
    # baseline; the clinical ones it lacks are withdrawn (NaN), not left at the old values.
    old_style = with_info(
        binary, "v2", baseline=None, operating_point={"positive_class": neg, "threshold": None}
    )
    publisher.publish(old_style)
    holdout = old_style.info.training_metrics.holdout_accuracy
    assert baseline(registry, name, "accuracy") == holdout
    assert math.isnan(baseline(registry, name, "recall", pos) or 0.0)
    assert math.isnan(baseline(registry, name, "roc_auc") or 0.0)
    assert registry.get_sample_value(positive, {"model": name, "class": neg}) == 1.0
    assert registry.get_sample_value(positive, {"model": name, "class": pos}) == 0.0


def test_a_multiclass_model_has_no_positive_class(served: list[LoadedModel]) -> None:
    registry = CollectorRegistry()
    publisher = ModelPublisher(build_metrics(registry), multiproc_dir=None)
    binary = served[0]
    info = binary.info.model_copy(update={"operating_point": None})
    three = dataclasses.replace(binary, classes=("a", "b", "c"), info=info)
    publisher.publish(three)
    assert not [
        s
        for metric in registry.collect()
        if metric.name == "ml_model_positive_class"
        for s in metric.samples
    ]
