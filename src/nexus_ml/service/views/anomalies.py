"""The anomaly bands evaluated in-process, for users without Prometheus: all six signals.

The same definitions as the rules (``stats/anomaly.py``'s specs; ``render/anomaly_rules.py``),
over per-minute counts in the database, so that every instance's traffic adds up:

- predictions per model, mean confidence and each class's share from the prediction rollups
  the record writer keeps (``storage/aggregates.py``);
- the request rate, the 5xx share and the P95 latency of every request, whatever its route,
  from the request rollups (``storage/request_rollups.py``) that each instance's request
  middleware counts in memory and flushes every few seconds (``service/request_counts.py``):
  counts by status class and by the duration histogram's own buckets, so the P95 is
  ``histogram_quantile`` of the same buckets (``monitoring.measurements.bucket_quantile``, which
  the in-process alert evaluator uses too).

A step is a minute; a signal is, as the rules' ``rate(…[5m])``, the sum over the last five
minutes / 300 s (ratios and the quantile: of the sums; Prometheus's ``rate`` extrapolates to the
window's edges, which cancels in the ratios and the quantile and differs in the rates by the
few per cent a scrape interval makes). The minute under way is not scored, nor the one that
ended less than ``SETTLE_SECONDS`` ago (not every instance has flushed it yet): ``at`` is the
last settled minute.

Read: the last hours an episode needs, and the hour around the same minute each season back —
a few hundred minute rows per model and for the requests, on day 300 as on day 1. Within the
pieces read, history begins at the first stored minute (before it: NaN, as a series Prometheus
has not scraped yet; a seasonal window without it falls back to the trailing one), and after
it a minute without a row served nothing (0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from nexus_ml.monitoring.measurements import bucket_quantile
from nexus_ml.monitoring.request_tally import LATENCY_LABELS
from nexus_ml.service.database import Database
from nexus_ml.service.request_counts import SETTLE_SECONDS
from nexus_ml.stats.anomaly import STEP_SECONDS, BandSpec, default_specs, latest
from nexus_ml.storage.aggregates import MINUTE, MinuteTotals, floor_to
from nexus_ml.storage.records import utcnow
from nexus_ml.thresholds import format_duration

SUM_MINUTES = 5  # the rules' rate window
MODEL_SIGNALS = ("predictions", "confidence", "class_share")
REQUEST_SIGNALS = ("request_rate", "error_ratio", "latency_p95")
SIGNALS = (*REQUEST_SIGNALS, *MODEL_SIGNALS)
_BOUNDS = [float(b) for b in LATENCY_LABELS]  # float("+Inf") is inf


class BaselineBand(BaseModel):
    """One baseline's band at the last settled minute (null: no history for it)."""

    baseline: str = Field(description="The season (7d, 14d, 21d) or 'trailing'.")
    centre: float | None
    spread: float | None
    score: float | None


class AnomalyReading(BaseModel):
    """One signal (of the service, or of one model and class) at the last settled minute."""

    signal: str
    model: str | None = Field(description="null for the request signals (the whole service).")
    predicted_class: str | None = None
    value: float | None
    direction: str
    anomalous: bool = Field(description="A majority of the baselines beyond k on one side.")
    firing: bool = Field(description="Anomalous for `for`, or held by keep_firing_for.")
    baselines: list[BaselineBand]


class AnomalyReport(BaseModel):
    """``GET /monitoring/anomalies``: the in-process anomaly bands."""

    at: datetime = Field(description="The start of the last settled minute (UTC).")
    k: float
    readings: list[AnomalyReading]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _sums(values: np.ndarray) -> np.ndarray:
    """Sums over the last five steps along the first axis (NaN if any of them is missing)."""
    out = np.full(values.shape, np.nan)
    if len(values) >= SUM_MINUTES:
        windows = np.lib.stride_tricks.sliding_window_view(values, SUM_MINUTES, axis=0)
        out[SUM_MINUTES - 1 :] = windows.sum(axis=-1)
    return out


