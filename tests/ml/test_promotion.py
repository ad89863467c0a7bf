"""Promotion policy: the file, and candidate-versus-champion criteria on the same rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_ml.ml.promotion import (
    MIN_SEGMENT_CASES,
    Policy,
    PolicyError,
    Scores,
    accepted,
    compare,
    load_policies,
)


def test_no_file_means_every_model_manual(tmp_path: Path) -> None:
    assert load_policies(None).for_model("diagnostic").mode == "manual"
    path = tmp_path / "p.toml"
    path.write_text('[default]\nmode = "auto"\n[models.ward]\nmode = "manual"\n')
    book = load_policies(path)
    assert book.for_model("diagnostic").mode == "auto"
    assert book.for_model("ward").mode == "manual"
    assert book.for_model("diagnostic").recall_tolerance == 0.02


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[default]\nmode = "sometimes"\n', "promotion policy default.mode"),
        ("[models.ward]\naccuracy_tolerance = 2\n", "promotion policy models.ward.accuracy"),
        ("[models.ward]\ntolerance = 0.1\n", "promotion policy models.ward.tolerance"),
        ("[default\n", "not valid TOML"),
    ],
)
def test_a_bad_policy_file_is_refused_by_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message.replace(".", r"\.")):
        load_policies(path)
    with pytest.raises(PolicyError, match="unreadable"):
        load_policies(tmp_path / "absent.toml")


def scores(accuracy: float, recall: float, seg: float, n: int = 10) -> Scores:
    return Scores(
        accuracy=accuracy,
        recall={"no": 0.9, "yes": recall},
        segments={"sex=f": {"no": (0.9, n), "yes": (seg, n)}},
    )


def test_the_candidate_must_be_no_worse_than_the_champion_minus_each_tolerance() -> None:
    policy = Policy(
        mode="auto", accuracy_tolerance=0.01, recall_tolerance=0.02, segment_recall_tolerance=0.05
    )
    champion = scores(0.90, 0.80, 0.80)
    within = compare(scores(0.89, 0.78, 0.75), champion, policy, positive_class="yes")
    assert [c.metric for c in within] == ["accuracy", "recall[yes]", "recall[yes]@sex=f"]
    assert accepted(within)
    for worse in (scores(0.88, 0.80, 0.80), scores(0.90, 0.77, 0.80), scores(0.9, 0.8, 0.74)):
        criteria = compare(worse, champion, policy, positive_class="yes")
        assert not accepted(criteria)
        assert [c.passed for c in criteria].count(False) == 1


def test_a_segment_with_too_few_cases_is_reported_not_judged() -> None:
    policy = Policy(mode="auto")
    few = MIN_SEGMENT_CASES - 1
    criteria = compare(
        scores(0.9, 0.8, 0.0, n=few), scores(0.9, 0.8, 1.0), policy, positive_class="yes"
    )
    assert criteria[-1].passed is None and accepted(criteria)


def test_multiclass_models_judge_every_class_recall() -> None:
    cand = Scores(accuracy=0.9, recall={"a": 0.9, "b": 0.5, "c": 0.9}, segments={})
    champ = Scores(accuracy=0.9, recall={"a": 0.9, "b": 0.9, "c": 0.9}, segments={})
    criteria = compare(cand, champ, Policy(mode="auto"), positive_class=None)
    assert [c.metric for c in criteria] == ["accuracy", "recall[a]", "recall[b]", "recall[c]"]
    assert not accepted(criteria)


def test_scoring_the_holdout_again_gives_the_training_metrics(trained: dict) -> None:
    from nexus_ml.ml.promotion import score_holdout

    result = trained["diagnostic"]
    scores = score_holdout(
        result.pipeline,
        result.holdout,
        result.operating_point,
        feature_names=result.schema.names,
        segments=None,
    )
    assert scores.accuracy == result.metrics["holdout_accuracy"]
    recall = result.baseline["classes"]["malignant"]["recall"]["value"]
    assert scores.recall["malignant"] == pytest.approx(recall)
    same = compare(
        scores, scores, Policy(mode="auto", accuracy_tolerance=0.0), positive_class="malignant"
    )
    assert accepted(same) and all(c.passed for c in same)
