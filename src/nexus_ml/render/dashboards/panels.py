"""Panel factories with the project's defaults, so a dashboard module reads as a panel list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import barchart, bargauge, heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm

from nexus_ml.render.dashboards.common import PROMETHEUS

LAST = ["lastNotNull"]


class _Panel(Protocol):
    """What every panel builder of the SDK offers (each returns the builder itself)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: dm.DataSourceRef) -> Self: ...
    def targets(self, targets: list[Builder[cogvariants.Dataquery]]) -> Self: ...
    def no_value(self, no_value: str) -> Self: ...


P = TypeVar("P", bound=_Panel)


def _titled(
    panel: P,
    title: str,
    description: str,
    targets: Sequence[prom.Dataquery],
    no_value: str = "",
) -> P:
    """``panel`` with its title, description, the Prometheus datasource and ``targets``.

    ``no_value``: what the panel says, in words, when its queries rightly return nothing on a
    healthy service (no feedback yet, no alert firing); Grafana shows it instead of "No data".
    """
    panel = panel.title(title).description(description).datasource(PROMETHEUS)
    if no_value:
        panel = panel.no_value(no_value)
    return panel.targets(list(targets))


def _legend(*, table_mode: bool = False) -> cb.VizLegendOptions:
    mode = cm.LegendDisplayMode.TABLE if table_mode else cm.LegendDisplayMode.LIST
    calcs = ["lastNotNull", "max"] if table_mode else []
    return (
        cb.VizLegendOptions()
        .display_mode(mode)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(calcs)
    )


def timeseries_panel(
    title: str,
    targets: Sequence[prom.Dataquery],
    *,
    unit: str,
    thresholds: db.ThresholdsConfig | None = None,
    description: str = "",
    no_value: str = "",
    span: int = 12,
    height: int = 8,
    min_val: float | None = None,
    max_val: float | None = None,
    bars: bool = False,
) -> timeseries.Panel:
    """A time series; with ``thresholds`` they are drawn as dashed lines at the alert limits."""
    panel = (
        _titled(timeseries.Panel(), title, description, targets, no_value)
        .unit(unit)
        .span(span)
        .height(height)
        .legend(_legend(table_mode=len(targets) > 1))
        .line_width(1)
        .fill_opacity(10)
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
        )
    return panel


def right_axis(panel: timeseries.Panel, name_regex: str, unit: str) -> timeseries.Panel:
    """Put the series whose name matches ``name_regex`` on a right axis with their own unit."""
    return panel.override_by_regexp(
        name_regex,
        [
            dm.DynamicConfigValue(id_val="unit", value=unit),
            dm.DynamicConfigValue(id_val="custom.axisPlacement", value=cm.AxisPlacement.RIGHT),
        ],
    )


def colour_series(panel: timeseries.Panel, name_regex: str, colour: str) -> timeseries.Panel:
    """Give the series matching ``name_regex`` a fixed colour (failures red, say)."""
    return panel.override_by_regexp(
        name_regex,
        [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})],
    )


def stat_panel(
    title: str,
    targets: Sequence[prom.Dataquery],
    *,
    unit: str,
    thresholds: db.ThresholdsConfig,
    description: str = "",
    no_value: str = "",
    span: int = 4,
    height: int = 8,
    mappings: Sequence[dm.ValueMapping] = (),
    decimals: float | None = None,
) -> stat.Panel:
    """A single big number (last value), coloured by ``thresholds``."""
    panel = (
        _titled(stat.Panel(), title, description, targets, no_value)
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(thresholds)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(LAST).values(False))
    )
    if mappings:
        panel = panel.mappings(list(mappings))
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def bar_gauge_panel(
    title: str,
    targets: Sequence[prom.Dataquery],
    *,
    unit: str,
    thresholds: db.ThresholdsConfig,
    description: str = "",
    no_value: str = "",
    span: int = 8,
    height: int = 8,
    min_val: float | None = None,
    max_val: float | None = None,
) -> bargauge.Panel:
    """Horizontal bars, one per series (per feature, per bucket), coloured by ``thresholds``."""
    panel = (
        _titled(bargauge.Panel(), title, description, targets, no_value)
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(thresholds)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(cb.ReduceDataOptions().calcs(LAST).values(False))
    )
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    return panel


def heatmap_panel(
    title: str,
    targets: Sequence[prom.Dataquery],
    *,
    y_unit: str,
    description: str = "",
    no_value: str = "",
    span: int = 8,
    height: int = 8,
) -> heatmap.Panel:
    """A heatmap of pre-bucketed histogram data (Prometheus ``le`` buckets, no recalculation)."""
    return (
        _titled(heatmap.Panel(), title, description, targets, no_value)
        .span(span)
        .height(height)
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(y_unit))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .fill("dark-orange")
            .steps(64)
        )
    )


def table_panel(
    title: str,
    targets: Sequence[prom.Dataquery],
    *,
    description: str = "",
    no_value: str = "",
    span: int = 12,
    height: int = 8,
    hide_columns: Sequence[str] = ("Time", "__name__", "alertstate", "Value"),
    rename: Mapping[str, str] | None = None,
    unit: str | None = None,
) -> table.Panel:
    """A table of ``format=table`` instant queries (labels as columns), minus bookkeeping ones.

    With several targets, their rows are merged on equal labels (Grafana's ``merge``): each
    query's value becomes a column ``Value #<ref>``, which ``rename`` can name.
    """
    panel = _titled(table.Panel(), title, description, targets, no_value).span(span).height(height)
    if len(targets) > 1:
        panel = panel.with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
    if unit is not None:
        panel = panel.unit(unit)
    return panel.with_transformation(_organize(hide_columns, rename))


def _organize(hide: Sequence[str], rename: Mapping[str, str] | None) -> dm.DataTransformerConfig:
    """Grafana's ``organize``: drop the ``hide`` columns, rename others."""
    options: dict[str, object] = {"excludeByName": dict.fromkeys(hide, True)}
    if rename:
        options["renameByName"] = dict(rename)
    return dm.DataTransformerConfig(id_val="organize", options=options)


def bar_chart_panel(
    title: str,
    targets: Sequence[prom.Dataquery],
    *,
    x_field: str,
    unit: str,
    description: str = "",
    no_value: str = "",
    span: int = 8,
    height: int = 8,
    rename: Mapping[str, str] | None = None,
    hide_columns: Sequence[str] = ("Time", "__name__"),
    min_val: float | None = None,
    max_val: float | None = None,
) -> barchart.Panel:
    """Grouped bars of instant ``format=table`` targets merged on equal labels, one group per
    value of the label ``x_field`` (a histogram bin, say), one bar per query."""
    panel = (
        _titled(barchart.Panel(), title, description, targets, no_value)
        .span(span)
        .height(height)
        .unit(unit)
        .x_field(x_field)
        .legend(_legend())
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(_organize(hide_columns, rename))
    )
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    return panel


def dashed(panel: timeseries.Panel, name_regex: str) -> timeseries.Panel:
    """Draw the series matching ``name_regex`` dashed and unfilled (bounds, baselines)."""
    return panel.override_by_regexp(
        name_regex,
        [
            dm.DynamicConfigValue(
                id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
            ),
            dm.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        ],
    )
