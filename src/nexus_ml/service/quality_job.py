"""The model-quality job: drift, window data quality, accuracy, clinical metrics per segment.

Runs every ``ML_DRIFT_INTERVAL_SECONDS`` and on demand. With several workers or
replicas exactly one runs it at a time: it takes a database advisory lock
(PostgreSQL) or a file lock beside the SQLite file, and the others skip the
round. Results are stored (``drift_results``) and exported as gauges, which use
the ``mostrecent`` multiprocess mode so the last computation wins whichever
worker made it.

The clinical metrics (``results["clinical"]``, service/clinical.py) are exported as the
``ml_model_recall``... gauges; a value that fell below ``ML_CLINICAL_MIN_COUNT`` since the
previous stored result is set to NaN, whichever process exported it (the previous result is
read from the database, not from this process's memory). At start the service exports the
latest stored result again (:meth:`QualityJob.restore_gauges`), so a restart does not leave
the clinical gauges absent until the next round.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from nexus_ml.config import Settings
from nexus_ml.ml.registry import LoadedModel, ModelRegistry
from nexus_ml.monitoring.metrics import Metrics
from nexus_ml.service.clinical import ClinicalEvaluator
from nexus_ml.service.clinical_gauges import Sample, clinical_samples, export
from nexus_ml.service.database import Database
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.stats.drift import DriftDetector
from nexus_ml.stats.performance import ConfidenceEstimator, realised_accuracy
from nexus_ml.stats.quality import QualityChecker
from nexus_ml.storage.errors import DatabaseUnavailable
from nexus_ml.storage.locks import try_advisory_lock
from nexus_ml.storage.records import DriftResultRecord, LabelledPrediction, WindowRow, utcnow
from nexus_ml.storage.repositories import Store
from nexus_ml.storage.writer import RecordWriter

log = logging.getLogger("nexus_ml.quality")
LOCK_KEY = "nexus-ml:model-quality-job"


@dataclass
class _Fitted:
    detector: DriftDetector
    checker: QualityChecker
    estimator: ConfidenceEstimator
    clinical: ClinicalEvaluator


class QualityJob:
    """Computes and exports model-quality results; fitted state cached per model version."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        models: ModelRegistry,
        metrics: Metrics,
        thresholds: ThresholdState,
    ) -> None:
        self._settings = settings
        self._store = store
        self._models = models
        self._metrics = metrics
        self._thresholds = thresholds
        self._fitted: dict[tuple[str, str], _Fitted] = {}
        # Clinical samples this process exported last, per model (see export()).
        self._exported: dict[str, set[Sample]] = {}

    def reset(self) -> None:
        """Forget fitted state (thresholds changed): the next run refits from the profiles."""
        self._fitted = {}

    def _fit(self, loaded: LoadedModel) -> _Fitted:
        key = (loaded.name, loaded.version)
        fitted = self._fitted.get(key)
        if fitted is None:
            profile = loaded.metadata["profile"]
            fitted = self._fitted[key] = _Fitted(
                detector=DriftDetector.from_profile(
                    profile,
                    threshold=self._thresholds.current.data_drift_high,
                    min_window=self._settings.drift_min_window,
                ),
                checker=QualityChecker.from_profile(profile),
                estimator=ConfidenceEstimator.from_profile(profile),
                clinical=ClinicalEvaluator.for_model(
                    loaded,
                    min_count=self._settings.clinical_min_count,
                    max_groups=self._settings.segment_max_groups,
                ),
            )
        return fitted

    def run(self) -> dict[str, Any]:
        """One round for every model, if this process wins the lock (blocking: call in a thread)."""
        with try_advisory_lock(self._store.engine, LOCK_KEY) as acquired:
            if not acquired:
                return {"ran": False, "reason": "another worker holds the model-quality lock"}
            # Whoever runs the job (a worker's schedule, the API, `nexus-ml drift` in its own
            # process) decides with the thresholds saved through the API, not only with the
            # file/environment ones this process started with.
            self._thresholds.refresh()
            started = time.perf_counter()
            results = {m.name: self._run_isolated(m) for m in self._models.all()}
            seconds = time.perf_counter() - started
        self._metrics.db_operation_duration_seconds.labels("model_quality_job").observe(seconds)
        return {"ran": True, "seconds": seconds, "models": results}

    def _run_isolated(self, loaded: LoadedModel) -> dict[str, Any]:
        """One model's round; its failure is logged, counted and reported, the others go on.

        Bundles are validated at load, so this is a backstop: a bug or an input nobody foresaw
        in one model must not cost every model its drift and accuracy. An unreachable database
        is everyone's problem and still propagates (the caller answers 503).
        """
        try:
            return self._run_model(loaded)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            error_type = type(exc).__name__
            self._metrics.errors_total.labels("quality", error_type).inc()
            log.error(
                "model-quality round failed for one model",
                extra={"model": loaded.name, "version": loaded.version, "error_type": error_type},
            )
            self._fitted.pop((loaded.name, loaded.version), None)
            return {"version": loaded.version, "error": error_type}

    def _run_model(self, loaded: LoadedModel) -> dict[str, Any]:
        s, m, store = self._settings, self._metrics, self._store
        fitted = self._fit(loaded)
        name = loaded.name
        since = None
        if s.drift_window_seconds is not None:
            since = utcnow() - timedelta(seconds=s.drift_window_seconds)
        rows = store.recent_predictions(
            name, limit=None if since else s.drift_window_size, since=since, version=loaded.version
        )
        names = list(loaded.schema.names)
        X = _window(loaded, [r.features for r in rows])
        out: dict[str, Any] = {"version": loaded.version, "window_size": len(rows)}
        report = fitted.detector.score(X, names)
        out["drift"] = report.to_dict()

        quality = fitted.checker.check_window(X)
        out["quality"] = {
            "score": quality.score,
            "n_rows": quality.n_rows,
            "n_issues": quality.n_issues,
            "by_feature": quality.by_feature(),
        }

        estimate = fitted.estimator.estimate([r.confidence for r in rows])
        out["estimated_accuracy"] = {
            "accuracy": estimate.accuracy,
            "stderr": estimate.stderr,
            "n": estimate.n,
        }
        labelled = store.labelled_predictions(name, self._accuracy_since(), with_features=True)
        accuracy = realised_accuracy(
            [p.predicted_class for p in labelled], [p.actual for p in labelled]
        )
        out["accuracy"] = {"accuracy": accuracy.accuracy, "n": accuracy.n}
        export_result(m, name, out)
        try:
            out["clinical"] = self._clinical(loaded, fitted, labelled, rows)
        except DatabaseUnavailable:
            raise
        except Exception as exc:  # a bug here must not cost the model its drift and accuracy
            error_type = type(exc).__name__
            m.errors_total.labels("quality", error_type).inc()
            log.error(
                "clinical metrics failed for one model",
                extra={"model": name, "version": loaded.version, "error_type": error_type},
            )
            out["clinical_error"] = error_type
        store.save_drift_result(
            name,
            loaded.version,
            window_size=len(rows),
            drift_share=report.share_drifted,
            results=out,
            window_start=rows[-1].created_at if rows else None,
            window_end=rows[0].created_at if rows else None,
        )
        return out

    def _clinical(
        self,
        loaded: LoadedModel,
        fitted: _Fitted,
        labelled: list[LabelledPrediction],
        window: list[WindowRow],
    ) -> dict[str, Any]:
        """Clinical metrics per segment, exported; NaN for what the previous result had."""
        name = loaded.name
        clinical = fitted.clinical.evaluate(labelled, window)
        previous = self._store.latest_drift_result(name)
        known = self._exported.get(name, set()) | _stored_samples(name, previous)
        self._exported[name] = export(self._metrics, clinical_samples(name, clinical), known)
        return clinical

    def restore_gauges(self) -> int:
        """Export each loaded model's latest stored result for its version (blocking; at start).

        Every gauge a round exports comes back: drift (window size, scores, verdicts, share),
        estimated and realised accuracy, and the clinical gauges; without this they would be
        absent until the next round, which also resets the ``for`` timers of Prometheus alerts
        waiting on them. Returns how many models had a stored result.
        """
        restored = 0
        for loaded in self._models.all():
            name = loaded.name
            latest = self._store.latest_drift_result(name, loaded.version)
            if latest is None:
                continue
            export_result(self._metrics, name, latest.results)
            clinical = latest.results.get("clinical")
            if clinical:
                self._exported[name] = export(self._metrics, clinical_samples(name, clinical))
            restored += 1
        return restored

    def _accuracy_since(self) -> datetime:
        return utcnow() - timedelta(seconds=self._settings.accuracy_window_seconds)


