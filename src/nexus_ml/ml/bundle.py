"""Model bundles on disk: ``<model_path>/<name>/<version>/{model.skops, metadata.json,
manifest.json}``.

``<model_path>/<name>/CURRENT`` names the active version (the champion); older versions stay
on disk. ``<name>/SHADOW`` names the challenger scored in shadow (absent: none); ``<name>/HISTORY``
records champion changes (``ml.history``).
Writes are atomic (temp folder + rename, temp file + replace). Loading trusts nothing on disk:
names are checked, paths must stay inside ``model_path``; the manifest holds the sha256 of every
file of the bundle and the folder holds nothing else; skops may only build the estimator types
this service produces; the metadata must pass its typed model; the pipeline must fit the
metadata and answer reference rows with finite probabilities. Never pickle.

Bundles written before the manifest (format 1: no ``manifest.json``) are refused with reason
``unsealed``; :func:`seal_bundle` (``nexus-ml seal``) checks one in full and writes its manifest.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sklearn
import skops.io as sio
from sklearn.pipeline import Pipeline

from nexus_ml.ml.bundle_paths import (
    NAME_RE,
    VERSION_RE,
    fsync_dir,
    inside,
    model_root,
    replace_file,
    validate_name,
    validate_version,
    write_bytes,
)
from nexus_ml.ml.errors import BundleError
from nexus_ml.ml.labels import LabelError, check_class_labels
from nexus_ml.ml.manifest import (
    HASHED_FILES,
    MANIFEST_FILE,
    METADATA_FILE,
    MODEL_FILE,
    json_bytes,
    manifest_bytes,
    manifest_of,
    parse_manifest,
    sha256_bytes,
)
from nexus_ml.ml.metadata import BundleMetadata, parse_metadata, read_json
from nexus_ml.ml.operating import default_positive_class
from nexus_ml.ml.pipeline_checks import check_pipeline, compile_checked
from nexus_ml.ml.pointers import current_version, set_current, shadow_version
from nexus_ml.ml.predictor import Predictor
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.ml.trusted import audit_schema

_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle: the pipeline, its compiled predictor and its metadata."""

    name: str
    version: str
    pipeline: Any
    predictor: Predictor
    metadata: dict[str, Any]
    info: BundleMetadata
    path: Path


@dataclass(frozen=True)
class BundleInfo:
    """What is on disk for one model name (no artifact loaded)."""

    name: str
    versions: tuple[str, ...]
    current: str | None
    # Why CURRENT could not be read (None when it is fine or absent).
    problem: BundleError | None = None
    # The challenger SHADOW names (None: none, or unreadable: see shadow_problem).
    shadow: str | None = None
    shadow_problem: BundleError | None = None


def save_bundle(
    model_path: str | os.PathLike[str],
    name: str,
    pipeline: Any,
    *,
    schema: FeatureSchema,
    classes: Sequence[str],
    metrics: Mapping[str, Any],
    profile: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
    operating_point: Mapping[str, Any] | None = None,
    segments: Sequence[Mapping[str, Any]] = (),
    baseline: Mapping[str, Any] | None = None,
    activate: bool = True,
    created_by: str | None = None,
) -> str:
    """Write a new version of ``name`` atomically and (by default) make it CURRENT; return it.

    The bundle is checked as a load would check it before anything is published: a training
    bug cannot leave a version that every worker then refuses. Without ``operating_point``
    the default positive class (``ml.operating``) and the argmax rule are written.
    """
    validate_name(name)
    root = model_root(model_path)
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    inside(root, model_dir)
    artifact = _dump(pipeline)
    digest = sha256_bytes(artifact)
    metadata: dict[str, Any] = {
        "name": name,
        "version": "",
        "created_at": "",
        "classes": [str(c) for c in classes],
        "features": schema.to_list(),
        "training_metrics": dict(metrics),
        "sha256": digest,
        "sklearn_version": sklearn.__version__,
        "profile": dict(profile),
        "source": dict(source or {}),
        "operating_point": dict(operating_point or _default_point(classes, profile)),
        "segments": [dict(s) for s in segments],
        "baseline": None if baseline is None else dict(baseline),
    }
    if created_by:
        metadata["created_by"] = created_by[:128]
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
    try:
        write_bytes(tmp / MODEL_FILE, artifact)
        version = _publish(model_dir, tmp, metadata, artifact, pipeline)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if activate:
        set_current(root, name, version)
    return version


def _default_point(classes: Sequence[str], profile: Mapping[str, Any]) -> dict[str, Any]:
    counts = (profile.get("class_balance") or {}).get("counts") or []
    return {"positive_class": default_positive_class(list(classes), counts), "threshold": None}


def _dump(pipeline: Any) -> bytes:
    buffer = io.BytesIO()
    sio.dump(pipeline, buffer)
    return buffer.getvalue()


