"""Compatibility of two versions of one model: what a client sends and what it gets back.

Clients send features by name with a type and read back a class: a version that adds, drops or
retypes a feature, makes a feature required that was nullable, or answers other classes breaks
every client of the champion. Such a version is never promoted automatically and replaces the
champion only when a breaking replacement is asked for by name (``--replace-incompatible``).
Messages name features, types and classes, never a value of any row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from nexus_ml.ml.bundle import load_metadata
from nexus_ml.ml.manifest import sha256_bytes
from nexus_ml.ml.pointers import current_version

_SHOWN = 8  # names listed per difference before "and N more"


class IncompatibleVersion(ValueError):
    """A version whose schema differs from the champion's; ``differences`` lists how."""

    def __init__(self, name: str, champion: str, differences: Sequence[str]) -> None:
        self.name = name
        self.champion = champion
        self.differences = tuple(differences)
        super().__init__(
            f"model {name!r}: the new version is incompatible with the champion {champion} ("
            + "; ".join(self.differences)
            + "); clients of the champion would fail. Use another name, or pass "
            "--replace-incompatible if a breaking replacement is intended"
        )


def _shown(names: Sequence[str]) -> str:
    listed = ", ".join(names[:_SHOWN])
    return listed + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _features(metadata: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    return {
        str(f["name"]): (str(f.get("type", "number")), bool(f.get("nullable", False)))
        for f in metadata.get("features") or []
    }


def schema_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What clients depend on: each feature's name, type and nullability, and the classes."""
    return {
        "features": sorted([n, t, null] for n, (t, null) in _features(metadata).items()),
        "classes": [str(c) for c in metadata.get("classes") or []],
    }


def schema_hash(metadata: Mapping[str, Any]) -> str:
    """sha256 of :func:`schema_of` as canonical JSON: equal hashes, compatible versions."""
    text = json.dumps(schema_of(metadata), sort_keys=True, separators=(",", ":"))
    return sha256_bytes(text.encode())


def schema_differences(champion: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """How ``candidate``'s schema breaks ``champion``'s clients (empty: compatible)."""
    old, new = _features(champion), _features(candidate)
    out = []
    removed = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    if removed:
        out.append(f"features removed: {_shown(removed)}")
    if added:
        out.append(f"features added: {_shown(added)}")
    retyped = [f"{n} {old[n][0]}→{new[n][0]}" for n in old if n in new and old[n][0] != new[n][0]]
    if retyped:
        out.append(f"feature types changed: {_shown(retyped)}")
    required = [n for n in old if n in new and old[n][1] and not new[n][1]]
    if required:
        out.append(f"features no longer nullable: {_shown(required)}")
    old_classes = [str(c) for c in champion.get("classes") or []]
    new_classes = [str(c) for c in candidate.get("classes") or []]
    if old_classes != new_classes:
        out.append(f"classes {_shown(old_classes)} → {_shown(new_classes)}")
    return out


def check_replacement(
    model_path: str | os.PathLike[str],
    name: str,
    candidate: Mapping[str, Any],
    *,
    allow: bool = False,
) -> list[str]:
    """The differences of ``candidate`` (a metadata-shaped mapping) from ``name``'s champion.

    Raises IncompatibleVersion when there are some and ``allow`` is false; returns them (empty
    when there is no champion or nothing differs).
    """
    champion = current_version(model_path, name)
    if champion is None:
        return []
    differences = schema_differences(load_metadata(model_path, name, champion), candidate)
    if differences and not allow:
        raise IncompatibleVersion(name, champion, differences)
    return differences
