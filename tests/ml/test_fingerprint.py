"""The reference-profile hash: stable across formatting, changed by any change of the profile."""

from __future__ import annotations

import json
from pathlib import Path

from nexus_ml.ml.bundle import load_metadata
from nexus_ml.ml.fingerprint import profile_hash
from nexus_ml.ml.registry import load_model


def test_the_hash_ignores_key_order_and_formatting(model_dir: Path) -> None:
    metadata = load_metadata(model_dir, "diagnostic")
    profile = metadata["profile"]
    reordered = {k: profile[k] for k in reversed(list(profile))}
    assert list(reordered) != list(metadata["profile"])
    assert profile_hash({"profile": reordered}) == profile_hash(metadata)


def test_the_hash_changes_with_the_profile(model_dir: Path) -> None:
    metadata = load_metadata(model_dir, "diagnostic")
    changed = json.loads(json.dumps(metadata["profile"]))
    changed["n_samples"] += 1
    assert profile_hash({"profile": changed}) != profile_hash(metadata)


def test_a_loaded_model_carries_the_hash_of_its_profile(model_dir: Path) -> None:
    loaded = load_model(model_dir, "diagnostic")
    assert loaded.profile_hash == profile_hash(load_metadata(model_dir, "diagnostic"))
    assert load_model(model_dir, "diabetes_risk").profile_hash != loaded.profile_hash