def export_result(m: Metrics, name: str, result: dict[str, Any]) -> None:
    """Set the drift and accuracy gauges of one round's result (computed now, or stored).

    One function for both paths, so a restart exports exactly what the round that stored the
    result exported: drift only when its window was decided, accuracies only when known.
    """
    m.data_drift_window_size.labels(name).set(result.get("window_size", 0))
    drift = result.get("drift") or {}
    if drift.get("decided"):
        for feature, fd in drift.get("features", {}).items():
            for method, score in fd.get("scores", {}).items():
                if score is not None and math.isfinite(score):  # stored NaN is None
                    m.data_drift_score.labels(name, feature, method).set(score)
            m.data_drift_detected.labels(name, feature).set(1.0 if fd.get("drifted") else 0.0)
        m.data_drift_share.labels(name).set(drift.get("share_drifted", 0.0))
    estimated = result.get("estimated_accuracy") or {}
    if estimated.get("accuracy") is not None:
        m.model_estimated_accuracy.labels(name).set(estimated["accuracy"])
        m.model_estimated_accuracy_stderr.labels(name).set(estimated.get("stderr") or 0.0)
    # Realised accuracy over the accuracy window (labels joined on prediction time).
    accuracy = result.get("accuracy") or {}
    m.model_accuracy_samples.labels(name).set(accuracy.get("n", 0))
    if accuracy.get("accuracy") is not None:
        m.model_accuracy.labels(name).set(accuracy["accuracy"])


