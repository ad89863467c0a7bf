"""``nexus-ml seal``: format 1 bundles are checked in full, then sealed; bad ones are not."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import cli_env
from tests.ml.forge import new_version, set_metric
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.ml.bundle import MANIFEST_FILE, BundleError, load_bundle


@pytest.fixture
def env(model_dir: Path, tmp_path: Path) -> dict[str, str]:
    return cli_env(model_dir, tmp_path)


def test_seal_seals_good_format_1_bundles_and_refuses_bad_ones(
    model_dir: Path, env: dict[str, str]
) -> None:
    good = new_version(model_dir, "diagnostic", seal=False)
    bad = new_version(
        model_dir, "diabetes_risk", edit=set_metric("holdout_accuracy", 2.0), seal=False
    )
    with pytest.raises(BundleError, match="no manifest"):
        load_bundle(model_dir, "diagnostic")

    result = CliRunner().invoke(app, ["seal"], env=env)
    assert result.exit_code == 1, result.output
    assert f"diagnostic {good}: sealed" in result.output
    assert f"diabetes_risk {bad} refused (metadata)" in result.output
    assert "already sealed" in result.output  # the versions written with a manifest
    assert load_bundle(model_dir, "diagnostic").version == good
    assert not (model_dir / "diabetes_risk" / bad / MANIFEST_FILE).exists()

    again = CliRunner().invoke(app, ["seal", "diagnostic", "--version", good], env=env)
    assert again.exit_code == 0, again.output
    assert f"diagnostic {good}: already sealed" in again.output


def test_seal_of_an_unknown_model_fails(env: dict[str, str]) -> None:
    result = CliRunner().invoke(app, ["seal", "nope"], env=env)
    assert result.exit_code == 2
    assert "no model 'nope'" in result.output
