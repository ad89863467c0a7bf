"""In-memory registry of loaded models with atomic hot swap."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexus_ml.ml.bundle import BundleError, list_bundles, load_bundle, validate_name
from nexus_ml.ml.predictor import Predictor, compile_predictor
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


def load_model(
    model_path: str | os.PathLike[str], name: str, version: str | None = None
) -> LoadedModel:
    """Load, verify and compile one bundle (CURRENT by default)."""
    bundle = load_bundle(model_path, name, version)
    predictor = compile_predictor(bundle.pipeline)
    schema = FeatureSchema.from_list(bundle.metadata["features"])
    if len(schema) != predictor.n_features:
        raise BundleError("metadata feature count does not match the artifact")
    return LoadedModel(
        name=bundle.name,
        version=bundle.version,
        predictor=predictor,
        schema=schema,
        classes=predictor.classes,
        metadata=bundle.metadata,
    )


class ModelRegistry:
    """Thread-safe map of model name to the LoadedModel currently served."""

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        self.model_path = Path(model_path)
        # Copy-on-write: readers take ``self._models`` once and never see a half-made map, so a
        # request in flight finishes on the model it started with while a reload swaps in another.
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

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

    def reload(self, name: str) -> LoadedModel:
        """Load ``name``'s CURRENT version and swap it in; on failure the old one stays."""
        validate_name(name)
        loaded = load_model(self.model_path, name)
        self._swap(name, loaded)
        return loaded

    def load_all(self) -> dict[str, str]:
        """Load every model with a CURRENT version; return name -> error for those refused."""
        return self.refresh()

    def refresh(self) -> dict[str, str]:
        """Reload every model whose CURRENT on disk differs from the one served.

        Cheap enough to poll every few seconds: it reads the small CURRENT files, and only a
        changed one loads an artifact. This is how other worker processes pick up a new
        version. Returns name -> error for bundles refused (the old version keeps serving).
        """
        errors: dict[str, str] = {}
        models = self._models
        for info in list_bundles(self.model_path):
            served = models.get(info.name)
            if info.current is None or (served is not None and served.version == info.current):
                continue
            try:
                self.reload(info.name)
            except BundleError as exc:
                errors[info.name] = str(exc)
                log.warning("model bundle refused", extra={"model": info.name, "error": str(exc)})
        return errors

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
