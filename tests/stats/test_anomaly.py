"""Anomaly bands: known answers, the baselines' windows, floors, directions, the `for` run."""

from __future__ import annotations

import numpy as np
import pytest

from nexus_ml.stats.anomaly import (
    IQR_TO_SIGMA,
    BandSpec,
    anomalous,
    band_specs,
    bands,
    firing,
)


def spec(**kw: object) -> BandSpec:
    base: dict[str, object] = {
        "window": 20,
        "seasons": (),
        "k": 4.0,
        "rel_floor": 0.0,
        "abs_floor": 1e-9,
        "for_steps": 3,
        "direction": "both",
    }
    return BandSpec(**{**base, **kw})  # type: ignore[arg-type]


def test_the_trailing_band_is_the_windows_median_and_iqr_as_prometheus_computes_them() -> None:
    x = np.random.default_rng(1).normal(10, 2, 200)
    (b,) = bands(x, spec())
    for t in (19, 57, 199):
        w = x[t - 19 : t + 1]
        q1, med, q3 = np.quantile(w, [0.25, 0.5, 0.75])  # linear: Prometheus's rank φ(n-1)
        assert b.centre[t] == pytest.approx(med, abs=1e-12)
        assert b.spread[t] == pytest.approx((q3 - q1) / IQR_TO_SIGMA, abs=1e-12)
        assert b.score[t] == pytest.approx((x[t] - med) / ((q3 - q1) / IQR_TO_SIGMA))
    # Undecided until the window holds half its samples (the rules' count guard)...
    assert np.isnan(b.score[:9]).all() and not np.isnan(b.score[9:]).any()
    # ... and then made of the samples there are.
    assert b.centre[9] == pytest.approx(np.median(x[:10]), abs=1e-12)


def test_missing_samples_are_left_out_and_too_few_give_no_score() -> None:
    x = np.random.default_rng(9).normal(10, 2, 60)
    x[30:40] = np.nan  # half of the window ending at 40 is missing: still used
    (b,) = bands(x, spec())
    w = x[21:41]
    assert b.centre[40] == pytest.approx(np.median(w[~np.isnan(w)]), abs=1e-12)
    x[40] = np.nan  # eleven of twenty missing: no band, no score
    (b,) = bands(x, spec())
    assert np.isnan(b.centre[41:50]).all() and np.isnan(b.score[41:50]).all()
    assert not np.isnan(b.centre[50])  # the window 31..50 holds ten again


def test_a_seasonal_baseline_is_the_window_centred_one_season_earlier() -> None:
    x = np.random.default_rng(2).normal(0, 1, 400)
    day, week = bands(x, spec(seasons=(100, 300)))
    t = 350
    for band, season in ((day, 100), (week, 300)):
        end = t - season + 10  # offset (season - W/2): W/2 = 10 steps after the same moment
        assert band.centre[t] == pytest.approx(np.median(x[end - 19 : end + 1]), abs=1e-12)
    # Before a season of history, that baseline is the trailing window...
    trailing = np.median(x[150 - 19 : 151])
    assert week.centre[150] == pytest.approx(trailing, abs=1e-12)
    assert day.centre[150] == pytest.approx(np.median(x[60 - 19 + 0 : 61]), abs=1e-12)
    # ... until the window a season back holds half its samples: the first ten of the series.
    assert week.centre[298] == pytest.approx(np.median(x[279:299]), abs=1e-12)
    assert week.centre[299] == pytest.approx(np.median(x[:10]), abs=1e-12)


def _daily(n: int, rng: np.random.Generator, period: int = 96) -> np.ndarray:
    t = np.arange(n)
    return 100 * (1 + 0.5 * np.sin(2 * np.pi * t / period)) + rng.normal(0, 2, n)


def test_a_daily_pattern_with_noise_never_fires_and_a_level_shift_does_within_its_for() -> None:
    rng = np.random.default_rng(3)
    s = spec(window=12, seasons=(96,), k=5.0, rel_floor=0.02, for_steps=3)
    clean = _daily(96 * 6, rng)
    assert not firing(clean, s)[96:].any()
    shifted = clean.copy()
    shifted[400:430] *= 1.5
    fired = np.flatnonzero(firing(shifted, s))
    # `for` 3 steps: pending at the first step outside, firing three steps later (or soon after).
    assert fired.size and 400 + 3 <= fired[0] <= 400 + 5


