"""Alertmanager config: amtool check-config, routing per severity, no secret inline."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from nexus_ml.cli import app
from nexus_ml.config import AlertReceiverSettings
from nexus_ml.render.alertmanager_config import (
    BUSINESS,
    LOCAL_WEBHOOK_URL,
    PAGER,
    RECEIVERS,
    TICKETS,
    Receivers,
    render_alertmanager_config,
    render_alertmanager_config_yaml,
)

pytestmark = pytest.mark.stack
ROUTES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "routes_test.yml"
ROUTES = [(c["labels"], c["receiver"]) for c in yaml.safe_load(ROUTES_FILE.read_text())["cases"]]


def _amtool(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, timeout=60, check=False)


# Every shape of receivers `render` can produce; each must pass amtool and route the same way.
FULL = Receivers(
    webhook_url="https://bridge.hospital.internal/alertmanager",
    webhook_token_file="/run/secrets/webhook_token",
    smtp_smarthost="smtp.hospital.internal:587",
    smtp_from="alertmanager@hospital.internal",
    smtp_auth_username="alertmanager",
    smtp_auth_password_file="/run/secrets/smtp_password",
    email_oncall="ml-oncall@hospital.internal",
    email_business="ml-business@hospital.internal",
    slack_api_url_file="/run/secrets/slack_api_url",
)
VARIANTS = {
    "full": FULL,
    "webhook-only": Receivers(
        webhook_url="https://bridge.hospital.internal/am", webhook_token_file="/run/secrets/t"
    ),
    "mail-without-auth": Receivers(
        smtp_smarthost="mail.hospital.internal:25",
        smtp_from="am@hospital.internal",
        email_oncall="oncall@hospital.internal",
        smtp_require_tls=False,
    ),
    "slack-only": Receivers(slack_api_url_file="/run/secrets/slack_api_url"),
}


@pytest.fixture(params=["checked-in", "fast", *VARIANTS])
def config_file(request: pytest.FixtureRequest, tmp_path: Path, deploy_dir: Path) -> Path:
    if request.param == "checked-in":
        return deploy_dir / "alertmanager" / "alertmanager.yml"
    path = tmp_path / "alertmanager.yml"
    if request.param == "fast":
        receivers = Receivers(webhook_url="http://127.0.0.1:18080/hook")
        path.write_text(render_alertmanager_config_yaml(receivers, fast=True))
    else:
        path.write_text(render_alertmanager_config_yaml(VARIANTS[request.param]))
    return path


def test_route_cases_cover_every_severity() -> None:
    routed = {labels.get("severity"): receiver for labels, receiver in ROUTES}
    assert {s: routed[s] for s in RECEIVERS} == RECEIVERS


def test_checked_in_file_is_current(deploy_dir: Path) -> None:  # the local receiver
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
    receivers = {r["name"]: r for r in render_alertmanager_config(FULL)["receivers"]}
    assert set(receivers[PAGER]) == {"name", "webhook_configs", "email_configs", "slack_configs"}
    assert set(receivers[TICKETS]) == {"name", "slack_configs"}
    assert set(receivers[BUSINESS]) == {"name", "email_configs"}
    assert receivers[PAGER]["email_configs"][0]["to"] == "ml-oncall@hospital.internal"
    assert receivers[BUSINESS]["email_configs"][0]["to"] == "ml-business@hospital.internal"
    assert receivers[PAGER]["slack_configs"][0]["channel"] == "#ml-critical"
    assert receivers[TICKETS]["slack_configs"][0]["channel"] == "#ml-alerts"


def test_a_severity_without_its_channel_falls_back_to_the_webhook() -> None:
    # Mail only for the on-call: warnings (no Slack) and info (no business address) are
    # delivered to the webhook rather than to nothing.
    receivers = Receivers(
        webhook_url="https://bridge.hospital.internal/am",
        smtp_smarthost="mail.hospital.internal:25",
        smtp_from="am@hospital.internal",
        email_oncall="oncall@hospital.internal",
    )
    config = render_alertmanager_config(receivers)
    by_name = {r["name"]: r for r in config["receivers"]}
    hook = [{"url": "https://bridge.hospital.internal/am", "send_resolved": True}]
    assert by_name[PAGER]["webhook_configs"] == hook
    assert by_name[TICKETS] == {"name": TICKETS, "webhook_configs": hook}
    assert by_name[BUSINESS] == {"name": BUSINESS, "webhook_configs": hook}
    assert "slack_api_url_file" not in config["global"]
    assert "smtp_auth_username" not in config["global"]  # no login configured, none rendered


def test_defaults_deliver_to_the_local_receiver_and_name_no_placeholder(deploy_dir: Path) -> None:
    text = (deploy_dir / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    assert "example.org" not in text and "example.com" not in text
    config = yaml.safe_load(text)
    assert "global" not in config  # no mail host, no Slack: nothing that pretends to deliver
    for receiver in config["receivers"]:
        assert receiver == {
            "name": receiver["name"],
            "webhook_configs": [{"url": LOCAL_WEBHOOK_URL, "send_resolved": True}],
        }
    assert LOCAL_WEBHOOK_URL == "http://127.0.0.1:5001/"


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


def test_secrets_are_files_never_values() -> None:
    text = render_alertmanager_config_yaml(FULL)
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
    assert "/run/secrets/webhook_token" in text and "hooks.slack.com" not in text


def test_settings_become_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "ML_ALERT_WEBHOOK_URL": "https://bridge.hospital.internal/alertmanager",
        "ML_ALERT_WEBHOOK_TOKEN_FILE": "/run/secrets/webhook_token",
        "ML_ALERT_SMTP_SMARTHOST": "smtp.hospital.internal:587",
        "ML_ALERT_SMTP_FROM": "alertmanager@hospital.internal",
        "ML_ALERT_SMTP_AUTH_USERNAME": "alertmanager",
        "ML_ALERT_SMTP_AUTH_PASSWORD_FILE": "/run/secrets/smtp_password",
        "ML_ALERT_EMAIL_ONCALL": "ml-oncall@hospital.internal",
        "ML_ALERT_EMAIL_BUSINESS": "ml-business@hospital.internal",
        "ML_ALERT_SLACK_API_URL_FILE": "/run/secrets/slack_api_url",
        "ML_ALERT_INTERVAL_SECONDS": "5",  # the service's own setting: not a receiver field
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Receivers.from_settings(AlertReceiverSettings()) == FULL
    for key in env:
        monkeypatch.delenv(key)
    assert Receivers.from_settings(AlertReceiverSettings()) == Receivers()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ML_ALERT_WEBHOOK_URL": "https://u:hunter2@bridge.internal/x"}, "credentials"),
        ({"ML_ALERT_WEBHOOK_URL": "https://bridge.internal/x?token=hunter2"}, "query string"),
        ({"ML_ALERT_WEBHOOK_URL": "ftp://bridge.internal/x"}, "http(s) URL"),
        ({"ML_ALERT_SLACK_API_URL_FILE": "secrets/slack"}, "absolute path"),
        ({"ML_ALERT_SMTP_SMARTHOST": "smtp.internal", "ML_ALERT_SMTP_FROM": "a@b.internal",
          "ML_ALERT_EMAIL_ONCALL": "c@d.internal"}, "host:port"),
        ({"ML_ALERT_EMAIL_ONCALL": "c@d.internal"}, "needs ML_ALERT_SMTP_SMARTHOST"),
        ({"ML_ALERT_SMTP_SMARTHOST": "s.internal:25", "ML_ALERT_SMTP_FROM": "a@b.internal"},
         "no ML_ALERT_EMAIL_"),
        ({"ML_ALERT_SMTP_SMARTHOST": "s.internal:25", "ML_ALERT_SMTP_FROM": "a@b.internal",
          "ML_ALERT_EMAIL_ONCALL": "c@d.internal", "ML_ALERT_SMTP_AUTH_USERNAME": "u"},
         "go together"),
        ({"ML_ALERT_EMAIL_BUSINESS": "not an address"}, "name@domain.tld"),
        ({"ML_ALERT_SLACK_WARNING_CHANNEL": ""}, "Slack channel"),
    ],
)  # fmt: skip
def test_bad_receiver_settings_are_refused_without_echoing_them(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as exc:
        AlertReceiverSettings()
    assert message in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_render_reads_receivers_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, require_tool: Callable[[str], str]
) -> None:
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ML_ALERT_WEBHOOK_URL", "https://bridge.hospital.internal/am")
    monkeypatch.setenv("ML_ALERT_SLACK_API_URL_FILE", "/run/secrets/slack_api_url")
    result = CliRunner().invoke(app, ["render", str(tmp_path / "out"), "--no-database"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "out" / "alertmanager" / "alertmanager.yml"
    check = _amtool(require_tool("amtool"), "check-config", str(written))
    assert check.returncode == 0, check.stdout + check.stderr
    config = yaml.safe_load(written.read_text(encoding="utf-8"))
    assert config["global"] == {"slack_api_url_file": "/run/secrets/slack_api_url"}
    pager = next(r for r in config["receivers"] if r["name"] == PAGER)
    assert pager["webhook_configs"][0]["url"] == "https://bridge.hospital.internal/am"
    # --defaults ignores the environment: the checked-in file.
    result = CliRunner().invoke(app, ["render", str(tmp_path / "def"), "--defaults"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "def" / "alertmanager" / "alertmanager.yml").read_text(
        encoding="utf-8"
    ) == render_alertmanager_config_yaml()


def test_render_refuses_bad_receivers_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ML_ALERT_WEBHOOK_URL", "https://bridge.internal/x?token=hunter2")
    result = CliRunner().invoke(app, ["render", str(tmp_path / "out"), "--no-database"])
    assert result.exit_code == 2
    assert "ML_ALERT_" in result.output and "hunter2" not in result.output
    assert not (tmp_path / "out").exists()
