"""The service's own metric families, the one source for /metrics, the alerts and the views."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from nexus_ml.monitoring.exposition import multiproc_families


class Families:
    """Collects this service's metrics (merged across workers in multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry, multiproc_dir: str | None) -> None:
        self.registry = registry
        self.multiproc_dir = multiproc_dir

    def collect(self) -> list[Metric]:
        """Every family, summed over workers when several share the multiprocess folder."""
        if self.multiproc_dir:
            return multiproc_families(self.multiproc_dir)
        return list(self.registry.collect())
