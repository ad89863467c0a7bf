"""Grafana dashboards as code (grafana-foundation-sdk, Grafana 11 build) and their queries.

Three dashboards, one module each: the guide's twelve-panel overview, the on-call view (SLOs,
burn, alerts, latency, errors) and the data-science view (accuracy, clinical performance by
segment — its rows in ``clinical.py`` —, confidence, drift, quality). Threshold lines come
from :class:`nexus_ml.thresholds.Thresholds`, never literals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from nexus_ml.render.dashboards.common import expand
from nexus_ml.render.dashboards.oncall import oncall_dashboard
from nexus_ml.render.dashboards.overview import overview_dashboard
from nexus_ml.render.dashboards.science import data_science_dashboard
from nexus_ml.thresholds import Thresholds

# File stem (also the dashboard uid) -> builder.
DASHBOARDS: dict[str, Callable[[Thresholds], db.Dashboard]] = {
    "nexus-ml-overview": overview_dashboard,
    "nexus-ml-oncall": oncall_dashboard,
    "nexus-ml-data-science": data_science_dashboard,
}


def _to_dict(builder: db.Dashboard) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # Stable panel ids (the SDK leaves them unset): links to a panel survive regeneration.
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    return data


def build_dashboards(thresholds: Thresholds | None = None) -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON (a dict), keyed by file stem / uid."""
    limits = thresholds if thresholds is not None else Thresholds()
    return {name: _to_dict(make(limits)) for name, make in DASHBOARDS.items()}


def iter_targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query target of a dashboard dict, rows included."""
    for panel in dashboard.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets") or []:
                yield inner, target


def dashboard_queries() -> list[str]:
    """Every PromQL expression of every dashboard, variables expanded to their All value, unique."""
    seen: dict[str, None] = {}
    for dashboard in build_dashboards().values():
        for _, target in iter_targets(dashboard):
            seen.setdefault(expand(target["expr"]))
    return list(seen)


def dashboard_panels() -> list[tuple[str, list[str], str]]:
    """Every panel as (title, its queries with variables expanded, its ``noValue`` text).

    A panel whose queries may rightly return nothing on a healthy service (no feedback yet, no
    alert firing) says why in words (``noValue``, "" when it has none); every other panel must
    show a value there: one of its queries returns data.
    """
    out: dict[tuple[str, str], tuple[str, list[str], str]] = {}
    for uid, dashboard in build_dashboards().items():
        for panel, target in iter_targets(dashboard):
            text = panel.get("fieldConfig", {}).get("defaults", {}).get("noValue") or ""
            key = (uid, str(panel.get("title")))
            entry = out.setdefault(key, (key[1], [], text))
            entry[1].append(expand(target["expr"]))
    return list(out.values())


def dashboard_json(dashboard: dict[str, Any]) -> str:
    """Deterministic JSON text for a dashboard file (sorted keys, two-space indent)."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_dashboards(out_dir: Path, thresholds: Thresholds | None = None) -> list[Path]:
    """Write ``<out_dir>/<uid>.json`` for every dashboard; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in build_dashboards(thresholds).items():
        path = out_dir / f"{name}.json"
        path.write_text(dashboard_json(dashboard), encoding="utf-8")
        written.append(path)
    return written
