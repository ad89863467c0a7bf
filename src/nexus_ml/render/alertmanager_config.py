"""Render ``alertmanager.yml``: severity routing, receivers and inhibitions.

Critical alerts page (webhook to the incident bridge, e-mail and Slack), warnings open a
ticket in Slack, ``info`` (business) alerts go by e-mail. Every secret is a file path
mounted at run time (``*_file`` / ``credentials_file``); nothing secret is rendered.
"""

from __future__ import annotations

from typing import Any

from nexus_ml.render.rules import to_yaml

PAGER, TICKETS, BUSINESS = "ml-pager", "ml-tickets", "ml-business"
RECEIVERS: dict[str, str] = {"critical": PAGER, "warning": TICKETS, "info": BUSINESS}
SECRETS_DIR = "/etc/alertmanager/secrets"
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


def _receivers(
    *,
    webhook_url: str,
    secrets_dir: str,
    oncall_email: str,
    business_email: str,
    slack_critical_channel: str,
    slack_warning_channel: str,
    webhook_url_override: str | None,
) -> list[dict[str, Any]]:
    if webhook_url_override:
        # Every receiver keeps its name (so routing is what is tested) but delivers locally.
        hook = [{"url": webhook_url_override, "send_resolved": True}]
        return [{"name": n, "webhook_configs": hook} for n in (PAGER, TICKETS, BUSINESS)]

    def slack(channel: str) -> dict[str, Any]:
        return {
            "channel": channel,
            "send_resolved": True,
            "title": _SLACK_TITLE,
            "text": _SLACK_TEXT,
        }

    def email(to: str) -> dict[str, Any]:
        return {"to": to, "send_resolved": True}

    return [
        {
            "name": PAGER,
            "webhook_configs": [
                {
                    "url": webhook_url,
                    "send_resolved": True,
                    "http_config": {
                        "authorization": {
                            "type": "Bearer",
                            "credentials_file": f"{secrets_dir}/webhook_token",
                        }
                    },
                }
            ],
            "email_configs": [email(oncall_email)],
            "slack_configs": [slack(slack_critical_channel)],
        },
        {"name": TICKETS, "slack_configs": [slack(slack_warning_channel)]},
        {"name": BUSINESS, "email_configs": [email(business_email)]},
    ]


def render_alertmanager_config(
    *,
    webhook_url: str = "http://incident-bridge:8080/alertmanager",
    webhook_url_override: str | None = None,
    secrets_dir: str = SECRETS_DIR,
    smtp_smarthost: str = "smtp.example.org:587",
    smtp_from: str = "alertmanager@example.org",
    smtp_auth_username: str = "alertmanager",
    oncall_email: str = "ml-oncall@example.org",
    business_email: str = "ml-business@example.org",
    slack_critical_channel: str = "#ml-critical",
    slack_warning_channel: str = "#ml-alerts",
    fast: bool = False,
) -> dict[str, Any]:
    """``alertmanager.yml`` as a dict; ``webhook_url_override`` sends everything to one URL."""
    timings = {k: FAST_TIMINGS for k in TIMINGS} if fast else TIMINGS

    def timing(kind: str) -> dict[str, str]:
        wait, interval, repeat = timings[kind]
        return {"group_wait": wait, "group_interval": interval, "repeat_interval": repeat}

    config: dict[str, Any] = {}
    if not webhook_url_override:
        config["global"] = {
            "smtp_smarthost": smtp_smarthost,
            "smtp_from": smtp_from,
            "smtp_auth_username": smtp_auth_username,
            "smtp_auth_password_file": f"{secrets_dir}/smtp_password",
            "smtp_require_tls": True,
            "slack_api_url_file": f"{secrets_dir}/slack_api_url",
        }
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
    config["receivers"] = _receivers(
        webhook_url=webhook_url,
        secrets_dir=secrets_dir,
        oncall_email=oncall_email,
        business_email=business_email,
        slack_critical_channel=slack_critical_channel,
        slack_warning_channel=slack_warning_channel,
        webhook_url_override=webhook_url_override,
    )
    return config


def render_alertmanager_config_yaml(**kwargs: Any) -> str:
    """``deploy/alertmanager/alertmanager.yml`` as text (keyword arguments as above)."""
    return to_yaml(render_alertmanager_config(**kwargs))
