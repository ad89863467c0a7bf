"""In-memory registry of loaded models with atomic hot swap.

A bundle that fails verification is refused alone: the other models load, a model already
serving keeps its old version, and the refusal is logged at ERROR with the model, version and
reason, reported once through ``on_refused`` and kept for the health report. The same version is
not tried again every poll; it is retried only once its files change.

Beside each champion (``CURRENT``) the registry holds its challenger (``SHADOW``), loaded and
refreshed the same way; a refused challenger never touches the champion or its health.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus_ml.ml.bundle import BundleError, BundleInfo, bundle_stamp, list_bundles, load_bundle
from nexus_ml.ml.bundle_paths import validate_name
from nexus_ml.ml.errors import RefusalReason
from nexus_ml.ml.fingerprint import profile_hash
from nexus_ml.ml.metadata import BundleMetadata
from nexus_ml.ml.pointers import current_version
from nexus_ml.ml.predictor import Predictor
from nexus_ml.ml.schema import FeatureSchema

log = logging.getLogger("nexus_ml.ml")


class UnknownModel(KeyError):
    """No model of that name is loaded."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown model {self.name!r}"


@dataclass(frozen=True)
class LoadedModel:
    """One model version ready to serve."""

    name: str
    version: str
    predictor: Predictor
    schema: FeatureSchema
    classes: tuple[str, ...]
    metadata: dict[str, Any]
    # The checked metadata: operating point (never None), segments, baseline.
    info: BundleMetadata
    # sha256 of the reference profile (ml.fingerprint), computed once at load: stored with
    # every prediction of this version.
    profile_hash: str


@dataclass(frozen=True)
class Refusal:
    """A bundle version that was refused, and why (``message`` names fields, never values)."""

    model: str
    version: str | None
    reason: RefusalReason
    message: str
    # The version folder's file names, sizes and mtimes when it was refused.
    stamp: tuple[tuple[str, int, int], ...] = ()

    def __str__(self) -> str:
        return self.message


def load_model(
    model_path: str | os.PathLike[str], name: str, version: str | None = None
) -> LoadedModel:
    """Load, verify and compile one bundle (CURRENT by default)."""
    bundle = load_bundle(model_path, name, version)
    predictor = bundle.predictor
    # The predictor's schema: the metadata's, refusing unseen categories where the pipeline
    # cannot answer them.
    schema = predictor.schema
    if len(schema) != predictor.n_features:
        raise BundleError("metadata feature count does not match the artifact", "mismatch")
    return LoadedModel(
        name=bundle.name,
        version=bundle.version,
        predictor=predictor,
        schema=schema,
        classes=predictor.classes,
        metadata=bundle.metadata,
        info=bundle.info,
        profile_hash=profile_hash(bundle.metadata),
    )


