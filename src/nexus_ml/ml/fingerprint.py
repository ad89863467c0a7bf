"""Stable fingerprints of what a bundle holds, so a stored answer names the exact model behind it.

A bundle's metadata carries the sha256 of its artifact and the manifest the sha256 of its
metadata file, but nothing that names the reference profile alone: two versions trained on the
same data share a profile (and so their drift baseline) while their artifacts differ. The hash
is of the profile as parsed from ``metadata.json``, serialised canonically (sorted keys, no
whitespace), so re-saving the same profile with other formatting gives the same hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nexus_ml.ml.manifest import sha256_bytes

# Built once: json.dumps with non-default arguments makes a new encoder per call.
_canonical = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def profile_hash(metadata: Mapping[str, Any]) -> str:
    """The sha256 (hex) of the canonical JSON of ``metadata["profile"]``."""
    return sha256_bytes(_canonical(metadata["profile"]).encode())
