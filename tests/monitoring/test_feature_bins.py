"""Per-bin input counters: the profile's bins, exact counts, missing and unseen bins, flushing."""

from __future__ import annotations

from collections import Counter as Tally

import numpy as np
import pytest

from nexus_ml.ml.profile import build_profile
from nexus_ml.monitoring.feature_bins import MISSING, UNSEEN, BinCounter, feature_bins
from nexus_ml.stats.drift_methods import bin_counts_sorted


def _profile() -> dict[str, object]:
    rng = np.random.default_rng(3)
    X = np.empty((2000, 3), dtype=object)
    X[:, 0] = rng.normal(10.0, 2.0, 2000)
    X[:, 1] = rng.choice(["a", "b", "c"], 2000, p=[0.5, 0.3, 0.2])
    X[:, 2] = rng.integers(0, 5, 2000).astype(float)
    X[:7, 0] = None  # seven missing values in the reference
    return build_profile(X, ["x", "colour", "n"], categorical=["colour"])


class Recorder:
    """Counter children that remember what they were given."""

    def __init__(self) -> None:
        self.counts: Tally[tuple[str, str]] = Tally()

    def children(self, bins: list) -> list[list]:  # type: ignore[type-arg]
        def inc(feature: str, label: str):  # type: ignore[no-untyped-def]
            return lambda amount: self.counts.update({(feature, label): amount})

        return [[inc(fb.feature, b) for b in fb.labels] for fb in bins]


def test_labels_are_the_profiles_bins_plus_missing_and_unseen() -> None:
    profile = _profile()
    bins = {fb.feature: fb for fb in feature_bins(profile, ["x", "colour", "n", "absent"])}
    assert set(bins) == {"x", "colour", "n"}  # a feature the profile lacks gets none
    x = profile["features"]["x"]  # type: ignore[index]
    assert bins["x"].labels == (*map(str, range(len(x["bin_edges"]) + 1)), MISSING)
    assert bins["colour"].labels == ("0", "1", "2", UNSEEN, MISSING)
    # Reference shares: the profile's counts, missing included, over every reference row.
    assert sum(bins["x"].reference) == pytest.approx(1.0)
    assert bins["x"].reference[-1] == pytest.approx(7 / 2000)
    assert bins["colour"].reference[3] == 0.0  # nothing unseen in the reference
    assert len(bins["x"].widths) == len(x["bin_edges"]) - 1
    assert bins["x"].widths[0] == pytest.approx(np.diff(x["bin_edges"])[0] / x["std"])


def test_counts_match_the_drift_jobs_binning_exactly() -> None:
    profile = _profile()
    bins = feature_bins(profile, ["x", "colour", "n"])
    rec = Recorder()
    counter = BinCounter(bins, rec.children(bins), hold=10_000)
    rng = np.random.default_rng(9)
    rows = np.empty((500, 3), dtype=object)
    rows[:, 0] = rng.normal(11.0, 3.0, 500)
    rows[:, 1] = rng.choice(["a", "b", "zzz"], 500)
    rows[:, 2] = rng.integers(0, 5, 500).astype(float)
    rows[::50, 0] = None
    rows[::70, 1] = None
    for row in rows[:200]:
        counter.add(row)
    counter.add_many(rows[200:])
    assert counter.waiting == 500 and not rec.counts  # nothing counted before the flush
    counter.flush()
    assert counter.waiting == 0
    for fb in bins:
        assert sum(v for (f, _), v in rec.counts.items() if f == fb.feature) == 500
    # Numbers: the same bins as the drift job's (edges[i-1] < x <= edges[i]).
    xs = np.sort(np.array([v for v in rows[:, 0] if v is not None], dtype=float))
    edges = np.asarray(profile["features"]["x"]["bin_edges"])  # type: ignore[index]
    expected = bin_counts_sorted(xs, edges)
    got = [rec.counts[("x", str(i))] for i in range(edges.size + 1)]
    assert got == expected.tolist()
    assert rec.counts[("x", MISSING)] == 10
    # Categories: by index, unseen and missing in their own bins.
    colours = [v for v in rows[:, 1]]
    assert rec.counts[("colour", "0")] == colours.count("a")
    assert rec.counts[("colour", UNSEEN)] == colours.count("zzz")
    assert rec.counts[("colour", MISSING)] == colours.count(None)
    assert ("colour", "2") not in rec.counts  # never sent: never incremented


def test_a_value_on_an_edge_falls_in_the_lower_bin() -> None:
    profile = _profile()
    bins = feature_bins(profile, ["x", "colour", "n"])
    rec = Recorder()
    counter = BinCounter(bins, rec.children(bins), hold=1)  # hold 1: counted at once
    edge = profile["features"]["x"]["bin_edges"][2]  # type: ignore[index]
    counter.add(np.array([edge, "b", 1.0], dtype=object))
    assert rec.counts[("x", "2")] == 1 and rec.counts[("colour", "1")] == 1


def test_a_float_row_of_a_numeric_schema_is_binned_without_conversion() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(0, 1, (1000, 2))
    bins = feature_bins(build_profile(X, ["a", "b"]), ["a", "b"])
    rec = Recorder()
    counter = BinCounter(bins, rec.children(bins), hold=3)
    for row in X[:7]:
        counter.add(row)
    assert counter.waiting == 1  # two blocks of three counted on the way
    counter.flush()
    assert sum(v for (f, _), v in rec.counts.items() if f == "a") == 7


def test_a_model_without_profile_counts_nothing() -> None:
    counter = BinCounter(feature_bins(None, ["a"]), [], hold=1)
    counter.add(np.array([1.0]))
    assert counter.waiting == 0
