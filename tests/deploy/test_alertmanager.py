"""Alertmanager config: amtool check-config, routing per severity, no secret inline."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from nexus_ml.render.alertmanager_config import (
    BUSINESS,
    PAGER,
    RECEIVERS,
    TICKETS,
    render_alertmanager_config,
    render_alertmanager_config_yaml,
)

pytestmark = pytest.mark.stack
ROUTES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "routes_test.yml"
ROUTES = [(c["labels"], c["receiver"]) for c in yaml.safe_load(ROUTES_FILE.read_text())["cases"]]


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(params=["checked-in", "webhook-override"])
def config_file(request: pytest.FixtureRequest, tmp_path: Path, deploy_dir: Path) -> Path:
    if request.param == "checked-in":
        return deploy_dir / "alertmanager" / "alertmanager.yml"
    path = tmp_path / "alertmanager.yml"
    path.write_text(
        render_alertmanager_config_yaml(
            webhook_url_override="http://127.0.0.1:18080/hook", fast=True
        )
    )
    return path


def test_route_cases_cover_every_severity() -> None:
    routed = {labels.get("severity"): receiver for labels, receiver in ROUTES}
    assert {s: routed[s] for s in RECEIVERS} == RECEIVERS


def test_checked_in_file_is_current(deploy_dir: Path) -> None:
    text = (deploy_dir / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    assert text == render_alertmanager_config_yaml()


def test_amtool_check_config(config_file: Path, require_tool: Callable[[str], str]) -> None:
    result = _amtool(require_tool("amtool"), "check-config", str(config_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receiver"), ROUTES, ids=lambda v: str(v))
def test_routes_reach_the_intended_receiver(
    config_file: Path, labels: dict[str, str], receiver: str, require_tool: Callable[[str], str]
) -> None:
    pairs = [f"{k}={v}" for k, v in labels.items()]
    result = _amtool(
        require_tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={config_file}",
        f"--verify.receivers={receiver}",
        *pairs,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_receivers_per_severity_use_the_intended_channels() -> None:
    receivers = {r["name"]: r for r in render_alertmanager_config()["receivers"]}
    assert set(receivers[PAGER]) == {"name", "webhook_configs", "email_configs", "slack_configs"}
    assert set(receivers[TICKETS]) == {"name", "slack_configs"}
    assert set(receivers[BUSINESS]) == {"name", "email_configs"}


def test_critical_routes_are_faster() -> None:
    route = render_alertmanager_config()["route"]
    critical = next(r for r in route["routes"] if r["matchers"] == ['severity="critical"'])
    assert route["group_by"] == ["alertname", "model", "severity"]
    assert critical["group_wait"] < route["group_wait"]  # "10s" < "30s"
    assert critical["repeat_interval"] == "1h" and route["repeat_interval"] == "4h"


def test_inhibitions() -> None:
    rules = render_alertmanager_config()["inhibit_rules"]
    cpu = next(r for r in rules if r["source_matchers"] == ['alertname="CriticalCPUUsage"'])
    assert cpu["target_matchers"] == ['alertname="HighCPUUsage"']
    assert "instance" in cpu["equal"]
    down = next(r for r in rules if r["source_matchers"] == ['alertname="MLServiceDown"'])
    assert down["target_matchers"] == ['alertname!="MLServiceDown"']
    assert down["equal"] == ["job", "instance"]


def _keys(node: object) -> list[str]:
    if isinstance(node, dict):
        return [k for k, v in node.items() for k in (k, *_keys(v))]
    if isinstance(node, list):
        return [k for item in node for k in _keys(item)]
    return []


def test_secrets_are_files_never_values(deploy_dir: Path) -> None:
    text = (deploy_dir / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    keys = set(_keys(yaml.safe_load(text)))
    inline = {
        "smtp_auth_password",
        "slack_api_url",
        "api_url",
        "auth_password",
        "credentials",
        "password",
        "auth_secret",
        "bearer_token",
    }
    assert not keys & inline, keys & inline
    assert {"smtp_auth_password_file", "slack_api_url_file", "credentials_file"} <= keys
    assert "hooks.slack.com" not in text
    assert "nexus123" not in text


def test_webhook_override_points_every_receiver_at_it() -> None:
    config = render_alertmanager_config(webhook_url_override="http://127.0.0.1:9/x")
    assert "global" not in config
    for receiver in config["receivers"]:
        assert receiver["webhook_configs"] == [
            {"url": "http://127.0.0.1:9/x", "send_resolved": True}
        ]
        assert set(receiver) == {"name", "webhook_configs"}
