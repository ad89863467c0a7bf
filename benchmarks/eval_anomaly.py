"""Offline evaluation of the anomaly bands (stats/anomaly.py) on seeded synthetic series.

Question: with the shipped band specs, what share of injected anomalies (level shifts, spikes,
slow drifts) is detected, and how many false alarms come per simulated week of normal traffic
with a daily and a weekly pattern?

Each run simulates five weeks at one step a minute; the first week is history only (an
hour-of-week baseline needs a week), the next four are scored — the first two of them with
fewer weeks of history than baselines (the missing ones are the trailing window), as a new
deployment has. Per signal and scored week:
two level shifts (2 h), two spikes (5 min), one slow drift (a ramp over 6 h, held 2 h), in the
direction that signal alerts on. An anomaly counts as detected when the alert fires between its
start and 15 minutes after its end; a false alarm is an alert that starts anywhere else.

    .venv/bin/python benchmarks/eval_anomaly.py [--seeds 5]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nexus_ml.stats import anomaly
from nexus_ml.stats.anomaly import BandSpec, band_specs, firing
from nexus_ml.thresholds import Thresholds

MINUTES_PER_WEEK = 7 * 24 * 60
WEEKS = 5
GRACE = 15


@dataclass(frozen=True)
class Anomaly:
    kind: str
    start: int
    length: int


def _pattern(n: int) -> np.ndarray:
    """Traffic shape: a daily wave (busy days, quiet nights) and quieter weekends."""
    t = np.arange(n)
    day = 1 + 0.5 * np.sin(2 * np.pi * (t % 1440) / 1440 - np.pi / 2)
    # Days 5 and 6 of each week are a weekend at 60 %, eased in and out over two hours.
    week_minute = t % (7 * 1440)

    def ease(edge: int) -> np.ndarray:
        return 1 / (1 + np.exp(-(week_minute - edge) / 30))

    # (the last term is the end of the previous week's weekend, across the week boundary)
    weekend = ease(5 * 1440) - ease(7 * 1440) + 1 - ease(0)
    return day * (1 - 0.4 * np.clip(weekend, 0, 1))


def _counts(rng: np.random.Generator, n: int) -> np.ndarray:
    """Requests per minute: 20/s on average, the pattern, Poisson noise."""
    return rng.poisson(1200 * _pattern(n)).astype(np.float64)


def _normal(signal: str, rng: np.random.Generator, n: int) -> np.ndarray:
    counts = _counts(rng, n)
    if signal == "request_rate":
        return counts / 60
    if signal == "predictions":
        return rng.binomial(counts.astype(np.int64), 0.4) / 60
    if signal == "error_ratio":
        return rng.binomial(counts.astype(np.int64), 0.005) / np.maximum(counts, 1)
    if signal == "latency_p95":
        load = _pattern(n)
        return 0.05 * (1 + 0.2 * load) * rng.lognormal(0, 0.05, n)
    if signal == "confidence":
        return 0.85 + rng.normal(0, 0.01, n)
    if signal == "class_share":
        return rng.binomial(counts.astype(np.int64), 0.3) / np.maximum(counts, 1)
    raise ValueError(signal)


# How each kind of anomaly changes a signal's values (in its alerting direction).
Effect = Callable[[np.ndarray, float], np.ndarray]
EFFECTS: dict[str, dict[str, Effect]] = {
    "request_rate": {
        "shift": lambda v, f: v * (1 - 0.4 * f),
        "spike": lambda v, f: v * (1 + 1.5 * f),
    },
    "predictions": {
        "shift": lambda v, f: v * (1 + 0.4 * f),
        "spike": lambda v, f: v * (1 - 0.6 * f),
    },
    "error_ratio": {
        "shift": lambda v, f: v + 0.02 * f,
        "spike": lambda v, f: v + 0.1 * f,
    },
    "latency_p95": {
        "shift": lambda v, f: v * (1 + 0.6 * f),
        "spike": lambda v, f: v * (1 + 2.0 * f),
    },
    "confidence": {
        "shift": lambda v, f: v - 0.08 * f,
        "spike": lambda v, f: v - 0.2 * f,
    },
    "class_share": {
        "shift": lambda v, f: v + 0.12 * f,
        "spike": lambda v, f: v + 0.3 * f,
    },
}


def _inject(
    signal: str, x: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[Anomaly]]:
    x = x.copy()
    effects = EFFECTS[signal]
    anomalies: list[Anomaly] = []
    for week in range(1, WEEKS):
        base = week * MINUTES_PER_WEEK
        # Five anomalies spread over the week, never overlapping (a day apart at least).
        starts = base + np.sort(rng.choice(np.arange(6), size=5, replace=False)) * 1440
        starts += rng.integers(60, 1440 - 600, size=5)
        plan = [("shift", 120), ("shift", 120), ("spike", 5), ("spike", 5), ("drift", 480)]
        # Independent from week to week: an anomaly on the same weekday and hour every week
        # would be, for a seasonal detector, the pattern itself.
        order = rng.permutation(len(plan))
        for (kind, length), s in zip([plan[i] for i in order], starts, strict=True):
            s = int(s)
            span = slice(s, s + length)
            if kind == "drift":
                # A ramp to the full shift over 6 h, then held for 2 h.
                f = np.minimum(np.arange(length) / 360, 1.0)
                x[span] = effects["shift"](x[span], f)
            else:
                x[span] = effects[kind](x[span], 1.0)
            anomalies.append(Anomaly(kind, s, length))
    return x, anomalies


def evaluate(signal: str, spec: BandSpec, seed: int) -> tuple[dict[str, list[bool]], int]:
    """Detected flags per kind, and false alarms, over the scored weeks of one run."""
    rng = np.random.default_rng(seed)
    n = WEEKS * MINUTES_PER_WEEK
    x, anomalies = _inject(signal, _normal(signal, rng, n), rng)
    fire = firing(x, spec)
    expected = np.zeros(n, dtype=bool)
    detected: dict[str, list[bool]] = {"shift": [], "spike": [], "drift": []}
    for a in anomalies:
        span = slice(a.start, a.start + a.length + GRACE)
        expected[span] = True
        detected[a.kind].append(bool(fire[span].any()))
    onsets = np.flatnonzero(fire & ~np.concatenate(([False], fire[:-1])))
    scored = onsets >= MINUTES_PER_WEEK
    false_alarms = int(np.sum(~expected[onsets[scored]]))
    return detected, false_alarms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    # Defaults: the shipped bands (the anomaly_* thresholds' defaults).
    shipped = Thresholds()
    parser.add_argument("--k", type=float, default=shipped.anomaly_k)
    parser.add_argument("--for-minutes", type=float, default=shipped.anomaly_for / 60)
    parser.add_argument("--keep-minutes", type=float, default=shipped.anomaly_keep_firing_for / 60)
    n = int(shipped.anomaly_seasons)
    seasons = ",".join(f"{shipped.anomaly_season * i / 86400:g}" for i in range(1, n + 1))
    parser.add_argument("--seasons-days", default=seasons, help="the baselines' seasons")
    args = parser.parse_args()
    specs = band_specs(
        step_seconds=anomaly.STEP_SECONDS,
        window_seconds=shipped.anomaly_window,
        season_seconds=tuple(float(d) * 86400 for d in args.seasons_days.split(",")),
        k=args.k,
        for_seconds=args.for_minutes * 60,
        keep_seconds=args.keep_minutes * 60,
    )
    weeks = args.seeds * (WEEKS - 1)
    print(f"{args.seeds} seeds x {WEEKS - 1} scored weeks = {weeks} simulated weeks per signal")
    print("| signal | shifts | spikes | slow drifts | all detected | false alarms / week |")
    print("|---|---|---|---|---|---|")
    total_hit = total = total_false = 0
    for signal, spec in specs.items():
        kinds: dict[str, list[bool]] = {"shift": [], "spike": [], "drift": []}
        false_alarms = 0
        for seed in range(args.seeds):
            d, f = evaluate(signal, spec, seed)
            for k, v in d.items():
                kinds[k].extend(v)
            false_alarms += f
        hits = sum(sum(v) for v in kinds.values())
        count = sum(len(v) for v in kinds.values())
        total_hit, total, total_false = total_hit + hits, total + count, total_false + false_alarms
        cells = " | ".join(f"{sum(v)}/{len(v)}" for v in kinds.values())
        print(
            f"| {signal} | {cells} | {hits / count:.0%} | {false_alarms / weeks:.2f} |",
            flush=True,
        )
    print(f"| all | | | | {total_hit / total:.1%} | {total_false / (weeks * len(specs)):.2f} |")


if __name__ == "__main__":
    main()