class ModelRegistry:
    """Thread-safe map of model name to the LoadedModel currently served."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        on_refused: Callable[[Refusal], None] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        # Copy-on-write: readers take ``self._models`` once and never see a half-made map, so a
        # request in flight finishes on the model it started with while a reload swaps in another.
        self._models: dict[str, LoadedModel] = {}
        self._refused: dict[str, Refusal] = {}
        # Challengers, copy-on-write like ``_models``; their refusals are kept apart so a bad
        # challenger never reads as an unhealthy champion.
        self._shadows: dict[str, LoadedModel] = {}
        self._shadow_refused: dict[str, Refusal] = {}
        self._lock = threading.Lock()
        self._on_refused = on_refused

    def get(self, name: str) -> LoadedModel:
        """The loaded model called ``name``; raise UnknownModel if there is none."""
        try:
            return self._models[name]
        except (KeyError, TypeError):
            raise UnknownModel(str(name)) from None

    def get_or_none(self, name: str) -> LoadedModel | None:
        """The loaded model called ``name``, or None."""
        return self._models.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def names(self) -> list[str]:
        """Names of the loaded models, sorted."""
        return sorted(self._models)

    def all(self) -> list[LoadedModel]:
        """Every loaded model, sorted by name."""
        models = self._models
        return [models[n] for n in sorted(models)]

    def shadow(self, name: str) -> LoadedModel | None:
        """The challenger of ``name`` scored in shadow (its ``SHADOW`` version), or None."""
        return self._shadows.get(name)

    def shadow_refused(self) -> list[Refusal]:
        """Challenger versions refused and not since replaced."""
        refused = self._shadow_refused
        return [refused[n] for n in sorted(refused)]

    def refused(self) -> list[Refusal]:
        """Bundles refused and not since replaced (a model may serve an older version)."""
        refused = self._refused
        return [refused[n] for n in sorted(refused)]

    def reload(self, name: str) -> LoadedModel:
        """Load ``name``'s CURRENT version and swap it in; on failure the old one stays.

        A refusal is recorded (see :meth:`refused`) and raised as BundleError.
        """
        validate_name(name)
        try:
            version = current_version(self.model_path, name)
        except BundleError as exc:
            self._refuse(name, None, exc)
            raise
        return self._load(name, version)

    def _load(self, name: str, version: str | None) -> LoadedModel:
        try:
            loaded = load_model(self.model_path, name, version)
        except BundleError as exc:
            self._refuse(name, version, exc)
            raise
        except Exception as exc:  # a bad bundle must never take the service down
            error = BundleError(
                f"unexpected {type(exc).__name__} while loading the bundle", "internal"
            )
            self._refuse(name, version, error)
            raise error from exc
        self._swap(name, loaded)
        return loaded

    def load_all(self) -> dict[str, Refusal]:
        """Load every model with a CURRENT version; return name -> refusal for those refused."""
        return self.refresh()

    def refresh(self) -> dict[str, Refusal]:
        """Reload every model whose CURRENT on disk differs from the one served.

        Cheap enough to poll every few seconds: it reads the small CURRENT files, and only a
        changed one loads an artifact. This is how other worker processes pick up a new
        version. One model's bad bundle never stops the others: each is refused alone (the
        old version keeps serving) and only once per version, until its files change.
        Returns name -> refusal for the bundles refused in this call.
        """
        new: dict[str, Refusal] = {}
        infos = list_bundles(self.model_path)
        for info in infos:
            self._refresh_champion(info, new)
            self._refresh_shadow(info)
        listed = {info.name for info in infos if info.shadow is not None}
        if any(name not in listed for name in self._shadows):
            with self._lock:
                self._shadows = {k: v for k, v in self._shadows.items() if k in listed}
        return new

    def _refresh_champion(self, info: BundleInfo, new: dict[str, Refusal]) -> None:
        name, version = info.name, info.current
        served = self._models.get(name)
        if version is None or (served is not None and served.version == version):
            if info.problem is None:
                self._clear(name)  # back on the served version, or no model any more
            elif self._refuse(name, None, info.problem):
                new[name] = self._refused[name]
            return
        known = self._refused.get(name)
        if (
            known is not None
            and known.version == version
            and known.stamp == bundle_stamp(self.model_path, name, version)
        ):
            return
        try:
            self._load(name, version)
        except BundleError:
            refusal = self._refused.get(name)
            if refusal is not None and refusal is not known:
                new[name] = refusal

    def _refresh_shadow(self, info: BundleInfo) -> None:
        """Load, swap or drop ``info.name``'s challenger to match its SHADOW file."""
        name, version = info.name, info.shadow
        served = self._shadows.get(name)
        if info.shadow_problem is not None:
            self._refuse_shadow(name, None, info.shadow_problem)
            return
        if version is None:
            self._set_shadow(name, None)
            return
        if served is not None and served.version == version:
            return
        known = self._shadow_refused.get(name)
        stamp = bundle_stamp(self.model_path, name, version)
        if known is not None and known.version == version and known.stamp == stamp:
            return
        champion = self._models.get(name)
        try:
            if champion is not None and champion.version == version:
                loaded = champion  # the same files: no second load
            else:
                loaded = load_model(self.model_path, name, version)
        except BundleError as exc:
            self._refuse_shadow(name, version, exc)
            return
        except Exception as exc:  # a bad bundle must never take the service down
            error = f"unexpected {type(exc).__name__} while loading the bundle"
            self._refuse_shadow(name, version, BundleError(error, "internal"))
            return
        self._set_shadow(name, loaded)

    def _set_shadow(self, name: str, loaded: LoadedModel | None) -> None:
        if loaded is None and name not in self._shadows and name not in self._shadow_refused:
            return
        with self._lock:
            shadows = dict(self._shadows)
            if loaded is None:
                shadows.pop(name, None)
            else:
                shadows[name] = loaded
            self._shadows = shadows
            self._shadow_refused = {k: v for k, v in self._shadow_refused.items() if k != name}

    def _refuse_shadow(self, name: str, version: str | None, exc: BundleError) -> None:
        """Drop the challenger and record why; log and report only a new refusal."""
        with self._lock:
            self._shadows = {k: v for k, v in self._shadows.items() if k != name}
        self._record(name, version, exc, shadow=True)

    def _refuse(self, name: str, version: str | None, exc: BundleError) -> bool:
        """Record a refusal; log and report it unless it is the one already recorded."""
        return self._record(name, version, exc, shadow=False)

    def _record(self, name: str, version: str | None, exc: BundleError, *, shadow: bool) -> bool:
        stamp = bundle_stamp(self.model_path, name, version) if version else ()
        refusal = Refusal(name, version, exc.reason, str(exc), stamp)
        attr = "_shadow_refused" if shadow else "_refused"
        with self._lock:
            known: dict[str, Refusal] = getattr(self, attr)
            if known.get(name) == refusal:
                return False
            setattr(self, attr, {**known, name: refusal})
        log.error(
            "%s bundle refused: %s",
            "challenger" if shadow else "model",
            refusal.message,
            extra={"model": name, "version": version, "reason": refusal.reason},
        )
        if self._on_refused is not None:
            self._on_refused(refusal)
        return True

    def _clear(self, name: str) -> None:
        if name in self._refused:
            with self._lock:
                self._refused = {k: v for k, v in self._refused.items() if k != name}

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` on disk, oldest first."""
        validate_name(name)
        for info in list_bundles(self.model_path):
            if info.name == name:
                return list(info.versions)
        return []

    def unload(self, name: str) -> None:
        """Stop serving ``name`` (its bundles stay on disk)."""
        with self._lock:
            if name not in self._models:
                raise UnknownModel(name)
            models = dict(self._models)
            del models[name]
            self._models = models

    def _swap(self, name: str, loaded: LoadedModel) -> None:
        with self._lock:
            models = dict(self._models)
            models[name] = loaded
            self._models = models
            if name in self._refused:
                self._refused = {k: v for k, v in self._refused.items() if k != name}
