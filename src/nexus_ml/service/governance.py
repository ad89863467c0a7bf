"""Model governance: versions and roles, promote, rollback, shadow — each audited.

Every change of champion or challenger goes through here (API and CLI alike): it is decided
under the model's lock (``ml.history.model_lock``), written to the audit table first (an
outage refuses the change instead of making it unrecorded), then to ``CURRENT``/``SHADOW`` and
``HISTORY``. Workers and replicas pick the change up by polling those files. Blocking calls:
the API runs them in a thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nexus_ml.ml.bundle import BundleError, list_bundles, load_metadata
from nexus_ml.ml.bundle_paths import validate_name
from nexus_ml.ml.compat import schema_differences, schema_hash
from nexus_ml.ml.fingerprint import profile_hash
from nexus_ml.ml.history import (
    IN_FORCE,
    append_history,
    champion_stack,
    model_lock,
    previous_champion,
    read_history,
)
from nexus_ml.ml.pointers import current_version, set_current, set_shadow, shadow_version
from nexus_ml.ml.registry import load_model
from nexus_ml.service.errors import Conflict, NotFound
from nexus_ml.storage.repositories import Store

# Audit actions (CONTRACT.md): exact strings.
TRAIN, IMPORT, PROMOTE, ROLLBACK = "train", "import", "promote", "rollback"
BREAKING_REPLACE, SHADOW_START, SHADOW_STOP = "breaking_replace", "shadow_start", "shadow_stop"


@dataclass(frozen=True)
class Change:
    """What a governance action did: the versions before and after, and whether it changed."""

    model: str
    before: str | None
    after: str | None
    changed: bool
    action: str
    differences: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (API answers, audit details)."""
        return {
            "model": self.model,
            "before": self.before,
            "after": self.after,
            "changed": self.changed,
            "action": self.action,
            "differences": self.differences,
        }


def _source_view(source: Mapping[str, Any]) -> dict[str, Any]:
    # The kind and how it was trained; a CSV path is shown by file name only.
    out = {k: source[k] for k in ("kind", "dataset", "estimator", "target") if source.get(k)}
    if source.get("path"):
        out["file"] = Path(str(source["path"])).name
    return out