def _publish(
    model_dir: Path, tmp: Path, metadata: dict[str, Any], artifact: bytes, pipeline: Any
) -> str:
    """Rename ``tmp`` to a fresh version folder; versions of one name strictly increase."""
    now = datetime.now(UTC).replace(microsecond=0)
    latest = max(_versions(model_dir), default=None)
    if latest is not None:
        # Two saves in one second (or a clock step back) still get an ordered, unique version.
        last = datetime.strptime(latest[:16], _TIMESTAMP).replace(tzinfo=UTC)
        now = max(now, last + timedelta(seconds=1))
    digest = sha256_bytes(artifact)
    for attempt in range(100):
        version = f"{now.strftime(_TIMESTAMP)}-{digest[:8]}"
        metadata["version"] = version
        metadata["created_at"] = now.isoformat().replace("+00:00", "Z")
        text = json_bytes(metadata)
        if attempt == 0:
            # What will be on disk, read back as a load reads it.
            _verify(pipeline, parse_metadata(read_json(text, "metadata.json")))
        write_bytes(tmp / METADATA_FILE, text)
        write_bytes(
            tmp / MANIFEST_FILE, manifest_bytes({METADATA_FILE: text, MODEL_FILE: artifact})
        )
        try:
            os.rename(tmp, model_dir / version)
        except OSError:
            # Another writer took this second; try the next one.
            if not (model_dir / version).exists():
                raise
            now += timedelta(seconds=1)
            continue
        fsync_dir(model_dir)
        return version
    raise BundleError("could not allocate a unique version", "internal")


def _versions(model_dir: Path) -> Iterator[str]:
    if not model_dir.is_dir():
        return
    for child in model_dir.iterdir():
        if VERSION_RE.fullmatch(child.name) and child.is_dir():
            yield child.name


def list_bundles(model_path: str | os.PathLike[str]) -> list[BundleInfo]:
    """Every valid model name under ``model_path`` with its versions (oldest first)."""
    root = model_root(model_path)
    if not root.is_dir():
        return []
    infos = []
    for child in sorted(root.iterdir()):
        if not NAME_RE.fullmatch(child.name) or not child.is_dir():
            continue
        try:
            inside(root, child)
        except BundleError:
            continue  # a symlink out of the model folder is not ours to list
        current, problem = None, None
        try:
            current = current_version(root, child.name)
        except BundleError as exc:
            problem = exc
        shadow, shadow_problem = None, None
        try:
            shadow = shadow_version(root, child.name)
        except BundleError as exc:
            shadow_problem = exc
        infos.append(
            BundleInfo(
                child.name,
                tuple(sorted(_versions(child))),
                current,
                problem,
                shadow=shadow,
                shadow_problem=shadow_problem,
            )
        )
    return infos


def bundle_stamp(
    model_path: str | os.PathLike[str], name: str, version: str
) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a version folder's files: changes when any file does."""
    folder = model_root(model_path) / validate_name(name) / validate_version(version)
    try:
        return tuple(
            sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder))
        )
    except OSError:
        return ()


def load_metadata(
    model_path: str | os.PathLike[str], name: str, version: str | None = None
) -> dict[str, Any]:
    """One version's metadata.json (CURRENT by default), checked against the manifest.

    The artifact is not loaded and the metadata not validated beyond that: ``load_bundle``
    does both.
    """
    return _read(model_path, name, version).metadata


@dataclass(frozen=True)
class _Files:
    """A bundle's manifest and metadata, read once: every check sees the same bytes."""

    version: str
    path: Path
    manifest: dict[str, str] | None  # None: a format 1 bundle, written before manifests
    metadata_sha256: str
    metadata: dict[str, Any]


def _read_file(root: Path, path: Path, what: str) -> bytes:
    try:
        return inside(root, path).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{what} is missing", "not_found") from None
    except OSError as exc:
        raise BundleError(f"{what} is unreadable ({type(exc).__name__})", "not_found") from None


