"""Bundles: atomic versions on disk, loaded only when they can be trusted."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from nexus_ml.ml.bundle import (
    CURRENT_FILE,
    METADATA_FILE,
    MODEL_FILE,
    VERSION_RE,
    BundleError,
    current_version,
    list_bundles,
    load_bundle,
    load_metadata,
    save_bundle,
    set_current,
    sha256_bytes,
)
from nexus_ml.ml.datasets import Dataset
from nexus_ml.ml.training import TrainResult


def save(model_path: Path, name: str, result: TrainResult, pipeline: Any = None) -> str:
    return save_bundle(
        model_path,
        name,
        result.pipeline if pipeline is None else pipeline,
        schema=result.schema,
        classes=result.classes,
        metrics=result.metrics,
        profile=result.profile,
    )


@pytest.fixture
def diag(trained: dict[str, TrainResult]) -> TrainResult:
    return trained["diagnostic"]


def test_round_trip(model_path: Path, diag: TrainResult, datasets: dict[str, Dataset]) -> None:
    version = save(model_path, "diagnostic", diag)
    assert VERSION_RE.fullmatch(version)
    folder = model_path / "diagnostic" / version
    assert sorted(p.name for p in folder.iterdir()) == [METADATA_FILE, MODEL_FILE]
    assert (model_path / "diagnostic" / CURRENT_FILE).read_text().strip() == version

    bundle = load_bundle(model_path, "diagnostic")
    assert (bundle.name, bundle.version) == ("diagnostic", version)
    X = datasets["diagnostic"].X
    np.testing.assert_array_equal(bundle.pipeline.predict_proba(X), diag.pipeline.predict_proba(X))

    meta = bundle.metadata
    assert meta["created_at"].endswith("Z")
    assert meta["classes"] == ["benign", "malignant"]
    assert [f["name"] for f in meta["features"]][:2] == ["mean_radius", "mean_texture"]
    assert meta["features"][0]["min"] == pytest.approx(X[:, 0].min())
    assert meta["training_metrics"]["n_features"] == 30
    assert meta["sha256"] == sha256_bytes((folder / MODEL_FILE).read_bytes())
    assert meta["sklearn_version"]
    assert meta["profile"] == json.loads(json.dumps(diag.profile))
    assert version.endswith(meta["sha256"][:8])


def test_no_temporary_files_are_left_behind(model_path: Path, diag: TrainResult) -> None:
    save(model_path, "diagnostic", diag)
    save(model_path, "diagnostic", diag)
    leftovers = [p.name for p in (model_path / "diagnostic").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_new_version_becomes_current_and_the_old_one_stays(
    model_path: Path, diag: TrainResult
) -> None:
    v1 = save(model_path, "diagnostic", diag)
    v2 = save(model_path, "diagnostic", diag)  # same artifact, same second: still unique
    assert v1 < v2
    assert current_version(model_path, "diagnostic") == v2
    assert load_bundle(model_path, "diagnostic").version == v2
    assert load_bundle(model_path, "diagnostic", v1).version == v1

    set_current(model_path, "diagnostic", v1)
    assert load_bundle(model_path, "diagnostic").version == v1
    [info] = list_bundles(model_path)
    assert (info.name, info.versions, info.current) == ("diagnostic", (v1, v2), v1)


def test_save_without_activating_keeps_current(model_path: Path, diag: TrainResult) -> None:
    v1 = save(model_path, "diagnostic", diag)
    v2 = save_bundle(
        model_path,
        "diagnostic",
        diag.pipeline,
        schema=diag.schema,
        classes=diag.classes,
        metrics=diag.metrics,
        profile=diag.profile,
        activate=False,
    )
    assert v2 != v1
    assert current_version(model_path, "diagnostic") == v1


def test_set_current_refuses_a_missing_version(model_path: Path, diag: TrainResult) -> None:
    save(model_path, "diagnostic", diag)
    with pytest.raises(BundleError, match="no version"):
        set_current(model_path, "diagnostic", "20000101T000000Z-00000000")


def test_tampered_artifact_is_refused(model_path: Path, diag: TrainResult) -> None:
    version = save(model_path, "diagnostic", diag)
    artifact = model_path / "diagnostic" / version / MODEL_FILE
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(model_path, "diagnostic")


def test_tampered_metadata_classes_are_refused(model_path: Path, diag: TrainResult) -> None:
    version = save(model_path, "diagnostic", diag)
    meta_path = model_path / "diagnostic" / version / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["classes"] = ["malignant", "benign"]  # swapped: answers would be inverted
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="classes"):
        load_bundle(model_path, "diagnostic")


def test_metadata_of_another_bundle_is_refused(model_path: Path, diag: TrainResult) -> None:
    version = save(model_path, "diagnostic", diag)
    meta_path = model_path / "diagnostic" / version / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["name"] = "other"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(model_path, "diagnostic")


class Doubler(TransformerMixin, BaseEstimator):
    """A custom transformer: code skops must not be allowed to import."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X) * 2


