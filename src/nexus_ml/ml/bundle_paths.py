"""Where bundles live on disk, and how files there are written: names and versions checked,
paths kept inside the model folder, writes made durable (fsync) and atomic (temp + rename).

Kept apart from ``ml.bundle`` so that the pointer files and the history (``ml.pointers``,
``ml.history``) need neither scikit-learn nor skops to import.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from nexus_ml.ml.errors import BundleError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe model name, else raise BundleError."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BundleError("model name must match ^[a-z][a-z0-9_]{0,63}$", "path")
    return name


def validate_version(version: str) -> str:
    """Return ``version`` if it is a well-formed version folder name, else raise BundleError."""
    if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
        raise BundleError("version must look like 20260101T000000Z-0123abcd", "path")
    return version


def model_root(model_path: str | os.PathLike[str]) -> Path:
    """The model folder, resolved (what :func:`inside` checks paths against)."""
    return Path(model_path).resolve()


def inside(root: Path, path: Path) -> Path:
    """Resolve ``path`` (following symlinks) and refuse it if it leaves ``root``."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise BundleError("bundle path resolves outside the model folder", "path")
    return resolved


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` and fsync it (a new file in a temp folder that is renamed later)."""
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Fsync a folder, so that a rename in it survives a crash."""
    # Best effort: makes a rename durable on POSIX; not available on every platform.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_file(target: Path, data: bytes, *, tmp_dir: Path) -> None:
    """Write ``target`` atomically: a temp file in ``tmp_dir`` (same filesystem), renamed."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(target.parent)