def _ratio(part: np.ndarray, total: np.ndarray) -> np.ndarray:
    """``part / total`` where ``total > 0``, else NaN (the rules' ``/ (total > 0)``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, part / np.where(total > 0, total, 1.0), np.nan)


class _Steps:
    """The minutes read, as step indexes from ``origin``: which are history, which are not."""

    def __init__(self, pieces: list[tuple[int, int]], origin: datetime, length: int) -> None:
        self.pieces, self.origin, self.length = pieces, origin, length
        self.index = {origin + timedelta(minutes=i): i for lo, hi in pieces for i in range(lo, hi)}

    def zeros(self, stored: Mapping[datetime, object]) -> np.ndarray:
        """0 from the first stored minute of each piece on (the service ran), NaN elsewhere."""
        out = np.full(self.length, np.nan)
        for lo, hi in self.pieces:
            first = next(
                (i for i in range(lo, hi) if self.origin + timedelta(minutes=i) in stored), hi
            )
            out[first:hi] = 0.0
        return out


class Anomalies:
    """The in-process anomaly bands over the stored per-minute aggregates."""

    def __init__(
        self, db: Database, specs: Callable[[], dict[str, BandSpec]] | None = None
    ) -> None:
        """``specs``: the bands in force (read at each report: they follow the thresholds)."""
        self._db = db
        self._specs = specs or default_specs

    def _pieces(self, specs: dict[str, BandSpec]) -> list[tuple[int, int]]:
        """(first, last + 1) step indexes to read; the first piece is the recent one."""
        chosen = [specs[s] for s in SIGNALS]
        window = max(s.window for s in chosen)
        # An episode's start may lie a while back (latest() doubles its tail): read 4 h.
        recent = max(4 * window, 240) + SUM_MINUTES
        seasons = sorted({season for s in chosen for season in s.seasons})
        length = (seasons[-1] if seasons else 0) + recent
        pieces = [(length - recent, length)]
        for season in seasons:
            lo = length - recent - season + window // 2 - SUM_MINUTES
            pieces.append((max(0, lo), length - season + window // 2 + 1))
        return pieces

    async def report(self, now: datetime | None = None) -> AnomalyReport:
        """Each signal of the service and of each model with stored predictions."""
        specs = self._specs()
        # The last minute every instance has flushed (request counts) or written (predictions).
        end = floor_to((now or utcnow()) - timedelta(seconds=SETTLE_SECONDS), MINUTE)
        pieces = self._pieces(specs)
        length = pieces[0][1]
        origin = end - timedelta(minutes=length)
        steps = _Steps(pieces, origin, length)
        spans = [
            (origin + timedelta(minutes=lo), origin + timedelta(minutes=hi)) for lo, hi in pieces
        ]
        db = self._db
        models = await db.run(db.store.minute_totals, spans)
        requests = await db.run(db.store.request_minutes, spans)
        readings = _readings(specs, None, _request_series(requests, steps)) if requests else []
        for model, minutes in sorted(models.items()):
            readings += _readings(specs, model, _model_series(minutes, steps))
        return AnomalyReport(
            at=origin + timedelta(minutes=length - 1),
            k=specs["predictions"].k,
            readings=readings,
        )


Series = dict[tuple[str, str | None], np.ndarray]


def _request_series(
    minutes: Mapping[datetime, Mapping[tuple[str, str], int]], steps: _Steps
) -> Series:
    """Request rate, 5xx share and P95 latency, as the rules compute them from the metrics."""
    base = steps.zeros(minutes)
    total, errors = base.copy(), base.copy()
    # Per step and bucket (le order): requests; summed over five steps, then made cumulative.
    buckets = np.repeat(base[:, None], len(LATENCY_LABELS), axis=1)
    column = {le: j for j, le in enumerate(LATENCY_LABELS)}
    for at, counts in minutes.items():
        i = steps.index.get(at)
        if i is None or np.isnan(base[i]):
            continue
        for (kind, key), n in counts.items():
            if kind == "status":
                total[i] += n
                errors[i] += n if key == "5xx" else 0
            elif kind == "latency" and key in column:
                buckets[i, column[key]] += n
    summed = _sums(total)
    cumulative = np.cumsum(_sums(buckets), axis=1)
    p95 = np.full(len(cumulative), np.nan)
    # Only the steps read have sums (a few hundred of the ~30,000 the seasons span).
    for step in np.flatnonzero(np.isfinite(cumulative[:, -1])):
        value = bucket_quantile(0.95, zip(_BOUNDS, cumulative[step].tolist(), strict=True))
        p95[step] = math.nan if value is None else value  # None: PromQL's NaN
    return {
        ("request_rate", None): summed / (SUM_MINUTES * STEP_SECONDS),
        ("error_ratio", None): _ratio(_sums(errors), summed),
        ("latency_p95", None): p95,
    }


def _model_series(minutes: Mapping[datetime, MinuteTotals], steps: _Steps) -> Series:
    """Predictions per second, mean confidence and each class's share of one model."""
    count = steps.zeros(minutes)
    confidence = count.copy()
    classes: dict[str, np.ndarray] = {}
    for at, m in minutes.items():
        i = steps.index.get(at)
        if i is None or np.isnan(count[i]):
            continue
        count[i], confidence[i] = m.predictions, m.confidence_sum
        for name, n in m.class_counts.items():
            if name not in classes:
                classes[name] = np.where(np.isnan(count), np.nan, 0.0)
            classes[name][i] = n
    total = _sums(count)
    return {
        ("predictions", None): total / (SUM_MINUTES * STEP_SECONDS),
        ("confidence", None): _ratio(_sums(confidence), total),
        **{("class_share", name): _ratio(_sums(c), total) for name, c in sorted(classes.items())},
    }


def _readings(
    specs: dict[str, BandSpec], model: str | None, series: Series
) -> list[AnomalyReading]:
    out = []
    for (signal, predicted_class), x in series.items():
        spec = specs[signal]
        last = latest(x, spec)
        # The rules' baseline labels (render.anomaly_rules.baselines): "7d", "12h", …
        names = [format_duration(s * STEP_SECONDS) for s in spec.seasons] or ["trailing"]
        out.append(
            AnomalyReading(
                signal=signal,
                model=model,
                predicted_class=predicted_class,
                value=_finite(last.value),
                direction=spec.direction,
                anomalous=last.anomalous,
                firing=last.firing,
                baselines=[
                    BaselineBand(
                        baseline=name,
                        centre=_finite(b.centre[0]),
                        spread=_finite(b.spread[0]),
                        score=_finite(b.score[0]),
                    )
                    for name, b in zip(names, last.bands, strict=True)
                ],
            )
        )
    return out
