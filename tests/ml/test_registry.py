"""The registry: load, look up, and hot-swap models without dropping requests."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.ml.forge import BAD_BUNDLES, new_version

from nexus_ml.ml import registry as registry_module
from nexus_ml.ml.bundle import MODEL_FILE, BundleError, save_bundle, seal_bundle
from nexus_ml.ml.datasets import BUNDLED_DATASETS
from nexus_ml.ml.pointers import set_current
from nexus_ml.ml.registry import LoadedModel, ModelRegistry, Refusal, UnknownModel
from nexus_ml.ml.schema import validate_instance
from nexus_ml.ml.sources import ensure_bundled_models
from nexus_ml.ml.training import TrainResult


def save(model_path: Path, name: str, result: TrainResult) -> str:
    return save_bundle(
        model_path,
        name,
        result.pipeline,
        schema=result.schema,
        classes=result.classes,
        metrics=result.metrics,
        profile=result.profile,
    )


@pytest.fixture
def registry(model_path: Path, trained: dict[str, TrainResult]) -> ModelRegistry:
    for name, result in trained.items():
        save(model_path, name, result)
    reg = ModelRegistry(model_path)
    assert reg.load_all() == {}
    return reg


def test_load_all_and_lookup(registry: ModelRegistry) -> None:
    assert registry.names() == ["diabetes_risk", "diagnostic"]
    loaded = registry.get("diagnostic")
    assert isinstance(loaded, LoadedModel)
    assert loaded.classes == ("benign", "malignant")
    assert loaded.schema.names[0] == "mean_radius"
    assert loaded.predictor.kind == "binary"
    assert loaded.metadata["training_metrics"]["n_features"] == 30
    assert [m.name for m in registry.all()] == ["diabetes_risk", "diagnostic"]
    assert registry.get_or_none("nope") is None
    assert "diagnostic" in registry
    assert registry.versions("diagnostic") == [loaded.version]


def test_unknown_model(registry: ModelRegistry) -> None:
    with pytest.raises(UnknownModel, match="unknown model 'iris'"):
        registry.get("iris")
    with pytest.raises(KeyError):  # UnknownModel is a KeyError for callers that expect one
        registry.get("iris")


def test_end_to_end_prediction(registry: ModelRegistry, trained: dict[str, TrainResult]) -> None:
    loaded = registry.get("diabetes_risk")
    features = {spec.name: (spec.min + spec.max) / 2 for spec in loaded.schema.features}
    row = validate_instance(loaded.schema, features)
    index, proba = loaded.predictor.predict_one(row)
    expected = trained["diabetes_risk"].pipeline.predict_proba(row.reshape(1, -1))[0]
    assert abs(proba - expected).max() <= 1e-9
    assert loaded.classes[index] == trained["diabetes_risk"].pipeline.predict(row[None])[0]


def test_reload_swaps_and_a_held_reference_keeps_its_model(
    registry: ModelRegistry, model_path: Path, trained: dict[str, TrainResult]
) -> None:
    in_flight = registry.get("diagnostic")
    new_version = save(model_path, "diagnostic", trained["diagnostic"])
    assert registry.get("diagnostic") is in_flight  # nothing changes until a reload
    swapped = registry.reload("diagnostic")
    assert swapped.version == new_version != in_flight.version
    assert registry.get("diagnostic") is swapped
    # The request that started before the swap still has a complete, working model.
    index, _ = in_flight.predictor.predict_one(np.zeros(30))
    assert index in (0, 1)


def test_refresh_picks_up_a_new_current_and_rolls_back(
    registry: ModelRegistry, model_path: Path, trained: dict[str, TrainResult]
) -> None:
    old = registry.get("diagnostic").version
    new = save(model_path, "diagnostic", trained["diagnostic"])
    untouched = registry.get("diabetes_risk")
    assert registry.refresh() == {}
    assert registry.get("diagnostic").version == new
    assert registry.get("diabetes_risk") is untouched  # unchanged CURRENT: not reloaded
    set_current(model_path, "diagnostic", old)
    registry.refresh()
    assert registry.get("diagnostic").version == old


def test_refused_bundle_keeps_the_old_version_serving(
    registry: ModelRegistry, model_path: Path, trained: dict[str, TrainResult]
) -> None:
    serving = registry.get("diagnostic")
    bad = save(model_path, "diagnostic", trained["diagnostic"])
    artifact = model_path / "diagnostic" / bad / MODEL_FILE
    artifact.write_bytes(artifact.read_bytes()[:-1])
    errors = registry.refresh()
    assert "sha256" in errors["diagnostic"].message
    assert (errors["diagnostic"].version, errors["diagnostic"].reason) == (bad, "integrity")
    assert registry.get("diagnostic") is serving
    with pytest.raises(BundleError):
        registry.reload("diagnostic")
    assert registry.get("diagnostic") is serving


def test_new_models_appear_on_refresh_and_unload(model_path: Path) -> None:
    registry = ModelRegistry(model_path)
    assert registry.load_all() == {}
    assert registry.names() == []
    ensure_bundled_models(model_path, names=BUNDLED_DATASETS)
    registry.refresh()
    assert registry.names() == ["diabetes_risk", "diagnostic"]
    registry.unload("diabetes_risk")
    assert registry.names() == ["diagnostic"]
    with pytest.raises(UnknownModel):
        registry.unload("diabetes_risk")


def test_readers_never_fail_during_concurrent_reloads(
    registry: ModelRegistry, model_path: Path, trained: dict[str, TrainResult]
) -> None:
    versions = {registry.get("diagnostic").version}
    for _ in range(3):
        versions.add(save(model_path, "diagnostic", trained["diagnostic"]))
    stop = threading.Event()
    seen: set[str] = set()
    failures: list[BaseException] = []
    row = np.zeros(30)

    def reader() -> None:
        try:
            while not stop.is_set():
                loaded = registry.get("diagnostic")  # taken once, used throughout
                loaded.predictor.predict_one(row)
                seen.add(loaded.version)
                time.sleep(0.0005)  # leave the reloading thread some GIL time
        except BaseException as exc:  # pragma: no cover - the assertion reports it
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for version in sorted(versions) * 2:
            set_current(model_path, "diagnostic", version)
            registry.reload("diagnostic")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen <= versions
    assert seen


# --- a bad bundle is refused alone, loudly, by name, once -----------------------------------


class Reported:
    """The on_refused callback: every refusal the registry reports."""

    def __init__(self) -> None:
        self.refusals: list[Refusal] = []

    def __call__(self, refusal: Refusal) -> None:
        self.refusals.append(refusal)


@pytest.mark.parametrize("kind", sorted(BAD_BUNDLES))
def test_a_model_whose_only_version_is_bad_is_absent_and_the_others_load(
    model_path: Path, trained: dict[str, TrainResult], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name, result in trained.items():
        save(model_path, name, result)
    make, reason = BAD_BUNDLES[kind]
    version = make(model_path, "diagnostic")
    # The good version is removed: the bad one is the only one on disk.
    for v in {*ModelRegistry(model_path).versions("diagnostic")} - {version}:
        shutil.rmtree(model_path / "diagnostic" / v)
    reported = Reported()
    registry = ModelRegistry(model_path, on_refused=reported)
    with caplog.at_level(logging.ERROR, logger="nexus_ml.ml"):
        refused = registry.load_all()
    assert registry.names() == ["diabetes_risk"]
    with pytest.raises(UnknownModel):
        registry.get("diagnostic")
    assert list(refused) == ["diagnostic"]
    assert refused["diagnostic"].reason == reason
    assert reported.refusals == [refused["diagnostic"]] == registry.refused()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.__dict__["model"] == "diagnostic"
    assert record.__dict__["reason"] == reason
    assert record.__dict__["version"] == (None if kind == "bad_current" else version)


@pytest.mark.parametrize("kind", ["nan_coef", "tampered_swapped_names", "profile_empty"])
def test_a_bad_new_version_is_refused_once_and_the_old_one_keeps_serving(
    model_path: Path, trained: dict[str, TrainResult], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name, result in trained.items():
        save(model_path, name, result)
    reported = Reported()
    registry = ModelRegistry(model_path, on_refused=reported)
    assert registry.load_all() == {}
    serving = registry.get("diagnostic")
    bad = BAD_BUNDLES[kind].make(model_path, "diagnostic")
    with caplog.at_level(logging.ERROR, logger="nexus_ml.ml"):
        first = registry.refresh()
        for _ in range(3):  # the watcher polls every few seconds
            assert registry.refresh() == {}
    assert first["diagnostic"].version == bad
    assert registry.get("diagnostic") is serving
    assert [r.version for r in reported.refusals] == [bad]
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert [(r.model, r.version) for r in registry.refused()] == [("diagnostic", bad)]
    # Going back to the served version ends the refusal.
    set_current(model_path, "diagnostic", serving.version)
    assert registry.refresh() == {}
    assert registry.refused() == []


def test_the_watcher_does_not_stop_at_the_first_bad_bundle(
    model_path: Path, trained: dict[str, TrainResult]
) -> None:
    for name, result in trained.items():
        save(model_path, name, result)
    registry = ModelRegistry(model_path)
    registry.load_all()
    # diabetes_risk is refreshed first (sorted): its failure must not hide diagnostic's update.
    BAD_BUNDLES["two_scalers"].make(model_path, "diabetes_risk")
    good = save(model_path, "diagnostic", trained["diagnostic"])
    refused = registry.refresh()
    assert list(refused) == ["diabetes_risk"]
    assert registry.get("diagnostic").version == good


def test_a_refused_version_is_tried_again_once_its_files_change(
    model_path: Path, trained: dict[str, TrainResult]
) -> None:
    for name, result in trained.items():
        save(model_path, name, result)
    reported = Reported()
    registry = ModelRegistry(model_path, on_refused=reported)
    registry.load_all()
    version = new_version(model_path, "diagnostic", seal=False)
    assert registry.refresh()["diagnostic"].reason == "unsealed"
    assert registry.refresh() == {}
    seal_bundle(model_path, "diagnostic", version)
    assert registry.refresh() == {}
    assert registry.get("diagnostic").version == version
    assert registry.refused() == []
    assert len(reported.refusals) == 1


@pytest.mark.parametrize("error", [RuntimeError, AttributeError, MemoryError, IndexError])
def test_an_unexpected_exception_refuses_that_model_only(
    model_path: Path,
    trained: dict[str, TrainResult],
    monkeypatch: pytest.MonkeyPatch,
    error: type[BaseException],
) -> None:
    for name, result in trained.items():
        save(model_path, name, result)
    real = registry_module.load_bundle

    def flaky(path: Path, name: str, version: str | None = None) -> Any:
        if name == "diagnostic":
            raise error("a message that may quote anything")
        return real(path, name, version)

    monkeypatch.setattr(registry_module, "load_bundle", flaky)
    registry = ModelRegistry(model_path)
    refused = registry.load_all()
    assert registry.names() == ["diabetes_risk"]
    assert refused["diagnostic"].reason == "internal"
    assert "quote" not in refused["diagnostic"].message  # the type only
    assert error.__name__ in refused["diagnostic"].message
