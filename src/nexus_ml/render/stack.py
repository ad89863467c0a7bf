"""The local monitoring stack as code: loopback configs and command lines, no processes.

``nexus-ml stack up`` (``cli/stack.py``) and the live end-to-end test both call these
helpers, so the stack a developer runs and the stack CI proves are the same one: the
rendered ``prometheus.yml``, rule files and ``alertmanager.yml`` plus the exact flags each
Debian binary (and the local alert receiver, ``cli/alert_receiver.py``) is started with.
Starting, waiting and stopping live in the cli layer.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from nexus_ml.render.alertmanager_config import (
    LOCAL_RECEIVER_PORT,
    Receivers,
    render_alertmanager_config_yaml,
)
from nexus_ml.render.anomaly_rules import RULE_FILE as ANOMALY_RULE_FILE
from nexus_ml.render.anomaly_rules import render_anomaly_rules_yaml
from nexus_ml.render.prometheus_config import render_prometheus_config_yaml
from nexus_ml.render.rules import render_rules_yaml
from nexus_ml.thresholds import Thresholds, format_duration, parse_duration

HOST = "127.0.0.1"
PROMETHEUS_BINARY = "prometheus"
ALERTMANAGER_BINARY = "prometheus-alertmanager"
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"
# The local webhook receiver runs as `python -m` this module (cli/alert_receiver.py).
RECEIVER_MODULE = "nexus_ml.cli.alert_receiver"
RECEIVER = "receiver"
# Stop order: Prometheus first (it would only complain about a dead Alertmanager), the
# receiver last (it still takes what Alertmanager sends while stopping).
COMPONENTS = ("prometheus", "alertmanager", RECEIVER)


@dataclass(frozen=True, slots=True)
class StackOptions:
    """What a local stack is made of: ports, the service it scrapes, timings, the webhook."""

    state_dir: Path
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    service_targets: tuple[str, ...] = ("127.0.0.1:8001",)
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    # None: deliver to the local receiver started on receiver_port; else to this URL only.
    webhook_url: str | None = None
    receiver_port: int = LOCAL_RECEIVER_PORT
    receiver_keep: int = 100
    fast: bool = False
    # Set when the service runs with ML_METRICS_TOKEN: Prometheus reads the token per scrape.
    metrics_token_file: Path | None = None

    @property
    def prometheus_url(self) -> str:
        """Base URL of Prometheus (also its ``--web.external-url``, so alert links work)."""
        return f"http://{HOST}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        """Base URL of Alertmanager (also its ``--web.external-url``)."""
        return f"http://{HOST}:{self.alertmanager_port}"

    @property
    def receiver_url(self) -> str:
        """Base URL of the local receiver (its webhook, ``/notifications``, ``/-/ready``)."""
        return f"http://{HOST}:{self.receiver_port}"

    @property
    def delivery_url(self) -> str:
        """Where Alertmanager delivers every notification."""
        return self.webhook_url if self.webhook_url else f"{self.receiver_url}/"

    @property
    def components(self) -> tuple[str, ...]:
        """What ``stack up`` starts: the receiver only when no other webhook is given."""
        return COMPONENTS if self.webhook_url is None else COMPONENTS[:2]

    def url(self, component: str) -> str:
        """Base URL of ``prometheus``, ``alertmanager`` or ``receiver``."""
        return {
            "prometheus": self.prometheus_url,
            "alertmanager": self.alertmanager_url,
            RECEIVER: self.receiver_url,
        }[component]


@dataclass(frozen=True, slots=True)
class StackPaths:
    """Where one stack keeps its configs, storage, pid files and logs."""

    root: Path

    @property
    def prometheus_config(self) -> Path:
        """The rendered ``prometheus.yml``."""
        return self.root / "prometheus.yml"

    @property
    def rules(self) -> Path:
        """The rendered rule file (absolute in ``prometheus.yml``)."""
        return self.root / "ml_alerts.yml"

    @property
    def anomaly_rules(self) -> Path:
        """The rendered anomaly-band rule file (``render.anomaly_rules``), beside the alerts."""
        return self.root / ANOMALY_RULE_FILE

    @property
    def alertmanager_config(self) -> Path:
        """The rendered ``alertmanager.yml``."""
        return self.root / "alertmanager.yml"

    @property
    def notifications(self) -> Path:
        """The local receiver's last notifications (JSON, rewritten on each one)."""
        return self.root / "notifications.json"

    def storage(self, component: str) -> Path:
        """The TSDB (Prometheus) or silences/notification log (Alertmanager) folder."""
        return self.root / f"{component}-data"

    def pid_file(self, component: str) -> Path:
        """Pid file written by ``stack up``, read by ``stack down``/``status``."""
        return self.root / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        """The component's stdout and stderr."""
        return self.root / f"{component}.log"


