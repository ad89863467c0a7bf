"""docker-compose.monitoring.yml: valid, complete, and refusing to start without its secrets."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REQUIRED = {
    "POSTGRES_PASSWORD",
    "GF_SECURITY_ADMIN_PASSWORD",
    "DATABASE_URL",
    "ML_API_KEYS",
    "ALERTMANAGER_SECRETS_DIR",
}
PORTS = {
    "nexus-ml": "8001:8001",
    "prometheus": "9090:9090",
    "alertmanager": "9093:9093",
    "grafana": "3001:3000",
    "node-exporter": "9100:9100",
}
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|KEY|DATABASE_URL")
# The secrets folder is a bind mount: compose wants an absolute path, not an arbitrary string.
PATHS = {"ALERTMANAGER_SECRETS_DIR": "/run/nexus-ml-test-secrets"}


@pytest.fixture(scope="module")
def compose_file(deploy_dir: Path) -> Path:
    return deploy_dir / "docker-compose.monitoring.yml"


@pytest.fixture(scope="module")
def compose(compose_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(compose_file.read_text())
    return data


def _env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    env.update({name: PATHS.get(name, f"test-value-for-{name.lower()}") for name in REQUIRED})
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _config(tool: str, path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "-f", str(path), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


def test_every_secret_is_required_and_none_defaulted(compose_file: Path) -> None:
    lines = compose_file.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required == REQUIRED
    defaulted = set(re.findall(r"\$\{([A-Z0-9_]+):?-", text))
    assert not {name for name in defaulted if SECRETISH.search(name)}, defaulted


def test_config_succeeds_with_the_variables_set(
    compose_file: Path, require_tool: Callable[[str], str]
) -> None:
    tool = require_tool("docker-compose")
    result = _config(tool, compose_file, _env())
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    grafana_env = rendered["services"]["grafana"]["environment"]
    assert grafana_env["GF_SECURITY_ADMIN_PASSWORD"] == "test-value-for-gf_security_admin_password"


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_config_fails_naming_the_missing_variable(
    compose_file: Path, require_tool: Callable[[str], str], missing: str
) -> None:
    tool = require_tool("docker-compose")
    result = _config(tool, compose_file, _env(**{missing: None}))
    assert result.returncode != 0
    assert missing in result.stderr


def test_services_ports_healthchecks_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == set(PORTS) | {"postgres"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service.get("restart") == "unless-stopped", name
    for name, mapping in PORTS.items():
        assert mapping in services[name]["ports"], name
    assert "ports" not in services["postgres"]  # reachable by the service only
    named = set(compose["volumes"])
    used = {
        v.split(":", 1)[0]
        for s in services.values()
        for v in s.get("volumes", [])
        if not v.startswith(("./", "/", "${"))  # bind mounts are not named volumes
    }
    assert used == named


def test_service_is_built_here_and_runs_several_workers(
    compose: dict[str, Any], deploy_dir: Path
) -> None:
    service = compose["services"]["nexus-ml"]
    build = service["build"]
    assert (deploy_dir / build["context"] / build["dockerfile"]).is_file()
    env = service["environment"]
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    assert "/tmp" in service["tmpfs"]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_mounted_folders_are_the_generated_ones(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    volumes = services["alertmanager"]["volumes"]
    assert "./alertmanager:/etc/alertmanager:ro" in volumes
    # alertmanager.yml reads its secrets from files in this folder.
    secrets = [v for v in volumes if v.endswith(":/etc/alertmanager/secrets:ro")]
    assert len(secrets) == 1 and secrets[0].startswith("${ALERTMANAGER_SECRETS_DIR:?")


def test_dockerfile_is_slim_non_root_and_serves_with_workers(deploy_dir: Path) -> None:
    text = (deploy_dir / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.MULTILINE)
    assert "pip install --no-cache-dir ." in text
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and not user[-1].startswith(("root", "0")), user
    assert "nexus-ml serve" in text and "--workers" in text
    assert "PROMETHEUS_MULTIPROC_DIR" in text


def test_the_guide_password_appears_nowhere(deploy_dir: Path) -> None:
    guide_password = "nexus" + "123"  # spelled in two pieces so this file does not match itself
    root = deploy_dir.parent
    offenders = [
        str(path.relative_to(root))
        for folder in ("deploy", "src")
        for path in (root / folder).rglob("*")
        if path.is_file() and guide_password in path.read_text(errors="ignore")
    ]
    assert not offenders
