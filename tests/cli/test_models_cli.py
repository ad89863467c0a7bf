"""``nexus-ml train`` over an existing model, and ``nexus-ml models …``: gated, audited, live."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.helpers import KEYS, auth, save_candidate, write_wine_csv
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.config import Settings
from nexus_ml.ml.datasets import load_dataset
from nexus_ml.ml.history import read_history
from nexus_ml.ml.pointers import current_version, shadow_version

pytestmark = pytest.mark.usefixtures("one_openmp_thread")
PREDICT = "/api/v1/models/diagnostic/predict"
ACTOR = f"cli:{getpass.getuser()}"


def env_of(settings: Settings) -> dict[str, str]:
    """The CLI pointed at the very models and database the test service uses."""
    return {
        "ML_MODEL_PATH": str(settings.model_path),
        "ML_DATA_DIR": str(settings.data_dir),
        "ML_DATABASE_URL": settings.resolved_database_url,
        "ML_API_KEYS": ",".join(f"{s}:{k}" for s, k in KEYS.items()),
    }


def predict(client: TestClient) -> dict:
    data = load_dataset("diagnostic")
    row = dict(zip(data.feature_names, map(float, data.X[0]), strict=True))
    r = client.post(PREDICT, json={"features": row}, headers=auth("predict"))
    assert r.status_code == 200, r.text
    return r.json()


def audit(client: TestClient) -> list:
    return client.app.state.service.store.list_audit()  # type: ignore[attr-defined]


def test_wine_over_diagnostic_is_refused_and_the_live_model_keeps_serving(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    models = settings.model_path
    serving = predict(client)["version"]
    versions = sorted(p.name for p in (models / "diagnostic").iterdir() if p.is_dir())
    wine = write_wine_csv(tmp_path / "wine.csv")
    args = ["train", "--data", str(wine), "--target", "cultivar", "--name", "diagnostic"]
    result = CliRunner().invoke(app, args, env=env_of(settings))
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "incompatible with the champion" in message
    assert "features removed: mean_radius" in message and "and 22 more" in message
    assert "features added: alcohol" in message
    assert "classes benign, malignant → c0, c1, c2" in message
    assert "--replace-incompatible" in message
    # Nothing saved, nothing switched: the watcher finds the same CURRENT and clients still work.
    assert sorted(p.name for p in (models / "diagnostic").iterdir() if p.is_dir()) == versions
    assert current_version(models, "diagnostic") == serving
    client.app.state.service.models.refresh()  # type: ignore[attr-defined]
    assert predict(client)["version"] == serving
    assert [e for e in audit(client) if e.target == "diagnostic"] == []

    # Asked for by name, the breaking replacement happens and is on record as such.
    result = CliRunner().invoke(app, [*args, "--replace-incompatible"], env=env_of(settings))
    assert result.exit_code == 0, result.output
    new = current_version(models, "diagnostic")
    assert new != serving
    [entry] = [e for e in audit(client) if e.target == "diagnostic"]
    assert (entry.actor, entry.action) == (ACTOR, "breaking_replace")
    assert entry.details["before"] == serving and entry.details["after"] == new
    assert any("features removed" in d for d in entry.details["differences"])
    assert [(h.version, h.action, h.actor) for h in read_history(models, "diagnostic")] == [
        (serving, "in_force", ACTOR),  # so a rollback can return to it
        (new, "breaking_replace", ACTOR),
    ]


def test_models_promote_rollback_and_shadow_from_the_cli_are_audited(
    client: TestClient, settings: Settings
) -> None:
    models, env = settings.model_path, env_of(settings)
    champion = current_version(models, "diagnostic")
    candidate = save_candidate(models, "diagnostic")
    run = CliRunner().invoke

    listed = run(app, ["models", "versions", "diagnostic"], env=env)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].startswith(candidate) and " retired " in lines[0]
    assert lines[1].startswith(champion) and " champion " in lines[1]

    started = run(app, ["models", "shadow", "diagnostic", candidate], env=env)
    assert started.exit_code == 0, started.output
    assert shadow_version(models, "diagnostic") == candidate
    assert " challenger " in run(app, ["models", "list"], env=env).output

    assert run(app, ["models", "promote", "diagnostic", candidate], env=env).exit_code == 0
    assert current_version(models, "diagnostic") == candidate
    assert shadow_version(models, "diagnostic") is None  # the challenger won
    again = run(app, ["models", "promote", "diagnostic", candidate], env=env)
    assert again.exit_code == 0 and "nothing to do" in again.output

    assert run(app, ["models", "rollback", "diagnostic"], env=env).exit_code == 0
    assert current_version(models, "diagnostic") == champion
    # Back at the bundled champion, recorded as in force before the first promote: no further.
    refused = run(app, ["models", "rollback", "diagnostic"], env=env)
    assert refused.exit_code == 2
    assert "no previous champion" in refused.output

    trail = [(e.actor, e.action, e.details) for e in reversed(audit(client))]
    assert trail == [
        (ACTOR, "shadow_start", {"before": None, "after": candidate}),
        (ACTOR, "promote", {"before": champion, "after": candidate}),
        (ACTOR, "rollback", {"before": candidate, "after": champion}),
    ]
    # The service's watcher follows the files the CLI changed.
    client.app.state.service.models.refresh()  # type: ignore[attr-defined]
    assert predict(client)["version"] == champion


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "versions", "nope"], "unknown model"),
        (["models", "promote", "diagnostic", "20990101T000000Z-0123abcd"], "unknown version"),
        (["models", "promote", "diagnostic", "../../etc"], "unknown version"),
        (["models", "shadow", "diagnostic"], "give a VERSION to start, or --stop"),
    ],
)
def test_models_refusals_exit_2_and_change_nothing(
    client: TestClient, settings: Settings, args: list[str], message: str
) -> None:
    champion = current_version(settings.model_path, "diagnostic")
    result = CliRunner().invoke(app, args, env=env_of(settings))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert current_version(settings.model_path, "diagnostic") == champion
    assert audit(client) == []


def test_serve_refuses_a_bad_promotion_policy_file_before_starting(
    settings: Settings, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[models.diagnostic]\nmode = "whenever"\n')
    env = {**env_of(settings), "ML_PROMOTION_POLICY_FILE": str(policy)}
    result = CliRunner().invoke(app, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 2, result.output
    assert "promotion policy models.diagnostic.mode" in " ".join(result.output.split())
