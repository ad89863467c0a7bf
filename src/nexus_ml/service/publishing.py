"""What this worker says about the model versions it serves: static gauges and observers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import get_args

from nexus_ml.ml.registry import LoadedModel, Refusal
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.clinical_gauges import (
    Sample,
    baseline_samples,
    export,
    positive_class_samples,
)
from nexus_ml.service.observer import ModelObserver
from nexus_ml.storage.errors import RejectReason


class ModelPublisher:
    """Publishes each served version's metrics and holds one observer per served model."""

    def __init__(self, metrics: Metrics, multiproc_dir: str | None) -> None:
        self._metrics = metrics
        self._multiproc_dir = multiproc_dir
        # One per model name, of the version published last: a swap replaces it, so the cache
        # holds what is served, never every version a long-lived worker has seen.
        self._observers: dict[str, ModelObserver] = {}
        # The baseline and positive-class samples each model's published version exported: a
        # swap to a version without one of them sets it to NaN rather than leave it behind.
        self._static: dict[str, set[Sample]] = {}

    def observer(self, loaded: LoadedModel) -> ModelObserver:
        """The observer of this model version.

        A request that started on a version swapped out while it ran gets an observer of
        its own (its counts carry the version that answered) that is not kept.
        """
        obs = self._observers.get(loaded.name)
        if obs is not None and obs.version == loaded.version:
            return obs
        fresh = ModelObserver(self._metrics, loaded)
        if obs is None:
            self._observers[loaded.name] = fresh
        return fresh

    def publish(self, loaded: LoadedModel) -> None:
        """Publish a (newly) loaded version's static metrics; retire the one it replaces."""
        m = self._metrics
        old = self._observers.get(loaded.name)
        if old is not None and old.version != loaded.version:
            self._retire_version(loaded.name, old.version)
            old = None
        m.model_info.labels(loaded.name, loaded.version).set(1)
        md = loaded.metadata
        tm = md.get("training_metrics", {})
        if "holdout_accuracy" in tm:
            m.model_holdout_accuracy.labels(loaded.name, loaded.version).set(tm["holdout_accuracy"])
        m.model_features_count.labels(loaded.name).set(len(loaded.schema.names))
        if "n_samples" in tm:
            m.model_training_samples.labels(loaded.name).set(tm["n_samples"])
        created = md.get("created_at")
        if created:
            ts = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
            m.model_last_training_timestamp_seconds.labels(loaded.name).set(ts)
        # Series TrainingFailure reads with increase(): present at 0 from the start.
        for outcome in ("success", "failure"):
            m.model_training_runs_total.labels(loaded.name, outcome)
        for reason in get_args(RejectReason):
            m.db_records_rejected_total.labels(loaded.name, reason)
        self._publish_baseline(loaded)
        if old is None:
            self._observers[loaded.name] = ModelObserver(m, loaded)

    def _publish_baseline(self, loaded: LoadedModel) -> None:
        """ml_model_baseline (the alerts' reference) and ml_model_positive_class of a version."""
        info = loaded.info
        baseline = None if info.baseline is None else info.baseline.model_dump(mode="json")
        holdout = info.training_metrics.holdout_accuracy
        values = baseline_samples(loaded.name, baseline, holdout) | positive_class_samples(
            loaded.name, loaded.classes, info.positive_class
        )
        known = self._static.get(loaded.name, set())
        self._static[loaded.name] = export(self._metrics, values, known)

    def forget_unserved(self, served: Iterable[str]) -> None:
        """Drop the observers of models no longer served (their counters stay, as before)."""
        keep = set(served)
        for name in [n for n in self._observers if n not in keep]:
            del self._observers[name]

    def _retire_version(self, name: str, version: str) -> None:
        """Stop exporting the per-version series of a version this worker no longer serves."""
        m = self._metrics
        if self._multiproc_dir:
            # prometheus_client cannot delete a label set from the worker files: 0 tells the
            # exposition that this worker stopped serving it, and a version no live worker
            # serves is left out of /metrics with every per-version gauge (VERSIONED_GAUGES).
            m.model_info.labels(name, version).set(0)
            return
        for gauge in (m.model_info, m.model_holdout_accuracy):
            with contextlib.suppress(KeyError):
                gauge.remove(name, version)


def count_refusals(metrics: Metrics) -> Callable[[Refusal], None]:
    """Count each refused bundle once: by model and reason, and as a model error."""

    def count(refusal: Refusal) -> None:
        metrics.model_load_failures_total.labels(refusal.model, refusal.reason).inc()
        metrics.errors_total.labels("model", "BundleRefused").inc()

    return count
