"""prometheus_client's two encoders, with every per-series string built once and memoised.

prometheus_client re-escapes and re-sorts every label set on every scrape; here
the line prefix (``name{labels} ``) of a series is computed the first time it
is seen, by prometheus_client's own escaping functions, and reused. The output
is byte-for-byte that of ``exposition.generate_latest`` (text 0.0.4) or
``openmetrics.exposition.generate_latest`` with the default ``underscores``
escaping; the equivalence tests hold it to that.

Anything this encoder does not reproduce (exemplars and native histograms,
neither of which Nexus ML emits) raises :class:`Unsupported`, and the caller
falls back to prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = [
    "Format",
    "RegistryEncoder",
    "Unsupported",
    "ValueFormatter",
    "family_header",
    "sample_prefix",
]

Format = Literal["text", "openmetrics"]

# Text format puts these OpenMetrics-only samples in their own gauge family.
_OM_ONLY_SUFFIXES = ("_created", "_gsum", "_gcount")
# How the text encoder renames OpenMetrics types (prometheus_client.exposition).
_TEXT_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}
# Bound on memo sizes: label sets are bounded by design, but a memo must not
# become the leak that an unbounded label would otherwise be.
_MEMO_LIMIT = 200_000


class Unsupported(Exception):
    """The input needs a feature only prometheus_client's encoder has; use it instead."""


def _escape_value(value: str) -> str:
    # Both encoders escape label values (and OpenMetrics HELP) with ALLOWUTF8 rules.
    return om._escape(value, om.ALLOWUTF8, om._is_legacy_labelname_rune)


def sample_prefix(fmt: Format, name: str, labels: Iterable[tuple[str, str]]) -> str:
    """``name{a="x",b="y"} `` exactly as prometheus_client writes it, up to the value."""
    pairs = sorted(labels)
    body = ",".join(
        f'{om.escape_label_name(k, om.UNDERSCORES)}="{_escape_value(v)}"' for k, v in pairs
    )
    block = "{" + body + "}" if body else ""
    if fmt == "text":
        return f"{om.escape_metric_name(name, om.UNDERSCORES)}{block} "
    # The OpenMetrics encoder escapes sample names rune by rune (':' included).
    return f"{om._escape(name, om.UNDERSCORES, om._is_legacy_labelname_rune)}{block} "


def family_header(fmt: Format, name: str, typ: str, documentation: str, unit: str = "") -> str:
    """``# HELP``/``# TYPE`` (and OpenMetrics ``# UNIT``) lines of one family."""
    if fmt == "text":
        if typ == "counter":
            name += "_total"
        elif typ == "info":
            name += "_info"
        typ = _TEXT_TYPES.get(typ, "untyped" if typ == "unknown" else typ)
        shown = om.escape_metric_name(name, om.UNDERSCORES)
        doc = documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {shown} {doc}\n# TYPE {shown} {typ}\n"
    shown = om.escape_metric_name(name, om.UNDERSCORES)
    header = f"# HELP {shown} {_escape_value(documentation)}\n# TYPE {shown} {typ}\n"
    if unit:
        header += f"# UNIT {shown} {unit}\n"
    return header


class ValueFormatter:
    """``floatToGoString`` memoised: scrapes repeat the same few values (0, 1, bucket counts)."""

    def __init__(self) -> None:
        self._memo: dict[float, str] = {}

    def __call__(self, value: float) -> str:
        text = self._memo.get(value)
        if text is None:
            text = floatToGoString(value)
            # Zero is left out because -0.0 == 0.0 would share an entry but not a
            # spelling; NaN because it never equals itself, so it would never hit.
            if value and value == value and len(self._memo) < _MEMO_LIMIT:
                self._memo[value] = text
        return text


class RegistryEncoder:
    """Encode any collector's ``collect()`` output; memoises line prefixes between scrapes.

    Thread-safe without a lock: the memos hold pure functions of their keys, so a
    race costs at most a recomputation. One instance may serve every registry.
    """

    def __init__(self) -> None:
        self._prefixes: dict[tuple[Format, str, tuple[tuple[str, str], ...]], str] = {}
        self._headers: dict[tuple[Format, str, str, str, str], str] = {}
        self.format_value = ValueFormatter()

    def encode(self, registry: Collector, fmt: Format) -> bytes:
        """The body prometheus_client would produce for ``registry`` in ``fmt``."""
        if fmt == "text":
            return self._text(registry.collect())
        return self._openmetrics(registry.collect())

    def _prefix(self, fmt: Format, name: str, labels: Mapping[str, str]) -> str:
        key = (fmt, name, tuple(labels.items()))
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = sample_prefix(fmt, name, labels.items())
            if len(self._prefixes) >= _MEMO_LIMIT:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def _header(self, fmt: Format, name: str, typ: str, doc: str, unit: str) -> str:
        key = (fmt, name, typ, doc, unit)
        header = self._headers.get(key)
        if header is None:
            if len(self._headers) >= _MEMO_LIMIT:
                self._headers.clear()
            header = self._headers[key] = family_header(fmt, name, typ, doc, unit)
        return header

    def _text(self, metrics: Iterable[Metric]) -> bytes:
        out: list[str] = []
        fmt_value = self.format_value
        for metric in metrics:
            doc = metric.documentation
            out.append(self._header("text", metric.name, metric.type, doc, ""))
            moved = {metric.name + suffix: suffix for suffix in _OM_ONLY_SUFFIXES}
            om_samples: dict[str, list[str]] = {}
            for name, labels, value, timestamp, _exemplar, native in metric.samples:
                # The text encoder drops exemplars silently; so do we.
                if native is not None or value is None:
                    raise Unsupported("native histogram sample")
                line = self._prefix("text", name, labels) + fmt_value(value)
                if timestamp is not None:
                    line += f" {int(float(timestamp) * 1000):d}"
                suffix = moved.get(name)
                if suffix is None:
                    out.append(line + "\n")
                else:
                    om_samples.setdefault(suffix, []).append(line + "\n")
            for suffix, lines in sorted(om_samples.items()):
                out.append(self._header("text", metric.name + suffix, "gauge", doc, ""))
                out.extend(lines)
        return "".join(out).encode("utf-8")

    def _openmetrics(self, metrics: Iterable[Metric]) -> bytes:
        out: list[str] = []
        fmt_value = self.format_value
        for metric in metrics:
            out.append(
                self._header(
                    "openmetrics", metric.name, metric.type, metric.documentation, metric.unit
                )
            )
            for name, labels, value, timestamp, exemplar, native in metric.samples:
                if exemplar is not None or native is not None or value is None:
                    raise Unsupported("exemplar or native histogram sample")
                line = self._prefix("openmetrics", name, labels) + fmt_value(value)
                if timestamp is not None:
                    line += f" {timestamp}"
                out.append(line + "\n")
        out.append("# EOF\n")
        return "".join(out).encode("utf-8")
