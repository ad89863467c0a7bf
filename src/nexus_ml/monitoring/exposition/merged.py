"""Merge and encode prometheus_client's multiprocess files, planning the merge once.

The result is ``MultiProcessCollector``'s, sample for sample: counters, summaries
and histogram buckets/sums add up across files; histogram buckets become
cumulative, with ``_count`` the ``+Inf`` total; gauges follow the mode in their
file name (``all``/``liveall`` keep a ``pid`` label, ``min``/``max``/``sum``/
``mostrecent`` and their ``live`` variants drop it). Families and samples come
in the collector's order too, so the body is usually byte-identical; the
exception is a ``mostrecent`` series whose first file has never been written,
which prometheus_client places where it first finds a write.

What the plan caches is everything that depends only on keys: which slot each
file entry feeds, how, and the printed prefix of each output line. Keys never
change for a series, so a scrape that finds no new key and no vanished file
only unpacks values, folds them into slots, and joins strings. Anything outside
these semantics (a metric seen with two types or gauge modes, a sample the text
format would move) raises :class:`Unsupported` so the caller uses
prometheus_client.

One deliberate difference, when asked for (``serving``/``versioned``): a series of a
per-version gauge is left out while no live worker serves its version, as
:func:`~nexus_ml.monitoring.exposition.drop_unserved` does for prometheus_client's families.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.utils import floatToGoString

from nexus_ml.monitoring.exposition.mmap_files import DbFile, DbFileName
from nexus_ml.monitoring.exposition.text import (
    Format,
    Unsupported,
    ValueFormatter,
    family_header,
    sample_prefix,
)

__all__ = ["MultiprocRenderer"]

Labels = tuple[tuple[str, str], ...]
# How a slot folds the values of the files that feed it.
_ADD, _MIN, _MAX, _RECENT, _SET = range(5)
_GAUGE_OPS = {
    "min": _MIN,
    "livemin": _MIN,
    "max": _MAX,
    "livemax": _MAX,
    "sum": _ADD,
    "livesum": _ADD,
    "mostrecent": _RECENT,
    "livemostrecent": _RECENT,
}  # any other mode, "all"/"liveall" included, keeps the pid label: MultiProcessCollector's else
_SUMMED_KINDS = ("counter", "histogram", "summary")
_MOVED_SUFFIXES = ("_created", "_gsum", "_gcount")
_MEMO_LIMIT = 200_000
_UNGATED, _NO_GATE = -1, -2


@dataclass(slots=True)
class _Family:
    name: str
    kind: str
    mode: str
    documentation: str
    # group labels -> sample name -> slot, in first-seen order (the collector's order)
    groups: dict[Labels, dict[str, int]] = field(default_factory=dict)
    # histograms: group labels (no "le") -> float(le) -> slot of the per-bucket sum
    buckets: dict[Labels, dict[float, int]] = field(default_factory=dict)


class _Plan:
    """Which slot each file entry feeds and how, and the output lines in order."""

    def __init__(self) -> None:
        self.initial: list[float | None] = []
        self.file_ops: list[tuple[int, list[int]]] = []
        # (per-bucket slots sorted by le, cumulative output slots, _count slot)
        self.cumulative: list[tuple[list[int], list[int], int]] = []
        self.series: list[tuple[_Family, list[tuple[str, Labels, int]]]] = []
        self.has_recent = False
        # series slot -> slot of the serving gauge that must be > 0 for it to be exported
        # (_NO_GATE: the serving gauge has no such series, so neither is this one).
        self.gates: dict[int, int] = {}
        self.lines: dict[Format, list[tuple[str, int, int]]] = {}

    def new_slot(self, op: int) -> int:
        self.initial.append(0.0 if op == _ADD else None)
        self.has_recent = self.has_recent or op == _RECENT
        return len(self.initial) - 1

    def merge(self, reads: Sequence[tuple[tuple[float, ...], tuple[float, ...]]]) -> list[Any]:
        """Fold every file's values into slots, in file order like the collector."""
        acc: list[Any] = self.initial.copy()  # None: no value (yet) for min/max/mostrecent/all
        stamps = [0.0] * len(acc) if self.has_recent else []
        for (op, slots), (values, times) in zip(self.file_ops, reads, strict=True):
            if op == _ADD:
                for slot, value in zip(slots, values, strict=True):
                    acc[slot] += value
            elif op == _RECENT:
                for slot, value, stamp in zip(slots, values, times, strict=True):
                    if stamps[slot] < stamp:  # never-written entries (time 0) never win
                        acc[slot] = value
                        stamps[slot] = stamp
            elif op == _SET:
                for slot, value in zip(slots, values, strict=True):
                    acc[slot] = value
            elif op == _MAX:
                for slot, value in zip(slots, values, strict=True):
                    current = acc[slot]
                    if current is None or value > current:
                        acc[slot] = value
            else:
                for slot, value in zip(slots, values, strict=True):
                    current = acc[slot]
                    if current is None or value < current:
                        acc[slot] = value
        for bucket_slots, out_slots, count_slot in self.cumulative:
            total = 0.0
            for bucket, out in zip(bucket_slots, out_slots, strict=True):
                total += acc[bucket]
                acc[out] = total
            acc[count_slot] = total
        return acc


