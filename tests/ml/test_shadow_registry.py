"""The challenger (``SHADOW``): loaded, swapped and dropped by ``refresh()`` like CURRENT."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_ml.ml.bundle import MODEL_FILE, BundleError, save_bundle
from nexus_ml.ml.pointers import SHADOW_FILE, set_shadow, shadow_version
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.ml.training import TrainResult


def save(model_path: Path, result: TrainResult, *, activate: bool = True) -> str:
    return save_bundle(
        model_path,
        "diagnostic",
        result.pipeline,
        schema=result.schema,
        classes=result.classes,
        metrics=result.metrics,
        profile=result.profile,
        activate=activate,
    )


@pytest.fixture
def two_versions(model_path: Path, trained: dict[str, TrainResult]) -> tuple[str, str]:
    champion = save(model_path, trained["diagnostic"])
    challenger = save(model_path, trained["diagnostic"], activate=False)
    return champion, challenger


def test_no_shadow_file_means_no_challenger(model_path: Path, two_versions: tuple) -> None:
    registry = ModelRegistry(model_path)
    registry.refresh()
    assert registry.get("diagnostic").version == two_versions[0]
    assert registry.shadow("diagnostic") is None
    assert registry.shadow("unknown") is None
    assert shadow_version(model_path, "diagnostic") is None


def test_shadow_is_loaded_swapped_and_dropped_by_refresh(
    model_path: Path, two_versions: tuple[str, str]
) -> None:
    champion, challenger = two_versions
    registry = ModelRegistry(model_path)
    registry.refresh()
    set_shadow(model_path, "diagnostic", challenger)
    assert shadow_version(model_path, "diagnostic") == challenger
    assert registry.shadow("diagnostic") is None  # nothing changes until a refresh
    registry.refresh()
    shadow = registry.shadow("diagnostic")
    assert shadow is not None and shadow.version == challenger
    assert registry.get("diagnostic").version == champion  # the champion is untouched
    registry.refresh()
    assert registry.shadow("diagnostic") is shadow  # unchanged SHADOW: not reloaded
    # The champion's own version as a challenger reuses the loaded champion.
    set_shadow(model_path, "diagnostic", champion)
    registry.refresh()
    assert registry.shadow("diagnostic") is registry.get("diagnostic")
    set_shadow(model_path, "diagnostic", None)
    assert not (model_path / "diagnostic" / SHADOW_FILE).exists()
    registry.refresh()
    assert registry.shadow("diagnostic") is None
    set_shadow(model_path, "diagnostic", None)  # removing twice is not an error


def test_set_shadow_refuses_an_unknown_or_malformed_version(
    model_path: Path, two_versions: tuple
) -> None:
    with pytest.raises(BundleError, match="has no version") as err:
        set_shadow(model_path, "diagnostic", "20990101T000000Z-0123abcd")
    assert err.value.reason == "not_found"
    with pytest.raises(BundleError, match="version must look like"):
        set_shadow(model_path, "diagnostic", "../CURRENT")
    assert shadow_version(model_path, "diagnostic") is None


def test_a_bad_challenger_is_refused_alone_and_the_champion_keeps_serving(
    model_path: Path, two_versions: tuple[str, str]
) -> None:
    champion, challenger = two_versions
    reported = []
    registry = ModelRegistry(model_path, on_refused=reported.append)
    registry.refresh()
    artifact = model_path / "diagnostic" / challenger / MODEL_FILE
    artifact.write_bytes(artifact.read_bytes()[:-1])
    set_shadow(model_path, "diagnostic", challenger)
    assert registry.refresh() == {}  # champions refused in this call: none
    assert registry.shadow("diagnostic") is None
    assert registry.get("diagnostic").version == champion
    assert registry.refused() == []  # the champion is healthy
    [refusal] = registry.shadow_refused()
    assert (refusal.version, refusal.reason) == (challenger, "integrity")
    registry.refresh()
    assert len(reported) == 1  # reported once, not every poll
    # A garbled SHADOW file is refused the same way, without touching the champion.
    (model_path / "diagnostic" / SHADOW_FILE).write_text("garbage\n")
    registry.refresh()
    assert registry.shadow_refused()[0].version is None
    assert registry.get("diagnostic").version == champion
    set_shadow(model_path, "diagnostic", None)
    registry.refresh()
    assert registry.shadow_refused() == []
