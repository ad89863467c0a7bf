"""Robust anomaly bands for monitoring series: the reference both evaluators follow.

A series (request rate, error ratio, predictions per model, latency p95, mean confidence, a
class's share) is compared with a baseline of its own past, never with a fixed limit:

- **centre** = the median of the baseline window, **spread** = its inter-quartile range / 1.349
  (a robust standard deviation: the IQR of a normal distribution is 1.349 σ). The IQR rather than
  the MAD because Prometheus 2.42 computes it exactly with ``quantile_over_time`` (the MAD needs a
  median of deviations from a median, which PromQL can only approximate with a subquery), and the
  Prometheus rules must give the numbers this module gives.
- **baselines**: one per season — by default one, two and three weeks back (hour-of-week
  seasonality). With a full season of history, that baseline's window is centred on the same
  moment one season earlier (``[W] offset (season - W/2)``); before that, it is the trailing
  window ending now (``[W]``), which follows a level change after about W/2. A step is anomalous
  when a **majority** of the baselines put it beyond ``k`` **on the same side**: last week's
  incident is outvoted by the two weeks before it (no echo a week later), a Monday morning is
  compared with Mondays (a one-day baseline made every Monday after a quiet weekend look like a
  surge, and failed the offline evaluation for that reason), and a slow drift away from all of
  them is caught once the weeks of history exist.
- **floors**: the spread is at least ``rel_floor × |centre|`` and ``abs_floor``: a quiet series
  (an error ratio of 0) must not alert on its first error.
- **score** ``z = (x - centre) / spread``; a step is *outside* when ``z > k`` (``direction`` up),
  ``z < -k`` (down) or ``|z| > k`` (both), and an alert fires once the condition has held
  ``for_steps`` steps after the step it began — Prometheus's ``for`` (pending at the first step
  outside, firing ``for`` later: ``for_steps + 1`` steps outside in a row).
- **missing history**: a window is used when it holds at least half its steps' samples
  (``min_samples``), as the rules' ``count_over_time(...) >= min_samples`` guard: a seasonal
  window that does not hold them (no history a season back, or only its last minutes) falls
  back to the trailing window, and a trailing window that does not hold them gives no score.
  NaN samples are missing samples (a series PromQL does not record at that step).

Quantiles are numpy's ``linear`` method, which is Prometheus's ``quantile_over_time``
(rank φ·(n−1), linear interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from nexus_ml.thresholds import ANOMALY_STEP_SECONDS, Thresholds

# IQR of a standard normal distribution: IQR / 1.349 estimates σ.
IQR_TO_SIGMA = 1.349

Direction = Literal["up", "down", "both"]


@dataclass(kw_only=True, frozen=True)
class BandSpec:
    """How one signal's band is made (window and season in steps of the series)."""

    window: int
    seasons: tuple[int, ...]
    k: float
    rel_floor: float
    abs_floor: float
    for_steps: int
    # Prometheus's keep_firing_for (2.42+): a firing alert stays firing this many steps after
    # its condition ends, so a series hovering at the band's edge does not page again and again.
    keep_steps: int = 0
    direction: Direction = "both"

    @property
    def min_samples(self) -> int:
        """Samples a window must hold to be used (half its steps, rounded up)."""
        return (self.window + 1) // 2

    def __post_init__(self) -> None:
        if self.window < 4:
            raise ValueError("window: at least 4 steps (a quartile of fewer is meaningless)")
        if any(season <= self.window for season in self.seasons):
            raise ValueError("seasons: each longer than the window")
        if self.k <= 0 or self.for_steps < 0 or self.keep_steps < 0:
            raise ValueError("k > 0, for_steps >= 0 and keep_steps >= 0")
        if self.rel_floor < 0 or self.abs_floor < 0:
            raise ValueError("floors are not negative")


@dataclass(frozen=True)
class Bands:
    """Per step: the centre, the spread used, and the score (NaN where undecided)."""

    centre: np.ndarray
    spread: np.ndarray
    score: np.ndarray

    def lower(self, k: float) -> np.ndarray:
        return self.centre - k * self.spread

    def upper(self, k: float) -> np.ndarray:
        return self.centre + k * self.spread