class MultiprocRenderer:
    """Render one multiprocess directory; keeps file layouts and the merge plan between scrapes.

    Thread-safe (one scrape at a time per directory).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        serving: str | None = None,
        versioned: Collection[str] = (),
        versioned_counters: Collection[str] = (),
        version_labels: Sequence[str] = ("model", "version"),
    ) -> None:
        """``serving``/``versioned``: see :func:`~nexus_ml.monitoring.exposition.drop_unserved`."""
        self.path = os.fspath(path)
        self._serving = serving
        self._versioned = frozenset(versioned)
        self._versioned_counters = frozenset(versioned_counters)
        self._version_labels = tuple(version_labels)
        self._files: dict[str, DbFile] = {}
        self._keys: dict[bytes, tuple[str, str, Labels, str]] = {}
        self._prefixes: dict[tuple[Format, str, Labels], str] = {}
        self._plan: _Plan | None = None
        # (file name, its keys) the plan was built from; DbFile.keys is a new tuple
        # whenever a file changes, so comparing is mostly identity checks.
        self._planned: list[tuple[str, tuple[bytes, ...]]] = []
        self._lock = threading.Lock()
        self._format_value = ValueFormatter()

    def render(self, fmt: Format) -> bytes:
        """The body prometheus_client's collector and encoder would produce, in ``fmt``."""
        with self._lock:
            names, kinds, reads = self._read()
            # Compared every scrape, so a scrape that failed half-way cannot leave
            # a plan that no longer matches the files.
            layout = [(name, self._files[name].keys) for name in names]
            if self._plan is None or layout != self._planned:
                self._plan = self._build(kinds, [keys for _, keys in layout])
                self._planned = layout
            return self._emit(self._plan, fmt, self._plan.merge(reads))

    def _read(
        self,
    ) -> tuple[list[str], list[DbFileName], list[tuple[tuple[float, ...], tuple[float, ...]]]]:
        names: list[str] = []
        kinds: list[DbFileName] = []
        reads = []
        known, self._files = self._files, {}
        # scandir order is glob's order, hence the collector's family and sample order.
        with os.scandir(self.path) as entries:
            for entry in entries:
                name = entry.name
                if not name.endswith(".db") or name.startswith("."):  # glob("*.db") skips dotfiles
                    continue
                try:
                    kind = DbFileName.parse(name)
                except ValueError as exc:
                    raise Unsupported(str(exc)) from exc
                file = known.get(name) or DbFile(entry.path)
                try:
                    values, times = file.read()
                except FileNotFoundError:
                    # mark_process_dead may remove live gauge files at any moment.
                    if kind.kind == "gauge" and kind.mode.startswith("live"):
                        continue
                    raise
                self._files[name] = file
                names.append(name)
                kinds.append(kind)
                reads.append((values, times))
        return names, kinds, reads

    def _parse_key(self, raw: bytes) -> tuple[str, str, Labels, str]:
        parsed = self._keys.get(raw)
        if parsed is None:
            # Trailing pad spaces are JSON whitespace; the collector decodes the same text.
            metric_name, name, labels, documentation = json.loads(raw)
            parsed = (metric_name, name, tuple(sorted(labels.items())), documentation)
            if len(self._keys) >= _MEMO_LIMIT:
                self._keys.clear()
            self._keys[raw] = parsed
        return parsed

    def _build(self, kinds: list[DbFileName], keys: list[tuple[bytes, ...]]) -> _Plan:
        plan = _Plan()
        families: dict[str, _Family] = {}

        def slot_in(table: dict[Any, int], key: object, op: int) -> int:
            slot = table.get(key)
            if slot is None:
                slot = table[key] = plan.new_slot(op)
            return slot

        for kind, file_keys in zip(kinds, keys, strict=True):
            if kind.kind == "gauge":
                op = _GAUGE_OPS.get(kind.mode, _SET)
            elif kind.kind in _SUMMED_KINDS:
                op = _ADD
            elif file_keys:
                raise Unsupported(f"metric type {kind.kind!r}")
            else:
                op = _ADD  # an empty file of any kind adds nothing, as in the collector
            slots = []
            for raw in file_keys:
                metric_name, name, labels, documentation = self._parse_key(raw)
                family = families.get(metric_name)
                if family is None:
                    family = _Family(metric_name, kind.kind, kind.mode, documentation)
                    families[metric_name] = family
                elif (family.kind, family.mode) != (kind.kind, kind.mode):
                    raise Unsupported(f"{metric_name} has several types or gauge modes")
                if name in [metric_name + suffix for suffix in _MOVED_SUFFIXES]:
                    raise Unsupported(f"{name}: the text format would move this sample")
                le = None
                if kind.kind == "histogram":
                    le = next((v for k, v in labels if k == "le"), None)
                if le is not None:
                    group = tuple(pair for pair in labels if pair[0] != "le")
                    slots.append(slot_in(family.buckets.setdefault(group, {}), float(le), op))
                    continue
                if op == _SET:
                    if any(k == "pid" for k, _ in labels):
                        raise Unsupported(f"{metric_name} has its own pid label")
                    labels = (*labels, ("pid", kind.pid))
                slots.append(slot_in(family.groups.setdefault(labels, {}), name, op))
            plan.file_ops.append((op, slots))

        for family in families.values():
            series: list[tuple[str, Labels, int]] = []
            # Bucket-only groups come last: the collector adds them after the loop.
            order = list(family.groups) + [g for g in family.buckets if g not in family.groups]
            for group in order:
                for name, slot in family.groups.get(group, {}).items():
                    series.append((name, group, slot))
                buckets = family.buckets.get(group)
                if not buckets:
                    continue
                bucket_slots, out_slots = [], []
                for bound in sorted(buckets):
                    bucket_slots.append(buckets[bound])
                    out_slots.append(plan.new_slot(_SET))
                    le_label = ("le", floatToGoString(bound))
                    series.append((family.name + "_bucket", (*group, le_label), out_slots[-1]))
                count_slot = plan.new_slot(_SET)
                series.append((family.name + "_count", group, count_slot))
                plan.cumulative.append((bucket_slots, out_slots, count_slot))
            plan.series.append((family, series))
        self._gate(plan, families)
        return plan

    def _gate(self, plan: _Plan, families: dict[str, _Family]) -> None:
        """Tie each series of a versioned gauge (or counter) to the serving gauge's series of its
        version."""
        if self._serving is None or not (self._versioned or self._versioned_counters):
            return
        keys = self._version_labels

        def version_of(labels: Labels) -> tuple[str | None, ...]:
            found = dict(labels)
            return tuple(found.get(k) for k in keys)

        serving = families.get(self._serving)
        gate_slots = {}
        if serving is not None:
            for group, names in serving.groups.items():
                if self._serving in names:
                    gate_slots[version_of(group)] = names[self._serving]
        for family, series in plan.series:
            if (family.name in self._versioned and family.kind == "gauge") or (
                family.name in self._versioned_counters and family.kind == "counter"
            ):
                for _, labels, slot in series:
                    plan.gates[slot] = gate_slots.get(version_of(labels), _NO_GATE)

    def _lines(self, plan: _Plan, fmt: Format) -> list[tuple[str, int, int]]:
        lines = plan.lines.get(fmt)
        if lines is None:
            lines = plan.lines[fmt] = []
            gates = plan.gates
            for family, series in plan.series:
                header = family_header(fmt, family.name, family.kind, family.documentation)
                lines.append((header, -1, _UNGATED))
                for name, labels, slot in series:
                    key = (fmt, name, labels)
                    prefix = self._prefixes.get(key)
                    if prefix is None:
                        if len(self._prefixes) >= _MEMO_LIMIT:
                            self._prefixes.clear()
                        prefix = self._prefixes[key] = sample_prefix(fmt, name, labels)
                    lines.append((prefix, slot, gates.get(slot, _UNGATED)))
        return lines

    def _emit(self, plan: _Plan, fmt: Format, acc: list[Any]) -> bytes:
        format_value = self._format_value
        out = []
        for text, slot, gate in self._lines(plan, fmt):
            if slot < 0:
                out.append(text)
                continue
            if gate != _UNGATED and (gate == _NO_GATE or not (acc[gate] or 0.0) > 0.0):
                continue  # a version no live worker serves
            value = acc[slot]
            if value is not None:  # a mostrecent series nobody has written yet
                out.append(text + format_value(value) + "\n")
        if fmt == "openmetrics":
            out.append("# EOF\n")
        return "".join(out).encode("utf-8")
