"""The monitoring views' reading of stored drift results."""

from __future__ import annotations

from nexus_ml.service.views.models import feature_drift


def test_a_feature_is_decided_only_in_a_decided_window() -> None:
    stored = {"scores": {"psi": 7.5}, "n": 2, "drifted": False, "decided": False}
    assert not feature_drift("age", stored, window_decided=True).decided
    assert not feature_drift("age", {**stored, "decided": True}, window_decided=False).decided
    assert feature_drift("age", {**stored, "decided": True}, window_decided=True).decided


def test_results_stored_before_the_flag_follow_their_window() -> None:
    old = {"scores": {"psi": 0.2}, "n": 500, "drifted": True}  # no "decided" key
    assert feature_drift("age", old, window_decided=True).decided
    assert not feature_drift("age", old, window_decided=False).decided
