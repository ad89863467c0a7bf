"""Render ``alertmanager.yml``: severity routing, receivers and inhibitions.

Critical alerts page (the generic webhook, plus e-mail and Slack when configured), warnings
open a ticket in Slack, ``info`` (business) alerts go by e-mail. A receiver whose channel is
not configured delivers to the webhook instead, so no alert is routed to a placeholder; with
nothing configured, the webhook is the local receiver of ``nexus-ml stack up``. Every secret
is a file path Alertmanager reads at send time (``*_file`` / ``credentials_file``); nothing
secret is rendered (``ML_ALERT_*``, see ``config.AlertReceiverSettings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nexus_ml.config import AlertReceiverSettings
from nexus_ml.render.rules import to_yaml

PAGER, TICKETS, BUSINESS = "ml-pager", "ml-tickets", "ml-business"
RECEIVERS: dict[str, str] = {"critical": PAGER, "warning": TICKETS, "info": BUSINESS}
# `nexus-ml stack up` runs a receiver here (Alertmanager's documentation uses this port).
LOCAL_RECEIVER_PORT = 5001
LOCAL_WEBHOOK_URL = f"http://127.0.0.1:{LOCAL_RECEIVER_PORT}/"
GROUP_BY = ["alertname", "model", "severity"]
# (group_wait, group_interval, repeat_interval): pages come fast and repeat hourly,
# tickets every four hours, business mail once a day.
TIMINGS = {
    "default": ("30s", "5m", "4h"),
    "critical": ("10s", "1m", "1h"),
    "info": ("5m", "30m", "24h"),
}
# The live test wants notifications within seconds.
FAST_TIMINGS = ("1s", "5s", "1h")

_SLACK_TITLE = (
    "[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.severity }})"
)
_SLACK_TEXT = (
    "{{ range .Alerts }}{{ .Annotations.summary }}\n{{ .Annotations.description }}\n"
    "Runbook: {{ .Annotations.runbook_url }}\n{{ end }}"
)


def inhibit_rules() -> list[dict[str, Any]]:
    """Critical twins mute warnings; a dead target mutes what it can no longer report."""
    return [
        {
            "source_matchers": ['alertname="CriticalCPUUsage"'],
            "target_matchers": ['alertname="HighCPUUsage"'],
            "equal": ["job", "instance"],
        },
        {
            "source_matchers": ['alertname="MLServiceDown"'],
            "target_matchers": ['alertname!="MLServiceDown"'],
            "equal": ["job", "instance"],
        },
        {
            "source_matchers": ['alertname="MLServiceTargetMissing"'],
            "target_matchers": ['alertname!="MLServiceTargetMissing"'],
            "equal": ["job"],
        },
        {
            "source_matchers": ['alertname="AvailabilitySLOFastBurn"'],
            "target_matchers": ['alertname="AvailabilitySLOSlowBurn"'],
            "equal": ["job"],
        },
        {
            "source_matchers": ['alertname="LatencySLOFastBurn"'],
            "target_matchers": ['alertname="LatencySLOSlowBurn"'],
            "equal": ["job"],
        },
    ]


@dataclass(frozen=True, kw_only=True)
class Receivers:
    """Where each severity is delivered; secrets as file paths only. Default: local webhook."""

    webhook_url: str = LOCAL_WEBHOOK_URL
    webhook_token_file: str = ""
    smtp_smarthost: str = ""
    smtp_from: str = ""
    smtp_auth_username: str = ""
    smtp_auth_password_file: str = ""
    smtp_require_tls: bool = True
    email_oncall: str = ""
    email_business: str = ""
    slack_api_url_file: str = ""
    slack_critical_channel: str = "#ml-critical"
    slack_warning_channel: str = "#ml-alerts"

    @classmethod
    def from_settings(cls, settings: AlertReceiverSettings) -> Receivers:
        """The receivers ``ML_ALERT_*`` describe (validated there)."""
        fields = settings.model_dump()
        fields["webhook_url"] = fields["webhook_url"] or LOCAL_WEBHOOK_URL
        return cls(**fields)


def _global(r: Receivers) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if r.smtp_smarthost:
        config |= {"smtp_smarthost": r.smtp_smarthost, "smtp_from": r.smtp_from}
        if r.smtp_auth_username:
            config |= {
                "smtp_auth_username": r.smtp_auth_username,
                "smtp_auth_password_file": r.smtp_auth_password_file,
            }
        config["smtp_require_tls"] = r.smtp_require_tls
    if r.slack_api_url_file:
        # The incoming-webhook URL is itself the secret: only its file is named.
        config["slack_api_url_file"] = r.slack_api_url_file
    return config


def _receivers(r: Receivers) -> list[dict[str, Any]]:
    def hook() -> dict[str, Any]:  # a fresh dict each time: a shared one becomes a YAML alias
        config: dict[str, Any] = {"url": r.webhook_url, "send_resolved": True}
        if r.webhook_token_file:
            config["http_config"] = {
                "authorization": {"type": "Bearer", "credentials_file": r.webhook_token_file}
            }
        return config

    def slack(channel: str) -> dict[str, Any]:
        return {
            "channel": channel,
            "send_resolved": True,
            "title": _SLACK_TITLE,
            "text": _SLACK_TEXT,
        }

    def email(to: str) -> dict[str, Any]:
        return {"to": to, "send_resolved": True}

    # Critical always reaches the webhook (the incident bridge), plus mail and Slack if set;
    # warning and info use their own channel when configured, else the webhook.
    pager: dict[str, Any] = {"name": PAGER, "webhook_configs": [hook()]}
    if r.email_oncall:
        pager["email_configs"] = [email(r.email_oncall)]
    if r.slack_api_url_file:
        pager["slack_configs"] = [slack(r.slack_critical_channel)]
    tickets: dict[str, Any] = {"name": TICKETS}
    if r.slack_api_url_file:
        tickets["slack_configs"] = [slack(r.slack_warning_channel)]
    else:
        tickets["webhook_configs"] = [hook()]
    business: dict[str, Any] = {"name": BUSINESS}
    if r.email_business:
        business["email_configs"] = [email(r.email_business)]
    else:
        business["webhook_configs"] = [hook()]
    return [pager, tickets, business]


def render_alertmanager_config(
    receivers: Receivers | None = None, *, fast: bool = False
) -> dict[str, Any]:
    """``alertmanager.yml`` as a dict; the default receivers deliver to the local webhook."""
    r = receivers if receivers is not None else Receivers()
    timings = {k: FAST_TIMINGS for k in TIMINGS} if fast else TIMINGS

    def timing(kind: str) -> dict[str, str]:
        wait, interval, repeat = timings[kind]
        return {"group_wait": wait, "group_interval": interval, "repeat_interval": repeat}

    config: dict[str, Any] = {}
    if settings := _global(r):
        config["global"] = settings
    config["route"] = {
        "receiver": TICKETS,
        "group_by": list(GROUP_BY),
        **timing("default"),
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": PAGER, **timing("critical")},
            {"matchers": ['severity="warning"'], "receiver": TICKETS},
            {"matchers": ['severity="info"'], "receiver": BUSINESS, **timing("info")},
        ],
    }
    config["inhibit_rules"] = inhibit_rules()
    config["receivers"] = _receivers(r)
    return config


def render_alertmanager_config_yaml(
    receivers: Receivers | None = None, *, fast: bool = False
) -> str:
    """``deploy/alertmanager/alertmanager.yml`` as text."""
    return to_yaml(render_alertmanager_config(receivers, fast=fast))
