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
        # (model, reason) of the refusals published last, to remove those since cleared.
        self._refusals: set[tuple[str, str]] = set()

    def observer(self, loaded: LoadedModel) -> ModelObserver:
        """The observer of this model version.

        A request that started on a version swapped out while it ran gets an observer of
        its own (its counts carry the version that answered) that is not kept.
        """
        obs = self._observers.get(loaded.name)
        if obs is not None and obs.version == loaded.version:
            return obs
        if obs is None:
            fresh = self._observers[loaded.name] = ModelObserver(self._metrics, loaded)
            return fresh
        # Not kept, so nothing may wait in it: it counts each row's bins at once.
        return ModelObserver(self._metrics, loaded, hold=1)

    def publish_refusals(self, refused: Iterable[Refusal]) -> None:
        """``ml_model_bundle_refused`` = 1 per refusal the registry holds; cleared ones removed.

        The registry keeps a refusal until the model's CURRENT loads again, so the gauge says
        "what this model should serve is refused" for as long as that is true.
        """
        gauge = self._metrics.model_bundle_refused
        now: set[tuple[str, str]] = {(r.model, r.reason) for r in refused}
        for model, reason in self._refusals - now:
            with contextlib.suppress(KeyError):
                gauge.remove(model, reason)
        for model, reason in now:
            gauge.labels(model, reason).set(1)
        self._refusals = now

    def publish(self, loaded: LoadedModel) -> None:
        """Publish a (newly) loaded version's static metrics; retire the one it replaces."""
        m = self._metrics
        old = self._observers.get(loaded.name)
        if old is not None and old.version != loaded.version:
            old.bins.flush()
            self._retire_version(loaded.name, old)
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
            old = self._observers[loaded.name] = ModelObserver(m, loaded)
        for fb in old.bin_layout:
            for label, share in zip(fb.labels, fb.reference, strict=True):
                m.feature_reference_share.labels(
                    loaded.name, loaded.version, fb.feature, label
                ).set(share)
            for label, width in zip(fb.labels, fb.widths, strict=False):
                m.feature_bin_width.labels(loaded.name, loaded.version, fb.feature, label).set(
                    width
                )

    def flush_bins(self) -> None:
        """Count the bins of every row the kept observers hold (the service's flush job)."""
        for obs in list(self._observers.values()):
            obs.bins.flush()

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
            self._observers.pop(name).bins.flush()

    def _retire_version(self, name: str, old: ModelObserver) -> None:
        """Stop exporting the per-version series of a version this worker no longer serves."""
        m, version = self._metrics, old.version
        if self._multiproc_dir:
            # prometheus_client cannot delete a label set from the worker files: 0 tells the
            # exposition that this worker stopped serving it, and a version no live worker
            # serves is left out of /metrics with every per-version gauge (VERSIONED_GAUGES)
            # and its bin counters (VERSIONED_COUNTERS).
            m.model_info.labels(name, version).set(0)
            return
        for gauge in (m.model_info, m.model_holdout_accuracy):
            with contextlib.suppress(KeyError):
                gauge.remove(name, version)
        # The bins: features x bins series per version (docs/metrics.md, cardinality).
        for fb in old.bin_layout:
            for label in fb.labels:
                for metric in (m.feature_bin_total, m.feature_reference_share, m.feature_bin_width):
                    with contextlib.suppress(KeyError):
                        metric.remove(name, version, fb.feature, label)


def count_refusals(metrics: Metrics) -> Callable[[Refusal], None]:
    """Count each refused bundle once: by model and reason, and as a model error."""

    def count(refusal: Refusal) -> None:
        metrics.model_load_failures_total.labels(refusal.model, refusal.reason).inc()
        metrics.errors_total.labels("model", "BundleRefused").inc()

    return count
