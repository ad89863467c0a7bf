"""Per-model observation on the prediction hot path.

One ``ModelObserver`` per loaded model version holds its metric children
(resolved once: a ``.labels()`` lookup costs about as much as everything else
here together). Data-quality issues of answered requests are the answer's warnings, found by
the schema check; refused values are counted as the issues they are.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from nexus_ml.ml.registry import LoadedModel
from nexus_ml.ml.schema import Issue
from nexus_ml.monitoring.feature_bins import HOLD_ROWS, BinCounter, feature_bins
from nexus_ml.monitoring.metrics import Metrics

# The quality score is over the last this-many requests of this worker.
QUALITY_WINDOW = 1000
_INF, _NEG_INF = float("inf"), float("-inf")


class ModelObserver:
    """Records one model version's predictions into metrics."""

    def __init__(self, metrics: Metrics, loaded: LoadedModel, *, hold: int = HOLD_ROWS) -> None:
        """``hold``: rows kept before they are binned (1 for an observer that is not kept)."""
        name, version = loaded.name, loaded.version
        self._metrics = metrics
        self._name = name
        self.version = version
        self._duration = metrics.model_prediction_duration_seconds.labels(name).observe
        self._confidence = metrics.model_confidence_score.labels(name).observe
        self._count = {
            cls: metrics.model_predictions_total.labels(name, version, cls).inc
            for cls in loaded.classes
        }
        self._score = metrics.data_quality_score.labels(name)
        self._issue_counters: dict[tuple[str, str], Any] = {}
        self._features = set(loaded.schema.names)
        self._n_values = len(loaded.schema.names)
        # Ring of per-request issue counts; the running sum avoids re-adding the ring.
        self._ring: deque[int] = deque(maxlen=QUALITY_WINDOW)
        self._ring_issues = 0
        # Inputs per reference bin: the bins and their counter children resolved once, here.
        self.bin_layout = feature_bins(loaded.metadata.get("profile"), loaded.schema.names)
        counter = metrics.feature_bin_total
        self.bins = BinCounter(
            self.bin_layout,
            [
                [counter.labels(name, version, fb.feature, b).inc for b in fb.labels]
                for fb in self.bin_layout
            ],
            hold=hold,
        )

    def observe(
        self, issues: Sequence[Issue], predicted: str, confidence: float, latency: float
    ) -> None:
        """Count the prediction, its latency and confidence, and its answer's warnings.

        ``issues`` are the answer's warnings (``out_of_range``, ``unseen_category``), found by
        the schema check: each is a data-quality issue of that kind for that feature.
        """
        if not (_NEG_INF < confidence < _INF and _NEG_INF < latency < _INF):
            # The predictor never answers a non-finite number; were one to get here, it
            # would make the histogram's _sum NaN for the life of the process.
            raise ValueError("refusing to observe a non-finite confidence or latency")
        self._count[predicted]()
        self._duration(latency)
        self._confidence(confidence)
        for feature, kind in issues:
            self._issue(feature, kind)
        self._push(len(issues))

    def refused(self, issues: Sequence[Issue]) -> None:
        """Count a request refused for these features' values, as one request of the score."""
        # Only schema features become labels: a client's unknown names never do.
        counted = [(f, k) for f, k in issues if f in self._features]
        for feature, kind in counted:
            self._issue(feature, kind)
        if counted:
            # A refused batch can list more problems than one row has values.
            self._push(min(len(counted), self._n_values))

    def _issue(self, feature: str, kind: str) -> None:
        key = (feature, kind)
        counter = self._issue_counters.get(key)
        if counter is None:
            counter = self._issue_counters[key] = self._metrics.data_quality_issues_total.labels(
                self._name, feature, kind
            )
        counter.inc()

    def _push(self, n_issues: int) -> None:
        ring = self._ring
        if len(ring) == ring.maxlen:
            self._ring_issues -= ring[0]
        ring.append(n_issues)
        self._ring_issues += n_issues
        self._score.set(1.0 - self._ring_issues / (len(ring) * self._n_values))
