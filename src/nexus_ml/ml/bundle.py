"""Model bundles on disk: ``<model_path>/<name>/<version>/{model.skops, metadata.json}``.

``<model_path>/<name>/CURRENT`` names the active version; older versions stay on disk.
Writes are atomic (temp folder + rename, temp file + replace). Loading trusts nothing on disk:
names are checked, paths must stay inside ``model_path``, the artifact's sha256 must match its
metadata and skops may only build the estimator types this service produces. Never pickle.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
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

from nexus_ml.ml.labels import LabelError, check_class_labels
from nexus_ml.ml.schema import FeatureSchema

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
CURRENT_FILE = "CURRENT"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_TIMESTAMP = "%Y%m%dT%H%M%SZ"

# Every type a bundle may contain: the estimators we train and the containers/arrays inside
# them. skops already refuses most code, but its defaults trust all of scikit-learn and numpy's
# ufuncs; this list is narrower on purpose.
TRUSTED_ESTIMATORS = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._data.StandardScaler",
        "sklearn.linear_model._logistic.LogisticRegression",
    }
)
_TRUSTED_PLAIN = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",
        "builtins.int",
        "builtins.float",
        "builtins.bool",
        "builtins.NoneType",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.float32",
        "numpy.int64",
        "numpy.int32",
        "numpy.bool_",
        "numpy.str_",
    }
)
TRUSTED_TYPES = TRUSTED_ESTIMATORS | _TRUSTED_PLAIN


class BundleError(Exception):
    """A bundle is missing, malformed, tampered with or not trusted."""


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the fitted pipeline and its metadata."""

    name: str
    version: str
    pipeline: Any
    metadata: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class BundleInfo:
    """What is on disk for one model name (no artifact loaded)."""

    name: str
    versions: tuple[str, ...]
    current: str | None


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe model name, else raise BundleError."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BundleError("model name must match ^[a-z][a-z0-9_]{0,63}$")
    return name


def _validate_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise BundleError("version must look like 20260101T000000Z-0123abcd")
    return version


def _root(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).resolve()


def _inside(root: Path, path: Path) -> Path:
    """Resolve ``path`` (following symlinks) and refuse it if it leaves ``root``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise BundleError("bundle path resolves outside the model folder")
    return resolved


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


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
    activate: bool = True,
) -> str:
    """Write a new version of ``name`` atomically and (by default) make it CURRENT; return it."""
    validate_name(name)
    root = _root(model_path)
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    _inside(root, model_dir)
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
    }
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=model_dir))
    try:
        (tmp / MODEL_FILE).write_bytes(artifact)
        version = _publish(model_dir, tmp, metadata, digest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if activate:
        set_current(root, name, version)
    return version


def _dump(pipeline: Any) -> bytes:
    buffer = io.BytesIO()
    sio.dump(pipeline, buffer)
    return buffer.getvalue()


def _publish(model_dir: Path, tmp: Path, metadata: dict[str, Any], digest: str) -> str:
    """Rename ``tmp`` to a fresh version folder; versions of one name strictly increase."""
    now = datetime.now(UTC).replace(microsecond=0)
    latest = max(_versions(model_dir), default=None)
    if latest is not None:
        # Two saves in one second (or a clock step back) still get an ordered, unique version.
        last = datetime.strptime(latest[:16], _TIMESTAMP).replace(tzinfo=UTC)
        now = max(now, last + timedelta(seconds=1))
    for _ in range(100):
        version = f"{now.strftime(_TIMESTAMP)}-{digest[:8]}"
        metadata["version"] = version
        metadata["created_at"] = now.isoformat().replace("+00:00", "Z")
        _write_json(tmp / METADATA_FILE, metadata)
        try:
            os.rename(tmp, model_dir / version)
        except OSError:
            # Another writer took this second; try the next one.
            if not (model_dir / version).exists():
                raise
            now += timedelta(seconds=1)
            continue
        _fsync_dir(model_dir)
        return version
    raise BundleError("could not allocate a unique version")


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True, allow_nan=False)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    # Best effort: makes a rename durable on POSIX; not available on every platform.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def set_current(model_path: str | os.PathLike[str], name: str, version: str) -> None:
    """Point ``<name>/CURRENT`` at an existing ``version`` atomically."""
    validate_name(name)
    _validate_version(version)
    root = _root(model_path)
    model_dir = _inside(root, root / name)
    if not (_inside(root, model_dir / version) / METADATA_FILE).is_file():
        raise BundleError(f"model {name!r} has no version {version!r}")
    fd, tmp_name = tempfile.mkstemp(prefix=".CURRENT-", dir=model_dir)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, model_dir / CURRENT_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(model_dir)


def current_version(model_path: str | os.PathLike[str], name: str) -> str | None:
    """The version ``<name>/CURRENT`` names, or None if there is none."""
    validate_name(name)
    root = _root(model_path)
    current = root / name / CURRENT_FILE
    if not current.exists():
        return None
    text = _inside(root, current).read_text(encoding="ascii", errors="replace").strip()
    return _validate_version(text)


def _versions(model_dir: Path) -> Iterator[str]:
    if not model_dir.is_dir():
        return
    for child in model_dir.iterdir():
        if VERSION_RE.fullmatch(child.name) and child.is_dir():
            yield child.name


def list_bundles(model_path: str | os.PathLike[str]) -> list[BundleInfo]:
    """Every valid model name under ``model_path`` with its versions (oldest first)."""
    root = _root(model_path)
    if not root.is_dir():
        return []
    infos = []
    for child in sorted(root.iterdir()):
        if not NAME_RE.fullmatch(child.name) or not child.is_dir():
            continue
        try:
            _inside(root, child)
        except BundleError:
            continue  # a symlink out of the model folder is not ours to list
        try:
            current = current_version(root, child.name)
        except BundleError:
            current = None
        infos.append(BundleInfo(child.name, tuple(sorted(_versions(child))), current))
    return infos


def load_metadata(
    model_path: str | os.PathLike[str], name: str, version: str | None = None
) -> dict[str, Any]:
    """Read one version's metadata.json (CURRENT by default) without loading the artifact."""
    _, _, metadata = _locate(model_path, name, version)
    return metadata