def _read(
    model_path: str | os.PathLike[str], name: str, version: str | None, *, sealed: bool = True
) -> _Files:
    validate_name(name)
    root = model_root(model_path)
    if version is None:
        version = current_version(root, name)
        if version is None:
            raise BundleError(f"model {name!r} has no CURRENT version", "not_found")
    validate_version(version)
    where = f"model {name!r} version {version!r}"
    bundle_dir = inside(root, root / name / version)
    try:
        entries = set(os.listdir(bundle_dir))
    except OSError:
        raise BundleError(f"{where} not found", "not_found") from None
    if METADATA_FILE not in entries:
        raise BundleError(f"{where} not found (no {METADATA_FILE})", "not_found")
    manifest = None
    if MANIFEST_FILE in entries:
        manifest = parse_manifest(_read_file(root, bundle_dir / MANIFEST_FILE, "the manifest"))
    elif sealed:
        raise BundleError(
            f"{where} has no manifest (a format 1 bundle): check it, then run "
            f"`nexus-ml seal {name}`, or retrain",
            "unsealed",
        )
    if entries - {MANIFEST_FILE, *HASHED_FILES}:
        raise BundleError(f"{where} holds files its manifest does not cover", "integrity")
    data = _read_file(root, bundle_dir / METADATA_FILE, f"metadata of {where}")
    digest = sha256_bytes(data)
    if manifest is not None and digest != manifest[METADATA_FILE]:
        raise BundleError(
            f"metadata of {where} does not match the sha256 in its manifest", "integrity"
        )
    metadata = read_json(data, f"metadata of {where}")
    if not isinstance(metadata, dict):
        raise BundleError("metadata must be a JSON object", "metadata")
    if metadata.get("name") != name or metadata.get("version") != version:
        raise BundleError("metadata does not match the bundle's folder", "metadata")
    return _Files(version, bundle_dir, manifest, digest, metadata)


def load_bundle(
    model_path: str | os.PathLike[str], name: str, version: str | None = None
) -> Bundle:
    """Load and verify one version (CURRENT by default) of ``name``: every file, every check."""
    return _load(model_path, name, _read(model_path, name, version))


def _load(model_path: str | os.PathLike[str], name: str, files: _Files) -> Bundle:
    version, metadata = files.version, files.metadata
    where = f"{name!r} {version!r}"
    artifact = _read_file(model_root(model_path), files.path / MODEL_FILE, f"artifact of {where}")
    # Hash, type check and load all read the same bytes, so nothing can change in between.
    digest = sha256_bytes(artifact)
    if files.manifest is not None and digest != files.manifest[MODEL_FILE]:
        raise BundleError(
            f"artifact of {where} does not match the sha256 in its manifest", "integrity"
        )
    if digest != metadata.get("sha256"):
        raise BundleError(f"artifact of {where} does not match its sha256", "integrity")
    info = parse_metadata(metadata)
    pipeline = load_trusted(artifact)
    predictor = _verify(pipeline, info)
    return Bundle(name, version, pipeline, predictor, metadata, info, files.path)


def _verify(pipeline: Any, info: BundleMetadata) -> Predictor:
    """Check a pipeline against its parsed metadata (at save and at load); compile it."""
    check_pipeline(pipeline, info.feature_names)
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    if classes != info.classes:
        raise BundleError("artifact classes do not match its metadata")
    try:
        check_class_labels(classes)  # labels both stores hold, and feedback can name
    except LabelError as exc:
        raise BundleError(f"class labels: {exc}", "metadata") from None
    return compile_checked(
        pipeline,
        info.profile,
        info.feature_schema(),
        positive_class=info.positive_class,
        threshold=info.threshold,
    )


def seal_bundle(model_path: str | os.PathLike[str], name: str, version: str) -> bool:
    """Check a format 1 bundle in full and write its manifest; False if it has one already.

    Sealing vouches that the files are the ones training wrote: run it only on bundles whose
    origin you trust. Every check of a load runs first, so nothing inconsistent is sealed.
    """
    files = _read(model_path, name, version, sealed=False)
    if files.manifest is not None:
        return False
    _load(model_path, name, files)  # the artifact matched metadata["sha256"] just now
    text = manifest_of({METADATA_FILE: files.metadata_sha256, MODEL_FILE: files.metadata["sha256"]})
    # The temp file lives beside the folder: the folder never holds a file the manifest lacks.
    replace_file(files.path / MANIFEST_FILE, text, tmp_dir=files.path.parent)
    return True


def load_trusted(artifact: bytes) -> Any:
    """Load a skops artifact, refusing any type outside the reviewed list (``ml/trusted.py``).

    The message names each refused type with its reason ("can run code", "not on the reviewed
    list"); nothing of the file is built before every type has passed.
    """
    try:
        untrusted = frozenset(sio.get_untrusted_types(data=artifact))
        with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise BundleError("artifact is not a valid skops file", "artifact") from exc
    refused = audit_schema(schema, untrusted)
    if refused:
        shown = "; ".join(str(r) for r in refused[:5])
        more = f"; and {len(refused) - 5} more" if len(refused) > 5 else ""
        raise BundleError(f"artifact contains untrusted types: {shown}{more}", "untrusted")
    try:
        pipeline = sio.load(io.BytesIO(artifact), trusted=sorted(untrusted))
    except Exception as exc:  # skops raises many types on malformed input
        raise BundleError("artifact could not be loaded", "artifact") from exc
    if type(pipeline) is not Pipeline:
        raise BundleError("artifact is not a trusted estimator (expected a Pipeline)", "artifact")
    return pipeline
