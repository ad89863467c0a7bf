"""Render ``/metrics``: Prometheus text by default, OpenMetrics when the scraper asks.

prometheus_client chooses the format; the body comes from the memoising
encoders in :mod:`~nexus_ml.monitoring.exposition.text` (one process) and
:mod:`~nexus_ml.monitoring.exposition.merged` (worker files), which produce
prometheus_client's output at a fraction of the cost (see
``benchmarks/bench_metrics_render.py``). Whatever they do not cover (non-default
name escaping, exemplars, mixed metric types in the files) is encoded by
prometheus_client itself.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics import exposition as om
from prometheus_client.registry import Collector

from nexus_ml.monitoring.exposition.merged import MultiprocRenderer
from nexus_ml.monitoring.exposition.mmap_files import CorruptFile
from nexus_ml.monitoring.exposition.text import Format, RegistryEncoder, Unsupported
from nexus_ml.monitoring.metrics import SERVING_GAUGE, VERSIONED_COUNTERS, VERSIONED_GAUGES
from nexus_ml.monitoring.multiproc import mark_dead_workers

__all__ = [
    "drop_unserved",
    "fast_format",
    "multiproc_families",
    "multiproc_renderer",
    "render_metrics",
]

# Memos, not state: what they hold is a pure function of label sets and file
# keys, and every scrape re-validates it against the files, so sharing them
# between apps and tests is safe. A handful of directories at most per process.
_ENCODER = RegistryEncoder()
_RENDERERS: OrderedDict[str, MultiprocRenderer] = OrderedDict()
_RENDERERS_LIMIT = 8
_RENDERERS_LOCK = threading.Lock()


def fast_format(encoder: Callable[[Collector], bytes]) -> Format | None:
    """Which fast encoder reproduces ``encoder`` (from ``choose_encoder``), if any."""
    if encoder is generate_latest:
        return "text"
    # Only the default name escaping: the others rewrite names, which is rare enough
    # to leave to prometheus_client.
    if isinstance(encoder, partial) and encoder.keywords.get("escaping") == om.UNDERSCORES:
        if encoder.func is generate_latest:
            return "text"
        if encoder.func is om.generate_latest:
            return "openmetrics"
    return None


def multiproc_renderer(path: str | os.PathLike[str]) -> MultiprocRenderer:
    """The shared renderer of ``path`` (its caches survive between scrapes)."""
    key = os.fspath(path)
    with _RENDERERS_LOCK:
        renderer = _RENDERERS.get(key)
        if renderer is None:
            renderer = _RENDERERS[key] = MultiprocRenderer(
                key,
                serving=SERVING_GAUGE,
                versioned=VERSIONED_GAUGES,
                versioned_counters=VERSIONED_COUNTERS,
            )
            while len(_RENDERERS) > _RENDERERS_LIMIT:
                _RENDERERS.popitem(last=False)
        else:
            _RENDERERS.move_to_end(key)
        return renderer


def drop_unserved(families: list[Metric]) -> list[Metric]:
    """Leave out per-version gauge (and bin counter) samples of versions no live worker serves.

    prometheus_client cannot delete a label set from the worker files, so a version replaced
    by a hot swap would otherwise stay exported forever. A worker sets ``ml_model_info`` of a
    version it stopped serving to 0, and a dead worker's ``livemax`` file is removed: a version
    is served while the merged ``ml_model_info`` is above 0.
    """
    served = {
        (s.labels.get("model"), s.labels.get("version"))
        for f in families
        if f.name == SERVING_GAUGE
        for s in f.samples
        if s.value > 0
    }
    for f in families:
        if (f.name in VERSIONED_GAUGES and f.type == "gauge") or (
            f.name in VERSIONED_COUNTERS and f.type == "counter"
        ):
            f.samples = [
                s for s in f.samples if (s.labels.get("model"), s.labels.get("version")) in served
            ]
    return families


class _ServedOnly(Collector):
    """The workers' files merged by prometheus_client, without unserved versions."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._files = MultiProcessCollector(None, path=str(path))

    def collect(self) -> list[Metric]:
        return drop_unserved(list(self._files.collect()))


def multiproc_families(path: str | os.PathLike[str]) -> list[Metric]:
    """Every worker's metrics merged (dead workers' live gauges dropped, unserved versions too)."""
    mark_dead_workers(path)
    return _ServedOnly(path).collect()


def render_metrics(
    registry: CollectorRegistry,
    accept_header: str | None,
    multiproc_dir: str | os.PathLike[str] | None = None,
) -> tuple[bytes, str]:
    """Encode ``registry`` (or, in multiprocess mode, every worker's files) for a scrape.

    Returns ``(body, content_type)``. With ``multiproc_dir`` the in-process
    ``registry`` is not read: its values are in the files already, and a fresh
    registry per scrape is what prometheus_client's multiprocess mode requires.
    """
    # choose_encoder is prometheus_client's own negotiation: OpenMetrics
    # (prometheus_client.openmetrics.exposition) for application/openmetrics-text,
    # text format 0.0.4 otherwise.
    encoder, content_type = choose_encoder(accept_header or "")
    fmt = fast_format(encoder)
    if multiproc_dir is None:
        if fmt is not None:
            try:
                return _ENCODER.encode(registry, fmt), content_type
            except Unsupported:
                pass
        return encoder(registry), content_type
    fresh = CollectorRegistry()
    fresh.register(_ServedOnly(multiproc_dir))  # MultiProcessCollector checks the folder exists
    # Before reading the files, so a worker that died since the last scrape
    # no longer contributes to live* gauges.
    mark_dead_workers(multiproc_dir)
    if fmt is not None:
        try:
            return multiproc_renderer(multiproc_dir).render(fmt), content_type
        except (Unsupported, CorruptFile):
            pass  # prometheus_client decides: it may merge these or raise its own error
    return encoder(fresh), content_type