def _locate(
    model_path: str | os.PathLike[str], name: str, version: str | None
) -> tuple[str, Path, dict[str, Any]]:
    validate_name(name)
    root = _root(model_path)
    if version is None:
        version = current_version(root, name)
        if version is None:
            raise BundleError(f"model {name!r} has no CURRENT version")
    _validate_version(version)
    bundle_dir = _inside(root, root / name / version)
    metadata_path = _inside(root, bundle_dir / METADATA_FILE)
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"model {name!r} version {version!r} not found") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"metadata of {name!r} {version!r} is unreadable") from exc
    if not isinstance(metadata, dict):
        raise BundleError("metadata must be a JSON object")
    if metadata.get("name") != name or metadata.get("version") != version:
        raise BundleError("metadata does not match the bundle's folder")
    return version, bundle_dir, metadata


def load_bundle(
    model_path: str | os.PathLike[str], name: str, version: str | None = None
) -> Bundle:
    """Load and verify one version (CURRENT by default) of ``name``."""
    version, bundle_dir, metadata = _locate(model_path, name, version)
    root = _root(model_path)
    try:
        artifact = _inside(root, bundle_dir / MODEL_FILE).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"model {name!r} version {version!r} has no artifact") from None
    # Hash, type check and load all read the same bytes, so nothing can change in between.
    if sha256_bytes(artifact) != metadata.get("sha256"):
        raise BundleError(f"artifact of {name!r} {version!r} does not match its sha256")
    pipeline = load_trusted(artifact)
    classes = [str(c) for c in getattr(pipeline, "classes_", [])]
    if classes != metadata.get("classes"):
        raise BundleError("artifact classes do not match its metadata")
    try:
        check_class_labels(classes)  # labels both stores hold, and feedback can name
    except LabelError as exc:
        raise BundleError(f"model {name!r} version {version!r}: {exc}") from None
    try:
        FeatureSchema.from_list(metadata["features"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError("metadata feature schema is malformed") from exc
    return Bundle(name, version, pipeline, metadata, bundle_dir)


def load_trusted(artifact: bytes) -> Any:
    """Load a skops artifact, refusing any type outside ``TRUSTED_TYPES``."""
    try:
        untrusted = set(sio.get_untrusted_types(data=artifact))
        present = _types_in(artifact)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise BundleError("artifact is not a valid skops file") from exc
    refused = sorted((untrusted | present) - TRUSTED_TYPES)
    if refused:
        raise BundleError(f"artifact contains untrusted types: {', '.join(refused[:5])}")
    try:
        pipeline = sio.load(io.BytesIO(artifact), trusted=sorted(untrusted))
    except Exception as exc:  # skops raises many types on malformed input
        raise BundleError("artifact could not be loaded") from exc
    if type(pipeline) is not Pipeline:
        raise BundleError("artifact is not a trusted estimator (expected a Pipeline)")
    return pipeline


def _types_in(artifact: bytes) -> set[str]:
    """Every ``module.class`` named anywhere in the skops schema."""
    with zipfile.ZipFile(io.BytesIO(artifact)) as zf:
        schema = json.loads(zf.read("schema.json"))
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node:
                found.add(f"{node.get('__module__')}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found