def version_view(
    metadata: Mapping[str, Any], *, role: str, champion: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One version as the versions endpoint shows it."""
    metrics = metadata.get("training_metrics") or {}
    baseline = metadata.get("baseline") or {}
    return {
        "version": metadata.get("version"),
        "role": role,
        "created_at": metadata.get("created_at"),
        "created_by": metadata.get("created_by"),
        "source": _source_view(metadata.get("source") or {}),
        "holdout": {
            "accuracy": metrics.get("holdout_accuracy"),
            "n": metrics.get("n_holdout"),
            "recall": {
                c: (entry.get("recall") or {}).get("value")
                for c, entry in (baseline.get("classes") or {}).items()
            },
            "segments": baseline.get("segments"),
        },
        "schema_hash": schema_hash(metadata),
        "profile_hash": profile_hash(metadata) if metadata.get("profile") else None,
        "compatible_with_champion": (
            None if champion is None else not schema_differences(champion, metadata)
        ),
    }


class Governance:
    """Roles of a model's versions and the audited changes between them."""

    def __init__(self, *, model_path: str | os.PathLike[str], store: Store) -> None:
        self.model_path = Path(model_path)
        self._store = store

    # -- reading ------------------------------------------------------------------------------

    def _versions_on_disk(self, name: str) -> list[str]:
        try:
            validate_name(name)
        except BundleError:
            raise NotFound("unknown model", "name") from None
        for info in list_bundles(self.model_path):
            if info.name == name and info.versions:
                return list(info.versions)
        raise NotFound("unknown model", "name")

    def _metadata(self, name: str, version: str) -> dict[str, Any]:
        try:
            return load_metadata(self.model_path, name, version)
        except BundleError as exc:
            if exc.reason == "not_found" or exc.reason == "path":
                raise NotFound("unknown version", "version") from None
            raise Conflict(f"version cannot be read: {exc}", "version") from None

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of ``name`` on disk, newest first, with its role and evidence."""
        versions = self._versions_on_disk(name)
        current = current_version(self.model_path, name)
        shadow = shadow_version(self.model_path, name)
        champion = None
        if current is not None:
            try:
                champion = load_metadata(self.model_path, name, current)
            except BundleError:
                champion = None
        out = []
        for version in reversed(versions):
            role = "champion" if version == current else "retired"
            role = "challenger" if version == shadow and role != "champion" else role
            try:
                metadata = load_metadata(self.model_path, name, version)
            except BundleError as exc:
                out.append({"version": version, "role": role, "problem": exc.reason})
                continue
            out.append(version_view(metadata, role=role, champion=champion))
        return out

    # -- changing -----------------------------------------------------------------------------

    def _verified(self, name: str, version: str) -> dict[str, Any]:
        """``version``'s metadata once the whole bundle has passed a load's checks."""
        self._versions_on_disk(name)
        metadata = self._metadata(name, version)
        try:
            load_model(self.model_path, name, version)
        except BundleError as exc:
            raise Conflict(f"version fails verification ({exc.reason}): {exc}", "version") from None
        return metadata

    def promote(
        self, name: str, version: str, actor: str, *, allow_incompatible: bool = False
    ) -> Change:
        """Make ``version`` the champion (idempotent: the champion already is one).

        A version whose schema differs from the champion's is a Conflict unless
        ``allow_incompatible``; then it is audited as ``breaking_replace``.
        """
        with model_lock(self.model_path, self._check_name(name)):
            metadata = self._verified(name, version)
            before = current_version(self.model_path, name)
            if before == version:
                return Change(name, before, version, False, PROMOTE)
            differences = self._differences(name, before, metadata)
            if differences and not allow_incompatible:
                raise Conflict(
                    "version is incompatible with the champion ("
                    + "; ".join(differences)
                    + "): pass replace_incompatible to replace it on purpose",
                    "version",
                )
            action = BREAKING_REPLACE if differences else PROMOTE
            return self._switch(name, before, version, actor, action, differences)

    def rollback(self, name: str, actor: str) -> Change:
        """Make the previous champion (from HISTORY) the champion again."""
        with model_lock(self.model_path, self._check_name(name)):
            self._versions_on_disk(name)
            before = current_version(self.model_path, name)
            target = previous_champion(read_history(self.model_path, name), before)
            if target is None:
                raise Conflict(
                    "no previous champion recorded for this model: nothing to roll back to",
                    "name",
                )
            metadata = self._verified(name, target)
            differences = self._differences(name, before, metadata)
            return self._switch(name, before, target, actor, ROLLBACK, differences)

    def record_new_champion(
        self, name: str, before: str | None, after: str, actor: str, action: str
    ) -> Change:
        """Record a version a training or import made champion (``train`` or ``import``;
        ``breaking_replace`` when its schema differs from the one it replaced)."""
        metadata = self._metadata(name, after)
        differences = self._differences(name, before, metadata)
        if differences:
            action = BREAKING_REPLACE
        # The version is CURRENT already: HISTORY first, so an outage loses only the audit row.
        self._history(name, before, after, actor, action)
        self._audit(actor, action, name, before, after, differences)
        return Change(name, before, after, True, action, differences)

    def start_shadow(self, name: str, version: str, actor: str) -> Change:
        """Score ``version`` in shadow beside the champion (it must take the same features)."""
        with model_lock(self.model_path, self._check_name(name)):
            metadata = self._verified(name, version)
            before = shadow_version(self.model_path, name)
            if before == version:
                return Change(name, before, version, False, SHADOW_START)
            champion = current_version(self.model_path, name)
            if champion == version:
                raise Conflict(
                    "version is the champion: it cannot be its own challenger", "version"
                )
            differences = self._differences(name, champion, metadata)
            if differences:
                raise Conflict(
                    "a challenger must take the champion's features and answer its classes ("
                    + "; ".join(differences)
                    + ")",
                    "version",
                )
            self._audit(actor, SHADOW_START, name, before, version, [])
            set_shadow(self.model_path, name, version)
            return Change(name, before, version, True, SHADOW_START)

    def stop_shadow(self, name: str, actor: str) -> Change:
        """Stop scoring the challenger (idempotent: no challenger is not an error)."""
        with model_lock(self.model_path, self._check_name(name)):
            self._versions_on_disk(name)
            before = shadow_version(self.model_path, name)
            if before is None:
                return Change(name, None, None, False, SHADOW_STOP)
            self._audit(actor, SHADOW_STOP, name, before, None, [])
            set_shadow(self.model_path, name, None)
            return Change(name, before, None, True, SHADOW_STOP)

    # -- helpers ------------------------------------------------------------------------------

    def _check_name(self, name: str) -> str:
        try:
            return validate_name(name)
        except BundleError:
            raise NotFound("unknown model", "name") from None

    def _differences(
        self, name: str, champion: str | None, metadata: Mapping[str, Any]
    ) -> list[str]:
        if champion is None:
            return []
        try:
            old = load_metadata(self.model_path, name, champion)
        except BundleError:
            return []  # an unreadable champion has no schema left to protect
        return schema_differences(old, metadata)

    def _audit(
        self,
        actor: str,
        action: str,
        name: str,
        before: str | None,
        after: str | None,
        differences: list[str],
    ) -> None:
        details: dict[str, Any] = {"before": before, "after": after}
        if differences:
            details["differences"] = differences
        self._store.audit(actor, action, name, details)

    def _history(self, name: str, before: str | None, after: str, actor: str, action: str) -> None:
        """Append ``after``; first ``before`` if HISTORY does not end on it (a champion made
        before HISTORY existed, or set by hand), so a rollback can return to it."""
        stack = champion_stack(read_history(self.model_path, name))
        if before is not None and before != after and (not stack or stack[-1] != before):
            append_history(self.model_path, name, version=before, actor=actor, action=IN_FORCE)
        append_history(self.model_path, name, version=after, actor=actor, action=action)

    def _switch(
        self,
        name: str,
        before: str | None,
        after: str,
        actor: str,
        action: str,
        differences: list[str],
    ) -> Change:
        self._audit(actor, action, name, before, after, differences)
        set_current(self.model_path, name, after)
        self._history(name, before, after, actor, action)
        if shadow_version(self.model_path, name) == after:
            set_shadow(self.model_path, name, None)  # the challenger won: it is no longer one
        return Change(name, before, after, True, action, differences)
