"""ml_feature_bin_total through the API: once per feature per answered instance, none refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from tests.api.test_predictions import diagnostic_row
from tests.helpers import auth

from nexus_ml.monitoring.feature_bins import MISSING
from nexus_ml.monitoring.metrics import build_metrics
from nexus_ml.service.publishing import ModelPublisher


def bin_totals(registry: CollectorRegistry, model: str) -> dict[str, float]:
    """Sum of every bin per feature."""
    out: dict[str, float] = {}
    for family in registry.collect():
        if family.name != "ml_feature_bin":
            continue
        for s in family.samples:
            if s.name.endswith("_total") and s.labels["model"] == model:
                out[s.labels["feature"]] = out.get(s.labels["feature"], 0.0) + s.value
    return out


def test_each_answered_instance_is_counted_once_per_feature(
    client: TestClient, registry: CollectorRegistry
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    loaded = service.models.get("diagnostic")
    # Every bin exists at 0 from the start, so a range in Prometheus sees its first count.
    assert set(bin_totals(registry, "diagnostic").values()) == {0.0}
    url = "/api/v1/models/diagnostic/predict"
    for i in range(5):
        r = client.post(url, json={"features": diagnostic_row(i)}, headers=auth("predict"))
        assert r.status_code == 200, r.text
    batch = [diagnostic_row(i) for i in range(5, 17)]
    assert client.post(url, json={"instances": batch}, headers=auth("predict")).status_code == 200
    # Refused: a bad value in a batch refuses the whole batch; nothing of it is counted.
    bad = [*batch, {**diagnostic_row(0), loaded.schema.names[0]: "x"}]
    assert client.post(url, json={"instances": bad}, headers=auth("predict")).status_code == 422
    service.publisher.flush_bins()
    totals = bin_totals(registry, "diagnostic")
    assert set(totals) == set(loaded.schema.names)
    assert set(totals.values()) == {17.0}
    predictions = sum(
        registry.get_sample_value(
            "ml_model_predictions_total",
            {"model": "diagnostic", "version": loaded.version, "predicted_class": c},
        )
        or 0.0
        for c in loaded.classes
    )
    assert predictions == 17.0
    share = registry.get_sample_value(
        "ml_feature_reference_share",
        {"model": "diagnostic", "version": loaded.version, "feature": "mean_radius", "bin": "0"},
    )
    assert share is not None and 0.05 < share < 0.15  # a decile
    missing = {"model": "diagnostic", "version": loaded.version, "feature": "mean_radius"}
    assert registry.get_sample_value("ml_feature_bin_total", {**missing, "bin": MISSING}) == 0.0


def two_versions(client: TestClient) -> tuple[CollectorRegistry, ModelPublisher, Any, Any]:
    """A fresh publisher that published the served diagnostic model; and a next version."""
    service = client.app.state.service  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    publisher = ModelPublisher(build_metrics(registry), multiproc_dir=None)
    old = service.models.get("diagnostic")
    publisher.publish(old)
    return registry, publisher, old, dataclasses.replace(old, version=f"{old.version}-next")


def test_a_retired_version_loses_its_bin_series(client: TestClient) -> None:
    registry, publisher, old, new = two_versions(client)
    publisher.observer(old).bins.add_many(np.array([list(diagnostic_row(0).values())]))
    labels = {"model": "diagnostic", "version": old.version, "feature": "mean_radius"}

    def old_series() -> int:
        return sum(
            1
            for f in registry.collect()
            if f.name in ("ml_feature_bin", "ml_feature_reference_share", "ml_feature_bin_width")
            for s in f.samples
            if s.labels.get("version") == old.version and not s.name.endswith("_created")
        )

    assert old_series() > 0
    assert registry.get_sample_value("ml_feature_reference_share", {**labels, "bin": "0"})
    publisher.publish(new)
    assert old_series() == 0
    assert registry.get_sample_value("ml_feature_reference_share", {**labels, "bin": "0"}) is None


def test_a_request_on_a_swapped_out_version_is_counted_at_once(client: TestClient) -> None:
    registry, publisher, old, new = two_versions(client)
    publisher.publish(new)
    stale = publisher.observer(old)  # not kept: nothing may wait in it
    stale.bins.add(np.array(list(diagnostic_row(0).values()), dtype=float))
    assert stale.bins.waiting == 0
    labels = {"model": "diagnostic", "version": old.version, "feature": "mean_radius"}
    counted = sum(
        registry.get_sample_value("ml_feature_bin_total", {**labels, "bin": b}) or 0.0
        for b in stale.bin_layout[0].labels
    )
    assert counted == 1