def missing_binaries() -> list[str]:
    """The Debian binaries the stack needs that are not on ``PATH``."""
    return [b for b in (PROMETHEUS_BINARY, ALERTMANAGER_BINARY) if shutil.which(b) is None]


def binary_for(component: str) -> str:
    """The executable of a component (the receiver is this Python running a module)."""
    if component == RECEIVER:
        return sys.executable
    return PROMETHEUS_BINARY if component == "prometheus" else ALERTMANAGER_BINARY


def is_component(args: list[str], component: str) -> bool:
    """Whether a process's command line (``args``) is that of ``component``."""
    if not args:
        return False
    if component == RECEIVER:
        return RECEIVER_MODULE in args
    return Path(args[0]).name == binary_for(component)


def render_stack(options: StackOptions, thresholds: Thresholds) -> StackPaths:
    """Write the configs (Prometheus, its two rule files, Alertmanager) under
    ``options.state_dir``; the alert rules from ``thresholds``.

    The caller passes the thresholds the service itself loads (file and ``ML_THRESHOLD_*``),
    so Prometheus fires on the same limits and ``for`` durations as the in-process evaluator.
    """
    paths = StackPaths(options.state_dir.resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    am_target = f"{HOST}:{options.alertmanager_port}"
    paths.rules.write_text(render_rules_yaml(thresholds), encoding="utf-8")
    paths.anomaly_rules.write_text(render_anomaly_rules_yaml(thresholds), encoding="utf-8")
    paths.prometheus_config.write_text(
        render_prometheus_config_yaml(
            service_targets=list(options.service_targets),
            # No node exporter on a developer machine; the service reports host resources.
            node_exporter_targets=[],
            alertmanager_targets=[am_target],
            rule_files=[str(paths.rules), str(paths.anomaly_rules)],
            scrape_interval=options.scrape_interval,
            evaluation_interval=options.evaluation_interval,
            scrape_timeout=_timeout_for(options.scrape_interval),
            metrics_token_file=(
                str(options.metrics_token_file.resolve()) if options.metrics_token_file else None
            ),
        ),
        encoding="utf-8",
    )
    paths.alertmanager_config.write_text(
        # Every receiver keeps its name (so routing is what is exercised) but delivers to
        # the one webhook: no mail or Slack is ever sent from a laptop.
        render_alertmanager_config_yaml(
            Receivers(webhook_url=options.delivery_url), fast=options.fast
        ),
        encoding="utf-8",
    )
    return paths


def _timeout_for(interval: str) -> str:
    # Prometheus refuses a scrape timeout longer than the interval; the default 10s
    # would break any interval below 10s.
    seconds = parse_duration(interval)
    if not isinstance(seconds, int | float) or seconds < 1:
        return interval
    return format_duration(min(float(seconds), 10.0))


def prometheus_command(options: StackOptions, paths: StackPaths, binary: str) -> list[str]:
    """The Prometheus command line: loopback only, own storage, usable alert links."""
    return [
        binary,
        f"--config.file={paths.prometheus_config}",
        f"--storage.tsdb.path={paths.storage('prometheus')}",
        f"--web.listen-address={HOST}:{options.prometheus_port}",
        f"--web.external-url={options.prometheus_url}/",
        "--log.level=info",
    ]


def alertmanager_command(options: StackOptions, paths: StackPaths, binary: str) -> list[str]:
    """The Alertmanager command line: loopback only, own storage, clustering off."""
    return [
        binary,
        f"--config.file={paths.alertmanager_config}",
        f"--storage.path={paths.storage('alertmanager')}",
        f"--web.listen-address={HOST}:{options.alertmanager_port}",
        f"--web.external-url={options.alertmanager_url}/",
        # Empty disables the gossip cluster, which would otherwise bind 0.0.0.0:9094.
        "--cluster.listen-address=",
        "--log.level=info",
    ]


def receiver_command(options: StackOptions, paths: StackPaths, binary: str) -> list[str]:
    """The local receiver's command line: loopback only (the module binds 127.0.0.1)."""
    return [
        binary,
        "-m",
        RECEIVER_MODULE,
        f"--port={options.receiver_port}",
        f"--keep={options.receiver_keep}",
        f"--file={paths.notifications}",
    ]


def command_for(component: str, options: StackOptions, paths: StackPaths, binary: str) -> list[str]:
    """The command line of ``prometheus``, ``alertmanager`` or ``receiver``."""
    build = {
        "prometheus": prometheus_command,
        "alertmanager": alertmanager_command,
        RECEIVER: receiver_command,
    }[component]
    return build(options, paths, binary)
