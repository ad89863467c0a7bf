"""The pointer files of a model: ``<name>/CURRENT`` names the champion version,
``<name>/SHADOW`` the challenger scored in shadow (absent: none). Every worker and replica polls
them; they are replaced atomically, so a reader sees the old name or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os

from nexus_ml.ml.bundle_paths import (
    fsync_dir,
    inside,
    model_root,
    replace_file,
    validate_name,
    validate_version,
)
from nexus_ml.ml.errors import BundleError
from nexus_ml.ml.manifest import METADATA_FILE

CURRENT_FILE = "CURRENT"
SHADOW_FILE = "SHADOW"


def set_current(model_path: str | os.PathLike[str], name: str, version: str) -> None:
    """Point ``<name>/CURRENT`` at an existing ``version`` atomically."""
    validate_name(name)
    validate_version(version)
    root = model_root(model_path)
    model_dir = inside(root, root / name)
    if not (inside(root, model_dir / version) / METADATA_FILE).is_file():
        raise BundleError(f"model {name!r} has no version {version!r}", "not_found")
    replace_file(model_dir / CURRENT_FILE, (version + "\n").encode("ascii"), tmp_dir=model_dir)


def set_shadow(model_path: str | os.PathLike[str], name: str, version: str | None) -> None:
    """Point ``<name>/SHADOW`` at an existing ``version`` atomically; None removes it."""
    validate_name(name)
    root = model_root(model_path)
    model_dir = inside(root, root / name)
    if version is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(model_dir / SHADOW_FILE)
            fsync_dir(model_dir)
        return
    validate_version(version)
    if not (inside(root, model_dir / version) / METADATA_FILE).is_file():
        raise BundleError(f"model {name!r} has no version {version!r}", "not_found")
    replace_file(model_dir / SHADOW_FILE, (version + "\n").encode("ascii"), tmp_dir=model_dir)


def current_version(model_path: str | os.PathLike[str], name: str) -> str | None:
    """The version ``<name>/CURRENT`` names, or None if there is none."""
    return _pointer(model_path, name, CURRENT_FILE)


def shadow_version(model_path: str | os.PathLike[str], name: str) -> str | None:
    """The version ``<name>/SHADOW`` names, or None if there is none."""
    return _pointer(model_path, name, SHADOW_FILE)


def _pointer(model_path: str | os.PathLike[str], name: str, file: str) -> str | None:
    validate_name(name)
    root = model_root(model_path)
    pointer = root / name / file
    if not pointer.exists():
        return None
    text = inside(root, pointer).read_text(encoding="ascii", errors="replace").strip()
    return validate_version(text)
