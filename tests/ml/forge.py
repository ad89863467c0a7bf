"""Bad bundles of every kind the loader must refuse, made from a good one.

*Tampered* bundles change a file after sealing, as an intruder or a careless hand edit would:
the manifest refuses them. *Forged* bundles are written with correct hashes (a buggy tool, or
an intruder who rewrote the manifest too): only the semantic checks stand in their way. Each
kind makes a new CURRENT version of a model whose CURRENT is good, so the tests can check both
"refused at start-up" and "refused by the watcher while the old version keeps serving".
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import skops.io as sio
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from nexus_ml.ml.bundle import (
    MANIFEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    list_bundles,
    load_bundle,
    manifest_bytes,
    sha256_bytes,
)
from nexus_ml.ml.errors import RefusalReason
from nexus_ml.ml.pointers import CURRENT_FILE, current_version, set_current

Meta = dict[str, Any]
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


def reseal(folder: Path) -> None:
    """Rewrite ``folder``'s manifest to match its files, as a forger would."""
    files = {name: (folder / name).read_bytes() for name in (METADATA_FILE, MODEL_FILE)}
    (folder / MANIFEST_FILE).write_bytes(manifest_bytes(files))


def _next_version(model_path: Path, name: str, digest: str) -> str:
    [info] = [i for i in list_bundles(model_path) if i.name == name]
    last = datetime.strptime(max(info.versions)[:16], _TIMESTAMP).replace(tzinfo=UTC)
    return f"{(last + timedelta(seconds=1)).strftime(_TIMESTAMP)}-{digest[:8]}"


def new_version(
    model_path: Path,
    name: str,
    *,
    pipeline: Any = None,
    artifact: bytes | None = None,
    edit: Callable[[Meta], None] | None = None,
    seal: bool = True,
    after: Callable[[Path], None] | None = None,
) -> str:
    """A copy of ``name``'s CURRENT bundle with the changes given, made CURRENT; its version.

    ``after`` changes the folder once it is sealed. CURRENT moves last, so a running watcher
    never loads a version before it is complete (as with a real save).
    """
    source = model_path / name / str(current_version(model_path, name))
    meta: Meta = json.loads((source / METADATA_FILE).read_text())
    data = (source / MODEL_FILE).read_bytes()
    if pipeline is not None:
        data = sio.dumps(pipeline)
    if artifact is not None:
        data = artifact
    meta["sha256"] = sha256_bytes(data)
    version = _next_version(model_path, name, meta["sha256"])
    meta["version"] = version
    if edit is not None:
        edit(meta)
    folder = model_path / name / version
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(data)
    (folder / METADATA_FILE).write_text(json.dumps(meta))  # NaN allowed: a forger's choice
    if seal:
        reseal(folder)
    if after is not None:
        after(folder)
    set_current(model_path, name, version)
    return version


def tamper(model_path: Path, name: str, edit: Callable[[Meta], None]) -> str:
    """A good new version whose metadata is then edited without resealing."""

    def edit_file(folder: Path) -> None:
        meta = json.loads((folder / METADATA_FILE).read_text())
        edit(meta)
        (folder / METADATA_FILE).write_text(json.dumps(meta))

    return new_version(model_path, name, after=edit_file)


# --- edits of metadata ---------------------------------------------------------------------


def swap_names(meta: Meta) -> None:
    """Swap the first two features' names everywhere (schema and profile, consistently)."""
    feats = meta["features"]
    a, b = feats[0]["name"], feats[1]["name"]
    feats[0]["name"], feats[1]["name"] = b, a
    profile = meta["profile"]
    names = profile["feature_names"]
    names[0], names[1] = b, a
    profile["features"][a], profile["features"][b] = profile["features"][b], profile["features"][a]


def set_metric(key: str, value: Any) -> Callable[[Meta], None]:
    return lambda meta: meta["training_metrics"].__setitem__(key, value)


def _first_feature(meta: Meta) -> dict[str, Any]:
    profile: dict[str, Any] = meta["profile"]
    first: dict[str, Any] = profile["features"][profile["feature_names"][0]]
    return first


def _drop_feature_profile(meta: Meta) -> None:
    del meta["profile"]["features"][meta["profile"]["feature_names"][-1]]


def _duplicate_name(meta: Meta) -> None:
    meta["features"][1]["name"] = meta["features"][0]["name"]


