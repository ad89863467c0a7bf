"""The bundle manifest (format 2): the sha256 of every file of a bundle.

``manifest.json`` is ``{"format": 2, "files": {"metadata.json": <sha256>, "model.skops":
<sha256>}}`` and a bundle folder holds these three files and nothing else. The metadata also
records the artifact's sha256 (and the version name starts with it), as in format 1.

The hashes find any change made after the bundle was written — a hand edit, a partial copy, a
file swapped from another bundle — but they are not a signature: whoever can write the model
folder can rewrite the manifest too. The semantic checks of a load are the defence there.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from nexus_ml.ml.errors import BundleError
from nexus_ml.ml.metadata import read_json

MODEL_FILE = "model.skops"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.json"
BUNDLE_FORMAT = 2
HASHED_FILES = (METADATA_FILE, MODEL_FILE)
_MAX_BYTES = 4096
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_bytes(data: Mapping[str, Any]) -> bytes:
    """The JSON text every bundle file is written as (sorted keys, no NaN)."""
    return json.dumps(data, indent=1, sort_keys=True, allow_nan=False).encode("utf-8")


def manifest_of(hashes: Mapping[str, str]) -> bytes:
    """The manifest recording ``hashes`` (file name -> sha256)."""
    return json_bytes({"format": BUNDLE_FORMAT, "files": dict(hashes)})


def manifest_bytes(files: Mapping[str, bytes]) -> bytes:
    """The manifest of a bundle made of ``files`` (file name -> content)."""
    return manifest_of({name: sha256_bytes(data) for name, data in files.items()})


def parse_manifest(data: bytes) -> dict[str, str]:
    """File name -> sha256 from a manifest's bytes; BundleError (integrity) if malformed."""
    malformed = BundleError("the manifest is malformed", "integrity")
    if len(data) > _MAX_BYTES:
        raise malformed
    try:
        raw = read_json(data, "the manifest")
    except BundleError:
        raise malformed from None
    if not isinstance(raw, dict) or set(raw) != {"format", "files"}:
        raise malformed
    if type(raw["format"]) is not int or raw["format"] != BUNDLE_FORMAT:
        raise BundleError(f"bundle format must be {BUNDLE_FORMAT}", "integrity")
    files = raw["files"]
    if not isinstance(files, dict) or set(files) != set(HASHED_FILES):
        raise malformed
    if not all(isinstance(h, str) and _SHA256_RE.fullmatch(h) for h in files.values()):
        raise malformed
    return dict(files)