def test_an_excursion_shorter_than_for_does_not_fire() -> None:
    x = np.full(100, 10.0) + np.random.default_rng(4).normal(0, 0.1, 100)
    x[60:63] = 50  # three steps outside; `for` is three steps after the first
    s = spec(rel_floor=0.01)
    assert anomalous(x, s)[60:63].all()
    assert not firing(x, s).any()
    x[60:64] = 50
    assert firing(x, s)[63] and not firing(x, s)[62]
    assert firing(x, spec(rel_floor=0.01, for_steps=0))[60]  # `for: 0s` fires at once


def test_direction_up_ignores_a_drop_and_down_ignores_a_rise() -> None:
    x = np.full(100, 10.0) + np.random.default_rng(5).normal(0, 0.1, 100)
    drop, rise = x.copy(), x.copy()
    drop[60:70] = 1.0
    rise[60:70] = 20.0
    assert not firing(drop, spec(direction="up", rel_floor=0.01)).any()
    assert firing(drop, spec(direction="down", rel_floor=0.01)).any()
    assert firing(rise, spec(direction="up", rel_floor=0.01)).any()
    assert not firing(rise, spec(direction="down", rel_floor=0.01)).any()


def test_floors_keep_a_quiet_series_from_alerting_on_its_first_small_change() -> None:
    errors = np.zeros(100)
    errors[50:60] = 0.001  # an error ratio of 0, then one error in a thousand
    assert not firing(errors, spec(abs_floor=0.002, direction="up")).any()
    # Without the floor the IQR of a constant window is 0: any change would be infinitely far.
    assert firing(errors, spec(abs_floor=1e-9, direction="up")).any()


def test_a_majority_of_baselines_on_one_side_is_needed() -> None:
    # An excursion is outvoted one and two seasons later: no echo of last week's incident.
    x = np.full(700, 10.0) + np.random.default_rng(6).normal(0, 0.1, 700)
    x[400:430] = 30.0
    s = spec(seasons=(100, 200, 300), rel_floor=0.01)
    fired = firing(x, s)
    assert fired[400:430].any()  # the excursion itself
    assert not fired[430:].any()  # its echoes 100, 200 and 300 steps later
    # Beyond k on opposite sides is no majority: one baseline high, one low, one normal.
    y = np.full(700, 10.0) + np.random.default_rng(7).normal(0, 0.1, 700)
    y[300:360] = 20.0  # what the 100-season baseline sees at 400..460
    y[100:160] = 0.0  # what the 300-season baseline sees
    assert not firing(y, s)[400:460].any()


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 3},
        {"seasons": (20,)},
        {"k": 0},
        {"for_steps": -1},
        {"abs_floor": -1},
    ],
)
def test_bad_specs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        spec(**bad)


def test_band_specs_convert_durations_to_steps() -> None:
    specs = band_specs(
        step_seconds=60, window_seconds=3600, season_seconds=(86400,), k=5, for_seconds=180
    )
    assert set(specs) == {
        "request_rate",
        "predictions",
        "error_ratio",
        "latency_p95",
        "confidence",
        "class_share",
    }
    s = specs["error_ratio"]
    assert (s.window, s.seasons, s.for_steps, s.direction) == (60, (1440,), 3, "up")


def test_keep_steps_hold_a_firing_alert_past_a_brief_return_inside() -> None:
    x = np.full(120, 10.0) + np.random.default_rng(8).normal(0, 0.1, 120)
    x[60:66] = 50
    x[66] = 10.0  # one step back inside
    x[67:71] = 50  # long enough to fire again on its own (four steps outside)
    # A window long enough that the excursion stays under its upper quartile.
    plain = firing(x, spec(window=40, rel_floor=0.01))
    held = firing(x, spec(window=40, rel_floor=0.01, keep_steps=5))
    assert plain[65] and not plain[66]
    assert held[66] and held[70 + 5] and not held[70 + 6]  # as keep_firing_for: 5 steps
    # One episode instead of two.
    assert np.sum(held[1:] & ~held[:-1]) == 1 and np.sum(plain[1:] & ~plain[:-1]) == 2


def test_latest_equals_the_whole_series_at_its_last_step() -> None:
    from nexus_ml.stats.anomaly import latest

    rng = np.random.default_rng(10)
    s = spec(window=12, seasons=(96, 192), k=4.0, rel_floor=0.02, keep_steps=5)
    x = _daily(96 * 4, rng)
    x[300:340] *= 1.6
    whole = firing(x, s)
    assert whole.any() and not whole.all()
    for end in (310, 330, 341, 344, 346, 360, 384):  # before, during, held by keep, after
        last = latest(x[:end], s)
        assert last.firing == whole[end - 1], end
        assert last.anomalous == anomalous(x[:end], s)[end - 1], end
        full = bands(x[:end], s)
        for got, want in zip(last.bands, full, strict=True):
            assert got.score[0] == pytest.approx(want.score[-1], abs=1e-12)
