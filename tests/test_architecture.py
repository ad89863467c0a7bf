"""The package boundaries of docs/architecture.md, checked on every run.

The import-linter contracts in pyproject.toml state them statically; the
subprocess test below proves the most important one at run time: building and
starting the service loads no renderer and no dashboard SDK.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A contract removed from pyproject.toml would silently stop guarding its boundary.
REQUIRED_CONTRACTS = {
    "Layers: cli -> {api | render} -> service -> ml -> {stats | monitoring | storage} "
    "-> {config | thresholds}",
    "ml imports neither monitoring nor storage",
    "api never imports sqlalchemy, nexus_ml.storage.models or nexus_ml.storage.db",
    "No import cycles between sibling modules",
    "Renderers (files for other systems) are never imported by the running service",
    "Nothing outside api imports the web framework",
    "storage knows neither Prometheus nor scikit-learn",
    "ml is pure: no Prometheus, no database",
    "stats: arrays in, numbers out (no Prometheus, no database, no model code)",
}


def _contracts() -> list[dict[str, object]]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return list(tomllib.load(fh)["tool"]["importlinter"]["contracts"])


def test_required_contracts_are_declared() -> None:
    names = {str(c["name"]) for c in _contracts()}
    assert names >= REQUIRED_CONTRACTS, REQUIRED_CONTRACTS - names
    assert any(c["type"] == "layers" for c in _contracts())


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout


def test_running_service_imports_no_renderer(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from nexus_ml.api.app import create_app\n"
        "from nexus_ml.config import Settings\n"
        f"create_app(Settings(model_path={str(tmp_path / 'models')!r},"
        f" data_dir={str(tmp_path / 'data')!r}))\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('nexus_ml.render',"
        " 'grafana_foundation_sdk')))\n"
        "print(len(sys.modules)); print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    n_modules, bad = done.stdout.strip().splitlines()[-2:]
    assert int(n_modules) > 100  # the app really was built
    assert bad == "[]"
