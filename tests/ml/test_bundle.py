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
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from tests.ml.forge import (
    BAD_BUNDLES,
    Doubler,
    new_version,
    reseal,
    set_metric,
    swap_names,
    tamper,
)

from nexus_ml.ml.bundle import (
    MANIFEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    BundleError,
    list_bundles,
    load_bundle,
    load_metadata,
    save_bundle,
    seal_bundle,
    sha256_bytes,
)
from nexus_ml.ml.bundle_paths import VERSION_RE
from nexus_ml.ml.datasets import Dataset
from nexus_ml.ml.pointers import CURRENT_FILE, current_version, set_current
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
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_FILE, METADATA_FILE, MODEL_FILE]
    assert (model_path / "diagnostic" / CURRENT_FILE).read_text().strip() == version
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest == {
        "format": 2,
        "files": {
            METADATA_FILE: sha256_bytes((folder / METADATA_FILE).read_bytes()),
            MODEL_FILE: sha256_bytes((folder / MODEL_FILE).read_bytes()),
        },
    }

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


@pytest.mark.parametrize("model", ["diagnostic", "diabetes_risk"])
@pytest.mark.parametrize("kind", sorted(BAD_BUNDLES))
def test_bad_bundle_is_refused_with_its_reason(
    model_path: Path, trained: dict[str, TrainResult], model: str, kind: str
) -> None:
    good = save(model_path, model, trained[model])
    make, reason = BAD_BUNDLES[kind]
    make(model_path, model)
    with pytest.raises(BundleError) as refused:
        load_bundle(model_path, model)
    assert refused.value.reason == reason, refused.value
    assert load_bundle(model_path, model, good).version == good  # the good one still loads


def test_tampered_metadata_is_refused_by_load_metadata_too(
    model_path: Path, diag: TrainResult
) -> None:
    save(model_path, "diagnostic", diag)
    version = tamper(model_path, "diagnostic", swap_names)
    with pytest.raises(BundleError, match="manifest") as refused:
        load_metadata(model_path, "diagnostic", version)
    assert refused.value.reason == "integrity"


def test_a_consistent_sealed_renaming_cannot_be_detected(
    model_path: Path, trained: dict[str, TrainResult]
) -> None:
    # The documented limit: a forger who swaps two names in the schema and the profile together
    # and rewrites the manifest makes a bundle that is consistent in every way the service can
    # see (the artifact, trained on arrays, holds no names). Permissions on the model folder
    # are the defence; if this ever starts failing, update docs/security.md.
    save(model_path, "diabetes_risk", trained["diabetes_risk"])
    version = new_version(model_path, "diabetes_risk", edit=swap_names)
    bundle = load_bundle(model_path, "diabetes_risk")
    assert bundle.version == version
    assert bundle.info.feature_names[:2] == ["sex", "age"]


def test_save_refuses_what_a_load_would_refuse(
    model_path: Path, diag: TrainResult, datasets: dict[str, Dataset]
) -> None:
    d = datasets["diagnostic"]
    scaler = StandardScaler().fit(d.X)
    bad_inputs: list[tuple[dict[str, Any], str]] = [
        ({"metrics": {**diag.metrics, "holdout_accuracy": "not-a-number"}}, "metadata"),
        ({"metrics": {**diag.metrics, "holdout_accuracy": 1.5}}, "metadata"),
        ({"profile": {}}, "metadata"),
        ({"classes": list(reversed(diag.classes))}, "metadata"),
        ({"pipeline": Pipeline([("a", scaler), ("b", StandardScaler().fit(d.X))])}, "structure"),
    ]
    for change, reason in bad_inputs:
        args: dict[str, Any] = {
            "pipeline": diag.pipeline,
            "schema": diag.schema,
            "classes": diag.classes,
            "metrics": diag.metrics,
            "profile": diag.profile,
            **change,
        }
        with pytest.raises(BundleError) as refused:
            save_bundle(model_path, "diagnostic", args.pop("pipeline"), **args)
        assert refused.value.reason == reason, (change.keys(), refused.value)
    # Nothing was published, and no temporary folder is left behind.
    assert [p.name for p in (model_path / "diagnostic").iterdir()] == []


def test_unsealed_bundle_is_refused_until_sealed(model_path: Path, diag: TrainResult) -> None:
    save(model_path, "diagnostic", diag)
    version = new_version(model_path, "diagnostic", seal=False)  # as format 1 wrote it
    with pytest.raises(BundleError, match="nexus-ml seal diagnostic") as refused:
        load_bundle(model_path, "diagnostic")
    assert refused.value.reason == "unsealed"
    assert seal_bundle(model_path, "diagnostic", version) is True
    assert load_bundle(model_path, "diagnostic").version == version
    assert seal_bundle(model_path, "diagnostic", version) is False  # sealed already
    leftovers = [p.name for p in (model_path / "diagnostic").iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (set_metric("holdout_accuracy", float("nan")), "metadata"),
        (lambda m: m.__setitem__("profile", {}), "metadata"),
        (lambda m: m.__setitem__("sha256", "0" * 64), "integrity"),
    ],
    ids=["nan-holdout", "empty-profile", "wrong-artifact-hash"],
)
def test_seal_refuses_a_bad_format_1_bundle(
    model_path: Path, diag: TrainResult, edit: Any, reason: str
) -> None:
    save(model_path, "diagnostic", diag)
    version = new_version(model_path, "diagnostic", edit=edit, seal=False)
    with pytest.raises(BundleError) as refused:
        seal_bundle(model_path, "diagnostic", version)
    assert refused.value.reason == reason
    assert not (model_path / "diagnostic" / version / MANIFEST_FILE).exists()


