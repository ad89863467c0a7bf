"""The anomaly bands evaluated in-process, for users without Prometheus.

The same definitions as the rules (``stats/anomaly.py``'s specs; ``render/anomaly_rules.py``),
over the per-minute aggregates the record writer keeps (``storage/aggregates.py``). Those hold
the answered predictions, so three of the six signals exist here: predictions per model, mean
confidence and each class's share (the request rate, error ratio and HTTP latency are counted
in memory by ``ml_api_requests_total``: only Prometheus keeps their history). A step is a
minute; a signal is, as the rules' ``rate(…[5m])``, the sum over the last five minutes / 300 s
(ratios: of the sums). The current minute is not complete: the last step is the one before.

Read: the last hour and the steps an episode needs, and the hour around the same minute each
season back — a few hundred minute rows per model, on day 300 as on day 1. Within the pieces
read, history begins at the model's first stored minute (before it: NaN, as a series Prometheus
has not scraped yet; a seasonal window without it falls back to the trailing one), and after it
a minute without a row served no prediction (0).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from nexus_ml.service.database import Database
from nexus_ml.stats.anomaly import STEP_SECONDS, BandSpec, default_specs, latest
from nexus_ml.storage.aggregates import MINUTE, MinuteTotals, floor_to
from nexus_ml.storage.records import utcnow

SUM_MINUTES = 5  # the rules' rate window
SIGNALS = ("predictions", "confidence", "class_share")


class BaselineBand(BaseModel):
    """One baseline's band at the last complete minute (null: no history for it)."""

    baseline: str = Field(description="The season (7d, 14d, 21d) or 'trailing'.")
    centre: float | None
    spread: float | None
    score: float | None


class AnomalyReading(BaseModel):
    """One signal of one model (and class) at the last complete minute."""

    signal: str
    model: str
    predicted_class: str | None = None
    value: float | None
    direction: str
    anomalous: bool = Field(description="A majority of the baselines beyond k on one side.")
    firing: bool = Field(description="Anomalous for `for`, or held by keep_firing_for.")
    baselines: list[BaselineBand]


class AnomalyReport(BaseModel):
    """``GET /monitoring/anomalies``: the in-process anomaly bands."""

    at: datetime = Field(description="The start of the last complete minute (UTC).")
    k: float
    readings: list[AnomalyReading]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _sums(values: np.ndarray) -> np.ndarray:
    """Sums over the last five steps (NaN if any of them is missing)."""
    out = np.full(len(values), np.nan)
    if len(values) >= SUM_MINUTES:
        out[SUM_MINUTES - 1 :] = np.lib.stride_tricks.sliding_window_view(values, SUM_MINUTES).sum(
            axis=1
        )
    return out


class Anomalies:
    """The in-process anomaly bands over the stored per-minute aggregates."""

    def __init__(self, db: Database, specs: dict[str, BandSpec] | None = None) -> None:
        self._db = db
        self._specs = specs or default_specs()

    def _pieces(self, end: datetime) -> list[tuple[int, int]]:
        """(first, last + 1) step indexes to read, counted back from ``end`` (exclusive)."""
        specs = [self._specs[s] for s in SIGNALS]
        window = max(s.window for s in specs)
        # An episode's start may lie a while back (latest() doubles its tail): read 4 h.
        recent = max(4 * window, 240) + SUM_MINUTES
        seasons = sorted({season for s in specs for season in s.seasons})
        length = (seasons[-1] if seasons else 0) + recent
        pieces = [(length - recent, length)]
        for season in seasons:
            lo = length - recent - season + window // 2 - SUM_MINUTES
            pieces.append((max(0, lo), length - season + window // 2 + 1))
        return pieces

    async def report(self, now: datetime | None = None) -> AnomalyReport:
        """Each signal of each model with stored predictions, at the last complete minute."""
        end = floor_to(now or utcnow(), MINUTE)
        pieces = self._pieces(end)
        length = pieces[0][1]
        origin = end - timedelta(minutes=length)

        def at(i: int) -> datetime:
            return origin + timedelta(minutes=i)

        db = self._db
        rows = await db.run(db.store.minute_totals, [(at(lo), at(hi)) for lo, hi in pieces])
        readings: list[AnomalyReading] = []
        for model, minutes in sorted(rows.items()):
            readings += self._model(model, minutes, pieces, origin, length)
        return AnomalyReport(at=at(length - 1), k=self._specs["predictions"].k, readings=readings)

    def _model(
        self,
        model: str,
        minutes: dict[datetime, MinuteTotals],
        pieces: list[tuple[int, int]],
        origin: datetime,
        length: int,
    ) -> list[AnomalyReading]:
        count = np.full(length, np.nan)
        confidence = np.full(length, np.nan)
        classes: dict[str, np.ndarray] = {}
        index = {origin + timedelta(minutes=i): i for lo, hi in pieces for i in range(lo, hi)}
        for lo, hi in pieces:
            # History begins at the model's first stored minute of the piece (the service may
            # not have run before it); from there, a minute without a row served nothing.
            first = next((i for i in range(lo, hi) if origin + timedelta(minutes=i) in minutes), hi)
            count[first:hi] = 0.0
            confidence[first:hi] = 0.0
        for at, m in minutes.items():
            i = index.get(at)
            if i is None or np.isnan(count[i]):
                continue
            count[i], confidence[i] = m.predictions, m.confidence_sum
            for name, n in m.class_counts.items():
                if name not in classes:
                    classes[name] = np.where(np.isnan(count), np.nan, 0.0)
                classes[name][i] = n
        total = _sums(count)
        with np.errstate(invalid="ignore", divide="ignore"):
            series: dict[tuple[str, str | None], np.ndarray] = {
                ("predictions", None): total / (SUM_MINUTES * STEP_SECONDS),
                ("confidence", None): np.where(total > 0, _sums(confidence) / total, np.nan),
                **{
                    ("class_share", name): np.where(total > 0, _sums(c) / total, np.nan)
                    for name, c in sorted(classes.items())
                },
            }
        out = []
        for (signal, predicted_class), x in series.items():
            spec = self._specs[signal]
            last = latest(x, spec)
            names = [f"{s * STEP_SECONDS / 86400:g}d" for s in spec.seasons] or ["trailing"]
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
