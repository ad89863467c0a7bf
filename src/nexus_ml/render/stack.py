"""The local monitoring stack as code: loopback configs and command lines, no processes.

``nexus-ml stack up`` (``cli/stack.py``) and the live end-to-end test both call these
helpers, so the stack a developer runs and the stack CI proves are the same one: the
rendered ``prometheus.yml``, rule file and ``alertmanager.yml`` plus the exact flags each
Debian binary is started with. Starting, waiting and stopping live in the cli layer.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from nexus_ml.render.alertmanager_config import render_alertmanager_config_yaml
from nexus_ml.render.prometheus_config import render_prometheus_config_yaml
from nexus_ml.render.rules import render_rules_yaml
from nexus_ml.thresholds import Thresholds, format_duration, parse_duration

HOST = "127.0.0.1"
PROMETHEUS_BINARY = "prometheus"
ALERTMANAGER_BINARY = "prometheus-alertmanager"
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"
# Alertmanager's own documentation uses this port for a local webhook receiver.
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:5001/"
COMPONENTS = ("prometheus", "alertmanager")


@dataclass(frozen=True, slots=True)
class StackOptions:
    """What a local stack is made of: ports, the service it scrapes, timings, the webhook."""

    state_dir: Path
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    service_targets: tuple[str, ...] = ("127.0.0.1:8001",)
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    webhook_url: str = DEFAULT_WEBHOOK_URL
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

    def url(self, component: str) -> str:
        """Base URL of ``prometheus`` or ``alertmanager``."""
        return self.prometheus_url if component == "prometheus" else self.alertmanager_url


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
    def alertmanager_config(self) -> Path:
        """The rendered ``alertmanager.yml``."""
        return self.root / "alertmanager.yml"

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
    """The executable name of ``prometheus`` or ``alertmanager``."""
    return PROMETHEUS_BINARY if component == "prometheus" else ALERTMANAGER_BINARY


def render_stack(options: StackOptions, thresholds: Thresholds) -> StackPaths:
    """Write the three configs under ``options.state_dir``; rules from ``thresholds``.

    The caller passes the thresholds the service itself loads (file and ``ML_THRESHOLD_*``),
    so Prometheus fires on the same limits and ``for`` durations as the in-process evaluator.
    """
    paths = StackPaths(options.state_dir.resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    am_target = f"{HOST}:{options.alertmanager_port}"
    paths.rules.write_text(render_rules_yaml(thresholds), encoding="utf-8")
    paths.prometheus_config.write_text(
        render_prometheus_config_yaml(
            service_targets=list(options.service_targets),
            # No node exporter on a developer machine; the service reports host resources.
            node_exporter_targets=[],
            alertmanager_targets=[am_target],
            rule_files=[str(paths.rules)],
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
        render_alertmanager_config_yaml(
            webhook_url_override=options.webhook_url, fast=options.fast
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


def command_for(component: str, options: StackOptions, paths: StackPaths, binary: str) -> list[str]:
    """The command line of ``prometheus`` or ``alertmanager``."""
    build = prometheus_command if component == "prometheus" else alertmanager_command
    return build(options, paths, binary)
