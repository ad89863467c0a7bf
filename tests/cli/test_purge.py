"""``nexus-ml purge``: durations, the minimum age, what it prints, the audit entry."""

from __future__ import annotations

import getpass
import json
from datetime import timedelta
from pathlib import Path

import pytest
from tests.helpers import aged_record, cli_env
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.cli.purge import parse_duration
from nexus_ml.storage import PredictionRecord, Store, make_engine, migrate


def _store(env: dict[str, str]) -> Store:
    store = Store(make_engine(env["ML_DATABASE_URL"]))
    migrate(store.engine)
    return store


def _record(days_ago: float) -> PredictionRecord:
    return aged_record(days_ago)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path / "models", tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"), [("30d", timedelta(days=30)), ("12h", timedelta(hours=12))]
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "-3d", "1.5d", "30m", "30 days", "1e3d"])
def test_a_bad_duration_is_refused_with_exit_2_and_nothing_purged(
    env: dict[str, str], text: str
) -> None:
    store = _store(env)
    store.insert_predictions([_record(400)])
    r = CliRunner().invoke(app, ["purge", "--older-than", text], env=env)
    assert r.exit_code == 2, r.output
    assert "--older-than" in r.output
    assert store.count_predictions() == 1


def test_younger_than_the_accuracy_window_needs_force(env: dict[str, str]) -> None:
    store = _store(env)
    store.insert_predictions([_record(3), _record(0.5)])
    refused = CliRunner().invoke(app, ["purge", "--older-than", "2d"], env=env)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert store.count_predictions() == 2
    forced = CliRunner().invoke(app, ["purge", "--older-than", "2d", "--force", "--json"], env=env)
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout.strip().splitlines()[-1])["result"]["predictions"] == 1
    assert store.count_predictions() == 1


def test_purge_prints_counts_and_is_audited_as_the_os_user(env: dict[str, str]) -> None:
    store = _store(env)
    old = _record(200)
    store.insert_predictions([old, _record(10)])
    store.add_feedback(old.id, "healthy")
    r = CliRunner().invoke(app, ["purge"], env=env)  # ML_RETENTION_DAYS default: 180
    assert r.exit_code == 0, r.output
    assert "predictions" in r.stdout and "feedback" in r.stdout
    assert store.count_predictions() == 1
    (entry,) = store.list_audit(action="purge")
    assert entry.actor == f"cli:{getpass.getuser()}"
    assert entry.details is not None
    assert (entry.details["predictions"], entry.details["feedback"]) == (1, 1)


def test_retention_zero_purges_nothing_without_older_than(env: dict[str, str]) -> None:
    store = _store(env)
    store.insert_predictions([_record(4000)])
    r = CliRunner().invoke(app, ["purge"], env={**env, "ML_RETENTION_DAYS": "0"})
    assert r.exit_code == 0 and "kept forever" in r.output
    assert store.count_predictions() == 1