def _swap_classes(meta: Meta) -> None:
    meta["classes"].reverse()
    meta["profile"]["class_balance"]["classes"].reverse()


# --- edits of the pipeline -----------------------------------------------------------------


class Doubler(TransformerMixin, BaseEstimator):
    """A custom transformer: code skops must not be allowed to import."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X) * 2


def _pipeline(model_path: Path, name: str) -> Pipeline:
    pipeline: Pipeline = copy.deepcopy(load_bundle(model_path, name).pipeline)
    return pipeline


def _mutate(step: int, attr: str, change: Callable[[Any], Any]) -> Callable[[Path, str], Any]:
    def make(model_path: Path, name: str) -> Any:
        pipeline = _pipeline(model_path, name)
        est = pipeline.steps[step][1]
        setattr(est, attr, change(np.array(getattr(est, attr), dtype=np.float64)))
        return pipeline

    return make


def _two_scalers(model_path: Path, name: str) -> Any:
    scaler = _pipeline(model_path, name).steps[0][1]
    return Pipeline([("scaler", scaler), ("again", copy.deepcopy(scaler))])


def _untrusted(model_path: Path, name: str) -> Any:
    pipeline = _pipeline(model_path, name)
    n = pipeline.steps[0][1].n_features_in_
    return Pipeline([("double", Doubler().fit(np.zeros((2, n)))), *pipeline.steps])


def _with(index: int, value: float) -> Callable[[Any], Any]:
    def change(arr: Any) -> Any:
        arr.flat[index] = value
        return arr

    return change


def _overflowing(arr: Any) -> Any:
    # Finite weights whose dot product overflows to +inf and -inf: NaN probabilities.
    return np.where(np.arange(arr.size).reshape(arr.shape) % 2 == 0, 1e308, -1e308)


# --- the kinds -----------------------------------------------------------------------------


class Kind(NamedTuple):
    """How to make one bad bundle, and the reason it must be refused with."""

    make: Callable[[Path, str], str]
    reason: RefusalReason


def _tampered(edit: Callable[[Meta], None]) -> Callable[[Path, str], str]:
    return lambda path, name: tamper(path, name, edit)


def _forged_meta(edit: Callable[[Meta], None]) -> Callable[[Path, str], str]:
    return lambda path, name: new_version(path, name, edit=edit)


def _forged_pipeline(make: Callable[[Path, str], Any]) -> Callable[[Path, str], str]:
    return lambda path, name: new_version(path, name, pipeline=make(path, name))


def _append_to_artifact(folder: Path) -> None:
    artifact = folder / MODEL_FILE
    artifact.write_bytes(artifact.read_bytes() + b"\0")


def _tampered_artifact(path: Path, name: str) -> str:
    return new_version(path, name, after=_append_to_artifact)


def _unsealed(path: Path, name: str) -> str:
    return new_version(path, name, seal=False)


def _stray_file(path: Path, name: str) -> str:
    return new_version(path, name, after=lambda folder: (folder / "notes.txt").write_text("hi"))


def _bad_current(path: Path, name: str) -> str:
    (path / name / CURRENT_FILE).write_text("../../elsewhere\n")
    return "-"


BAD_BUNDLES: dict[str, Kind] = {
    # Files changed after sealing: the manifest refuses them.
    "tampered_holdout": Kind(_tampered(set_metric("holdout_accuracy", 0.999)), "integrity"),
    "tampered_swapped_names": Kind(_tampered(swap_names), "integrity"),
    "tampered_profile": Kind(
        _tampered(lambda m: _first_feature(m)["quantiles"].__setitem__(500, 0.0)), "integrity"
    ),
    "tampered_classes": Kind(_tampered(_swap_classes), "integrity"),
    "tampered_artifact": Kind(_tampered_artifact, "integrity"),
    "stray_file": Kind(_stray_file, "integrity"),
    "unsealed": Kind(_unsealed, "unsealed"),
    "bad_current": Kind(_bad_current, "path"),
    # Sealed metadata that breaks its typed model or its consistency rules.
    "holdout_string": Kind(
        _forged_meta(set_metric("holdout_accuracy", "not-a-number")), "metadata"
    ),
    "holdout_nan": Kind(_forged_meta(set_metric("holdout_accuracy", float("nan"))), "metadata"),
    "holdout_above_one": Kind(_forged_meta(set_metric("holdout_accuracy", 1.5)), "metadata"),
    "holdout_bool": Kind(_forged_meta(set_metric("holdout_accuracy", True)), "metadata"),
    "profile_empty": Kind(_forged_meta(lambda m: m.__setitem__("profile", {})), "metadata"),
    "profile_partial": Kind(_forged_meta(_drop_feature_profile), "metadata"),
    "profile_short_sketch": Kind(
        _forged_meta(lambda m: _first_feature(m)["quantiles"].pop()), "metadata"
    ),
    "profile_unsorted_sketch": Kind(
        _forged_meta(lambda m: _first_feature(m)["quantiles"].reverse()), "metadata"
    ),
    "profile_bins_miscounted": Kind(
        _forged_meta(lambda m: _first_feature(m)["bin_counts"].__setitem__(0, 10**6)), "metadata"
    ),
    "duplicate_feature_names": Kind(_forged_meta(_duplicate_name), "metadata"),
    "classes_unlike_balance": Kind(_forged_meta(lambda m: m["classes"].reverse()), "metadata"),
    "unknown_key": Kind(_forged_meta(lambda m: m.__setitem__("note", "x")), "metadata"),
    # Sealed metadata consistent with itself but not with the artifact.
    "wrong_classes": Kind(_forged_meta(_swap_classes), "invalid"),
    # Sealed pipelines the structure, shape, number and probe checks refuse.
    "two_scalers": Kind(_forged_pipeline(_two_scalers), "structure"),
    "untrusted_step": Kind(_forged_pipeline(_untrusted), "untrusted"),
    "not_a_pipeline": Kind(
        lambda path, name: new_version(
            path, name, artifact=sio.dumps(StandardScaler().fit(np.eye(3)))
        ),
        "artifact",
    ),
    "scaler_mean_short": Kind(_forged_pipeline(_mutate(0, "mean_", lambda a: a[:-1])), "mismatch"),
    "coef_short": Kind(_forged_pipeline(_mutate(1, "coef_", lambda a: a[:, :-1])), "mismatch"),
    "intercept_long": Kind(
        _forged_pipeline(_mutate(1, "intercept_", lambda a: np.append(a, 0.0))), "mismatch"
    ),
    "n_features_in_off": Kind(
        _forged_pipeline(_mutate(0, "n_features_in_", lambda a: int(a) - 1)), "mismatch"
    ),
    "nan_coef": Kind(_forged_pipeline(_mutate(1, "coef_", _with(0, float("nan")))), "non_finite"),
    "inf_intercept": Kind(
        _forged_pipeline(_mutate(1, "intercept_", _with(0, float("inf")))), "non_finite"
    ),
    "nan_scale": Kind(_forged_pipeline(_mutate(0, "scale_", _with(0, float("nan")))), "non_finite"),
    "overflowing_coef": Kind(_forged_pipeline(_mutate(1, "coef_", _overflowing)), "probe"),
}


def meta_classes(model_path: Path, name: str) -> list[str]:
    """The classes the CURRENT metadata of ``name`` lists."""
    version = (model_path / name / "CURRENT").read_text().strip()
    meta = json.loads((model_path / name / version / "metadata.json").read_text())
    return list(meta["classes"])


def relabel(model_path: Path, name: str, classes: list[str], *, as_name: str | None = None) -> str:
    """A forged CURRENT version of ``name`` (or of a copy named ``as_name``) with other labels.

    The pipeline's classes, the metadata's and the profile's are rewritten together and the
    manifest resealed, as a foreign tool would write the bundle: only the label rule is left
    to refuse it.
    """
    pipeline = _pipeline(model_path, name)
    if as_name is not None:
        shutil.copytree(model_path / name, model_path / as_name)
        name = as_name
    pipeline.steps[-1][1].classes_ = np.array(classes, dtype=object)

    old = list(meta_classes(model_path, name))

    def edit(meta: Meta) -> None:
        meta["name"] = name
        meta["classes"] = list(classes)
        meta["profile"]["class_balance"]["classes"] = list(classes)
        point = meta.get("operating_point")
        if point and point.get("positive_class") in old:  # the same class, renamed
            point["positive_class"] = classes[old.index(point["positive_class"])]
        if meta.get("baseline"):
            by_old = meta["baseline"]["classes"]
            meta["baseline"]["classes"] = {
                new: by_old[was] for was, new in zip(old, classes, strict=True)
            }

    return new_version(model_path, name, pipeline=pipeline, edit=edit)