@pytest.mark.parametrize(
    ("first_step", "refused"),
    [
        (Doubler(), "Doubler"),
        # skops trusts numpy ufuncs by default; our allowlist is narrower on purpose.
        (FunctionTransformer(np.log1p), "log1p"),
    ],
    ids=["custom-class", "function"],
)
def test_untrusted_type_is_refused(
    model_path: Path,
    diag: TrainResult,
    datasets: dict[str, Dataset],
    first_step: Any,
    refused: str,
) -> None:
    d = datasets["diagnostic"]
    pipeline = Pipeline(
        [("pre", first_step), ("s", StandardScaler()), ("c", LogisticRegression(max_iter=5000))]
    ).fit(d.X, d.y)
    version = save(model_path, "diagnostic", diag, pipeline=pipeline)
    # The hash is right: only the type check stands between this artifact and the process.
    meta = load_metadata(model_path, "diagnostic", version)
    artifact = (model_path / "diagnostic" / version / MODEL_FILE).read_bytes()
    assert meta["sha256"] == sha256_bytes(artifact)
    with pytest.raises(BundleError, match=rf"untrusted types: .*{refused}"):
        load_bundle(model_path, "diagnostic")


def test_not_a_skops_file_is_refused(model_path: Path, diag: TrainResult) -> None:
    version = save(model_path, "diagnostic", diag)
    folder = model_path / "diagnostic" / version
    junk = b"not a zip file"
    (folder / MODEL_FILE).write_bytes(junk)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["sha256"] = sha256_bytes(junk)
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a valid skops"):
        load_bundle(model_path, "diagnostic")


def test_a_bare_estimator_outside_a_pipeline_is_refused(
    model_path: Path, diag: TrainResult, datasets: dict[str, Dataset]
) -> None:
    d = datasets["diagnostic"]
    scaler_only = StandardScaler().fit(d.X)
    version = save(model_path, "diagnostic", diag)
    folder = model_path / "diagnostic" / version
    data = sio.dumps(scaler_only)
    (folder / MODEL_FILE).write_bytes(data)
    meta = json.loads((folder / METADATA_FILE).read_text())
    meta["sha256"] = sha256_bytes(data)
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="not a trusted estimator"):
        load_bundle(model_path, "diagnostic")


@pytest.mark.parametrize(
    "name", ["", "Diagnostic", "1model", "a-b", "../etc", "a/b", "a" * 65, "naïve", "a\n"]
)
def test_invalid_name_is_refused(model_path: Path, diag: TrainResult, name: str) -> None:
    with pytest.raises(BundleError, match="model name"):
        save(model_path, name, diag)
    with pytest.raises(BundleError, match="model name"):
        load_bundle(model_path, name)
    assert list(model_path.iterdir()) == []


def test_longest_valid_name_is_accepted(model_path: Path, diag: TrainResult) -> None:
    name = "m" + "_" * 63
    save(model_path, name, diag)
    assert load_bundle(model_path, name).name == name


@pytest.mark.parametrize("version", ["../../etc", "latest", "20260101T000000Z-XYZ"])
def test_invalid_version_is_refused(model_path: Path, diag: TrainResult, version: str) -> None:
    save(model_path, "diagnostic", diag)
    with pytest.raises(BundleError, match="version must look like"):
        load_bundle(model_path, "diagnostic", version)


def test_current_pointing_outside_is_refused(model_path: Path, diag: TrainResult) -> None:
    save(model_path, "diagnostic", diag)
    (model_path / "diagnostic" / CURRENT_FILE).write_text("../../../etc/passwd\n")
    with pytest.raises(BundleError, match="version must look like"):
        load_bundle(model_path, "diagnostic")


def test_symlinked_model_folder_escaping_the_model_path_is_refused(
    tmp_path: Path, model_path: Path, diag: TrainResult
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    save(outside, "diagnostic", diag)  # a perfectly valid bundle, just elsewhere
    os.symlink(outside / "diagnostic", model_path / "diagnostic")
    with pytest.raises(BundleError, match="outside the model folder"):
        load_bundle(model_path, "diagnostic")
    assert list_bundles(model_path) == []


def test_symlinked_artifact_escaping_the_model_path_is_refused(
    tmp_path: Path, model_path: Path, diag: TrainResult
) -> None:
    outside = tmp_path / "outside"
    version = save(outside, "diagnostic", diag)
    inside = save(model_path, "diagnostic", diag)
    target = model_path / "diagnostic" / inside / MODEL_FILE
    target.unlink()
    os.symlink(outside / "diagnostic" / version / MODEL_FILE, target)
    with pytest.raises(BundleError, match="outside the model folder"):
        load_bundle(model_path, "diagnostic")


def test_symlink_inside_the_model_path_is_allowed(model_path: Path, diag: TrainResult) -> None:
    version = save(model_path, "diagnostic", diag)
    os.symlink(model_path / "diagnostic", model_path / "alias")
    bundle_meta = load_metadata(model_path, "diagnostic", version)
    assert bundle_meta["version"] == version


def test_missing_model_and_version_are_bundle_errors(model_path: Path, diag: TrainResult) -> None:
    with pytest.raises(BundleError, match="no CURRENT"):
        load_bundle(model_path, "diagnostic")
    save(model_path, "diagnostic", diag)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(model_path, "diagnostic", "20000101T000000Z-00000000")


def test_list_bundles_skips_junk(model_path: Path, diag: TrainResult) -> None:
    version = save(model_path, "diagnostic", diag)
    (model_path / "Not_A_Model").mkdir()
    (model_path / "README.txt").write_text("hello")
    (model_path / "diagnostic" / "notes").mkdir()
    (model_path / "empty").mkdir()
    infos = list_bundles(model_path)
    assert [(i.name, i.versions, i.current) for i in infos] == [
        ("diagnostic", (version,), version),
        ("empty", (), None),
    ]
    assert list_bundles(model_path / "absent") == []


def test_version_format_is_sortable_utc_timestamp_and_hash(
    model_path: Path, diag: TrainResult
) -> None:
    version = save(model_path, "diagnostic", diag)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", version)
