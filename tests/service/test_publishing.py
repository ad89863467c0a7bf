"""The publisher keeps one observer per served model and retires what stopped serving."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.publishing import ModelPublisher


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