def test_seal_does_not_bless_a_tampered_sealed_bundle(model_path: Path, diag: TrainResult) -> None:
    save(model_path, "diagnostic", diag)
    version = tamper(model_path, "diagnostic", set_metric("holdout_accuracy", 0.999))
    manifest = (model_path / "diagnostic" / version / MANIFEST_FILE).read_bytes()
    with pytest.raises(BundleError, match="manifest") as refused:
        seal_bundle(model_path, "diagnostic", version)
    assert refused.value.reason == "integrity"
    assert (model_path / "diagnostic" / version / MANIFEST_FILE).read_bytes() == manifest
    with pytest.raises(BundleError, match="manifest"):
        load_bundle(model_path, "diagnostic")


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b'{"format": 2}',
        b'{"format": 1, "files": {}}',
        b'{"format": 3, "files": {}}',
        b'{"format": "2", "files": {}}',
        b'{"format": 2, "files": {"metadata.json": "00", "model.skops": "00"}}',
        b'{"format": 2, "files": {"model.skops": "' + b"0" * 64 + b'"}}',
        b'{"format": 2, "format": 2, "files": {}}',
        b" " * 5000,
    ],
    ids=[
        "garbage",
        "no-files",
        "format-1",
        "format-3",
        "format-string",
        "short-hashes",
        "metadata-not-covered",
        "repeated-key",
        "oversized",
    ],
)
def test_malformed_manifest_is_refused(
    model_path: Path, diag: TrainResult, manifest: bytes
) -> None:
    version = save(model_path, "diagnostic", diag)
    (model_path / "diagnostic" / version / MANIFEST_FILE).write_bytes(manifest)
    with pytest.raises(BundleError, match=r"format|manifest") as refused:
        load_bundle(model_path, "diagnostic")
    assert refused.value.reason == "integrity"


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "a", "name": "diagnostic"}',
        '{"training_metrics": {"holdout_accuracy": Infinity}}',
        "[1, 2, 3]",
        "\xff\xfe",
    ],
    ids=["repeated-key", "infinity", "not-an-object", "not-utf8"],
)
def test_metadata_that_is_not_strict_json_is_refused(
    model_path: Path, diag: TrainResult, text: str
) -> None:
    save(model_path, "diagnostic", diag)
    version = new_version(model_path, "diagnostic")
    folder = model_path / "diagnostic" / version
    (folder / METADATA_FILE).write_bytes(text.encode("latin-1"))
    reseal(folder)
    with pytest.raises(BundleError) as refused:
        load_bundle(model_path, "diagnostic")
    assert refused.value.reason == "metadata"


def test_metadata_of_another_bundle_is_refused(model_path: Path, diag: TrainResult) -> None:
    version = save(model_path, "diagnostic", diag)
    meta_path = model_path / "diagnostic" / version / METADATA_FILE
    meta = json.loads(meta_path.read_text())
    meta["name"] = "other"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(model_path, "diagnostic")


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
    save(model_path, "diagnostic", diag)
    version = new_version(model_path, "diagnostic", pipeline=pipeline)
    # The hashes are right: only the type check stands between this artifact and the process.
    meta = load_metadata(model_path, "diagnostic", version)
    artifact = (model_path / "diagnostic" / version / MODEL_FILE).read_bytes()
    assert meta["sha256"] == sha256_bytes(artifact)
    with pytest.raises(BundleError, match=rf"untrusted types: .*{refused}") as error:
        load_bundle(model_path, "diagnostic")
    assert error.value.reason == "untrusted"


def test_not_a_skops_file_is_refused(model_path: Path, diag: TrainResult) -> None:
    save(model_path, "diagnostic", diag)
    new_version(model_path, "diagnostic", artifact=b"not a zip file")
    with pytest.raises(BundleError, match="not a valid skops") as error:
        load_bundle(model_path, "diagnostic")
    assert error.value.reason == "artifact"


def test_a_bare_estimator_outside_a_pipeline_is_refused(
    model_path: Path, diag: TrainResult, datasets: dict[str, Dataset]
) -> None:
    scaler_only = StandardScaler().fit(datasets["diagnostic"].X)
    save(model_path, "diagnostic", diag)
    new_version(model_path, "diagnostic", artifact=sio.dumps(scaler_only))
    with pytest.raises(BundleError, match="not a trusted estimator") as error:
        load_bundle(model_path, "diagnostic")
    assert error.value.reason == "artifact"


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