def _window_quantiles(x: np.ndarray, ends: np.ndarray, window: int, least: int) -> np.ndarray:
    """Quartiles (3 × n) of ``x[end - window + 1 : end + 1]`` for each end; NaN where that
    window holds fewer than ``least`` samples (steps before the series began are missing)."""
    n = len(ends)
    out = np.full((3, n), np.nan)
    padded = np.concatenate((np.full(window - 1, np.nan), x))
    inside = (ends >= 0) & (ends < len(x))
    rows = np.lib.stride_tricks.sliding_window_view(padded, window)[ends[inside]]
    enough = np.sum(~np.isnan(rows), axis=1) >= least
    if enough.any():
        # NaN samples (a scrape missed) are left out, as Prometheus has no sample there.
        at = np.flatnonzero(inside)[enough]
        out[:, at] = np.nanquantile(rows[enough], [0.25, 0.5, 0.75], axis=1, method="linear")
    return out


def _band(x: np.ndarray, q: np.ndarray, spec: BandSpec) -> Bands:
    centre = q[1]
    spread = np.maximum.reduce(
        [
            (q[2] - q[0]) / IQR_TO_SIGMA,
            spec.rel_floor * np.abs(centre),
            np.full_like(centre, spec.abs_floor),
        ]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (x - centre) / spread
    return Bands(centre=centre, spread=spread, score=score)


def bands(x: np.ndarray, spec: BandSpec, at: np.ndarray | None = None) -> list[Bands]:
    """One band per baseline (per season; the trailing window alone without seasons), at every
    step or at the steps ``at``."""
    x = np.asarray(x, dtype=np.float64)
    steps = np.arange(len(x)) if at is None else np.asarray(at)
    trailing = _window_quantiles(x, steps, spec.window, spec.min_samples)
    if not spec.seasons:
        return [_band(x[steps], trailing, spec)]
    out = []
    for season in spec.seasons:
        # The window centred on the same moment one season ago: ends W/2 steps after it.
        ends = steps - season + spec.window // 2
        seasonal = _window_quantiles(x, ends, spec.window, spec.min_samples)
        have = ~np.isnan(seasonal[1])
        out.append(_band(x[steps], np.where(have, seasonal, trailing), spec))
    return out


def _votes(scores: list[np.ndarray], spec: BandSpec) -> np.ndarray:
    scores = [np.nan_to_num(z, nan=0.0) for z in scores]
    need = len(scores) // 2 + 1
    up = np.sum([z > spec.k for z in scores], axis=0) >= need
    down = np.sum([z < -spec.k for z in scores], axis=0) >= need
    if spec.direction == "up":
        return up
    if spec.direction == "down":
        return down
    return up | down


def anomalous(x: np.ndarray, spec: BandSpec) -> np.ndarray:
    """True where a majority of the baselines put a step beyond ``k`` on the same side."""
    return _votes([b.score for b in bands(x, spec)], spec)


def firing(x: np.ndarray, spec: BandSpec) -> np.ndarray:
    """True at each step where the alert fires, as Prometheus's ``for`` and ``keep_firing_for``
    make it: anomalous ``for_steps`` steps after the first anomalous step, then held
    ``keep_steps`` steps after the condition ends."""
    return _fire(anomalous(x, spec), spec)


def _fire(out: np.ndarray, spec: BandSpec) -> np.ndarray:
    fire = np.zeros(len(out), dtype=bool)
    # Prometheus's alert states (rules/alerting.go): pending from the first step outside, firing
    # `for` later; a firing alert stays firing while outside, and `keep` steps after the last
    # step outside; outside again while kept, it goes on firing (no new `for`).
    since = -1  # the step the pending run began (ActiveAt)
    held = -1  # the last step outside while firing
    on = False
    for i, v in enumerate(out):  # a recurrence: a loop is the clear way (series of ~10^4 steps)
        if v:
            since = i if since < 0 else since
            if on or i - since >= spec.for_steps:
                on, held = True, i
        else:
            since = -1
            on = on and i - held <= spec.keep_steps
        fire[i] = on
    return fire


@dataclass(frozen=True)
class Latest:
    """The last step of a series: its bands (one per baseline), anomalous, firing."""

    value: float
    bands: list[Bands]  # each of one step
    anomalous: bool
    firing: bool


def latest(x: np.ndarray, spec: BandSpec) -> Latest:
    """The last step as ``bands``, ``anomalous`` and ``firing`` give it, computed over a tail of
    the series only: one that starts ``keep_steps + 1`` steps inside before it ends, after
    which no alert is firing or pending whatever came before (or the whole series)."""
    x = np.asarray(x, dtype=np.float64)
    size = spec.for_steps + spec.keep_steps + 1
    while True:
        tail = np.arange(max(0, len(x) - size), len(x))
        tail_bands = bands(x, spec, at=tail)
        votes = _votes([b.score for b in tail_bands], spec)
        if tail[0] == 0 or _has_quiet_run(votes, spec.keep_steps + 1):
            break
        size *= 2  # an episode (or a chain of them, each within keep of the last) goes on
    last = [Bands(b.centre[-1:], b.spread[-1:], b.score[-1:]) for b in tail_bands]
    return Latest(
        value=float(x[-1]),
        bands=last,
        anomalous=bool(votes[-1]),
        firing=bool(_fire(votes, spec)[-1]),
    )


def _has_quiet_run(votes: np.ndarray, length: int) -> bool:
    """Whether ``votes`` holds ``length`` consecutive steps inside the band."""
    run = 0
    for v in votes:
        run = 0 if v else run + 1
        if run >= length:
            return True
    return False


@dataclass(kw_only=True, frozen=True)
class Signal:
    """What is fixed by the signal itself: its alert, which way is bad, its smallest meaningful
    spread."""

    alert: str
    direction: Direction
    rel_floor: float
    abs_floor: float


# Every anomaly alert tickets, never pages: an anomaly is a question (docs/runbooks.md).
SEVERITY = "warning"
# The six monitored signals. Floors: a rate's own Poisson noise is a few per cent; an error
# ratio of 0 must see more than one error; confidence and shares move in hundredths.
SIGNALS: dict[str, Signal] = {
    "request_rate": Signal(
        alert="RequestRateAnomaly", direction="both", rel_floor=0.05, abs_floor=0.05
    ),
    "predictions": Signal(
        alert="PredictionVolumeAnomaly", direction="both", rel_floor=0.05, abs_floor=0.05
    ),
    "error_ratio": Signal(
        alert="ErrorRatioAnomaly", direction="up", rel_floor=0.25, abs_floor=0.002
    ),
    "latency_p95": Signal(alert="LatencyAnomaly", direction="up", rel_floor=0.05, abs_floor=0.002),
    "confidence": Signal(
        alert="ConfidenceAnomaly", direction="down", rel_floor=0.0, abs_floor=0.01
    ),
    "class_share": Signal(
        alert="ClassShareAnomaly", direction="both", rel_floor=0.0, abs_floor=0.02
    ),
}
# The thresholds every anomaly alert reads (specs_of).
THRESHOLD_KEYS = (
    "anomaly_window",
    "anomaly_season",
    "anomaly_seasons",
    "anomaly_k",
    "anomaly_for",
    "anomaly_keep_firing_for",
)


def band_specs(
    *,
    step_seconds: float,
    window_seconds: float,
    season_seconds: tuple[float, ...],
    k: float,
    for_seconds: float,
    keep_seconds: float = 0.0,
) -> dict[str, BandSpec]:
    """Each signal's band at a series resolution of ``step_seconds``."""

    def steps(seconds: float) -> int:
        return max(1, round(seconds / step_seconds))

    return {
        name: BandSpec(
            window=steps(window_seconds),
            seasons=tuple(steps(season) for season in season_seconds),
            k=k,
            rel_floor=s.rel_floor,
            abs_floor=s.abs_floor,
            for_steps=round(for_seconds / step_seconds),
            keep_steps=round(keep_seconds / step_seconds),
            direction=s.direction,
        )
        for name, s in SIGNALS.items()
    }


# A step a minute: the anomaly rules' evaluation interval and the in-process minute rows.
STEP_SECONDS = float(ANOMALY_STEP_SECONDS)


def specs_of(thresholds: Thresholds) -> dict[str, BandSpec]:
    """Each signal's band from the thresholds' ``anomaly_*`` keys (the rules, the in-process
    check and the dashboards use it)."""
    t = thresholds
    return band_specs(
        step_seconds=STEP_SECONDS,
        window_seconds=t.anomaly_window,
        season_seconds=tuple(t.anomaly_season * n for n in range(1, int(t.anomaly_seasons) + 1)),
        k=t.anomaly_k,
        for_seconds=t.anomaly_for,
        keep_seconds=t.anomaly_keep_firing_for,
    )


def default_specs() -> dict[str, BandSpec]:
    """Each signal's shipped band, as evaluated offline (benchmarks/eval_anomaly.py,
    docs/anomaly-detection.md): a one-hour window, the same hour one, two and three weeks
    back, k = 5, ``for`` 3 minutes, kept firing 15 minutes."""
    return specs_of(Thresholds())