def _stored_samples(name: str, result: DriftResultRecord | None) -> set[Sample]:
    """The clinical samples a stored result exported (those with a value)."""
    clinical = None if result is None else result.results.get("clinical")
    if not clinical:
        return set()
    return {s for s, v in clinical_samples(name, clinical).items() if v is not None}


def _window(loaded: LoadedModel, rows: list[dict[str, Any]]) -> np.ndarray:
    """Stored features as a window in schema order: float64 when every feature is a number,
    else an object array holding each category as its string (None when missing)."""
    names = loaded.schema.names
    if loaded.schema.numeric_only:
        return np.array([[_num(r.get(f)) for f in names] for r in rows], dtype=np.float64).reshape(
            len(rows), len(names)
        )
    convert = [_category if f.is_category else _num for f in loaded.schema.features]
    X = np.empty((len(rows), len(names)), dtype=object)
    for i, r in enumerate(rows):
        X[i] = [c(r.get(f)) for c, f in zip(convert, names, strict=True)]
    return X


def _category(value: Any) -> str | None:
    return value if type(value) is str else None


def _num(value: Any) -> float:
    # Stored rows passed validation; anything else becomes NaN, which drift
    # ignores and window quality reports.
    return float(value) if type(value) in (int, float) else math.nan


class QualityRunner:
    """The job as the service runs it: on its schedule and on demand, off the event loop.

    Schedule: the first round ``first`` seconds after start (not a whole interval: a
    newcomer would see no drift or accuracy for five minutes), then rounds at that pace while
    some model's drift window cannot be decided yet — the first window that can be decided is
    judged within ``first`` seconds — for one ``interval`` at most, then every ``interval``.
    """

    def __init__(
        self,
        job: QualityJob,
        writer: RecordWriter,
        db: Database,
        *,
        interval: float,
        first: float,
    ) -> None:
        self.job = job
        self._writer = writer
        self._db = db
        self.interval = interval
        self.first = min(first, interval)
        self._warm_until = time.monotonic() + interval

    async def scheduled(self) -> float:
        """One scheduled round; the seconds until the next one."""
        result = await self.run()
        if self.first < self.interval and time.monotonic() < self._warm_until:
            if not result.get("ran"):
                return self.first  # another worker holds the lock: ask again soon
            models = result.get("models", {})
            if not all((r.get("drift") or {}).get("decided") for r in models.values()):
                return self.first
        self._warm_until = 0.0  # warm-up over: never again after the first decided round
        return self.interval

    def after_failure(self) -> float:
        """Seconds until the next round after a failed one (a database down at start)."""
        return self.first if time.monotonic() < self._warm_until else self.interval

    async def run(self) -> dict[str, Any]:
        """Drift, window quality and accuracy now (one worker at a time)."""
        # This worker's queued records belong in the window it is about to read.
        await self._writer.flush(timeout=10.0)
        return await self._db.run(self.job.run)
