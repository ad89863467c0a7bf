"""Segments: the subgroups a model's performance is reported for, declared when it is trained.

A declaration names features, each with bin edges or not: ``sex,age:0-40-65-120``. Each becomes
a closed list of groups, fixed in the bundle's metadata, so a segment label (``all``, or
``<feature>=<group>``) comes from a bounded set and never from a request:

- a category feature: its training categories (the schema's), each a short printable name;
- a numeric feature with edges ``e0-e1-...-ek``: bins ``e0-e1`` ... as [lo, hi), the last one
  closed [lo, hi] (``age=40-65`` holds 40 <= age < 65);
- a numeric feature without edges: its distinct training values, when there are at most
  ``MAX_DISTINCT_VALUES`` (``sex=2``); more must be binned;
- then ``missing`` (null or absent) when the feature is nullable, and ``other`` (a value outside
  every group: an unseen category, a number outside the edges). A category literally called
  ``missing`` or ``other`` is that group, once.

A model holds at most ``max_groups`` groups over all its segments (``MAX_SEGMENT_GROUPS`` unless
the caller's setting says otherwise; a bundle never more than ``MAX_STORED_SEGMENT_GROUPS``):
each group is one more series of every per-segment metric. Negative edges are written with
their sign (``x:-10--5-0``); a feature whose name holds a comma cannot be declared.

Errors name the feature (what the user typed), never a value of the data.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from nexus_ml.ml.schema import FeatureSchema, FeatureSpec

ALL = "all"
MISSING = "missing"
OTHER = "other"
MAX_SEGMENT_GROUPS = 16
# What a bundle may hold whatever a deployment's setting: bounds the metadata and the series.
MAX_STORED_SEGMENT_GROUPS = 64
MAX_DISTINCT_VALUES = 10
MAX_GROUP_CHARS = 64
# What a stored or in-memory number is (JSON gives int and float; numpy scalars are accepted).
_NUMBER_TYPES = frozenset({int, float, np.float64, np.float32, np.int64, np.int32})
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


class SegmentError(ValueError):
    """A segment declaration (or a stored one) that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One declared segment feature and its closed list of groups."""

    feature: str
    groups: tuple[str, ...]
    edges: tuple[float, ...] | None = None

    def labels(self) -> list[str]:
        """The segment label of each group, in order."""
        return [f"{self.feature}={g}" for g in self.groups]

    def to_dict(self) -> dict[str, Any]:
        """The metadata form."""
        edges = None if self.edges is None else list(self.edges)
        return {"feature": self.feature, "groups": list(self.groups), "edges": edges}


def number_label(value: float) -> str:
    """How a number appears in a group name: ``40``, ``0.5``, ``-10``."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def bin_labels(edges: Sequence[float]) -> list[str]:
    """Group names of the bins between consecutive edges."""
    return [f"{number_label(a)}-{number_label(b)}" for a, b in itertools.pairwise(edges)]


def _tails(spec: FeatureSpec, named: Sequence[str]) -> tuple[str, ...]:
    out = list(named)
    if spec.nullable and MISSING not in out:
        out.append(MISSING)
    if OTHER not in out:
        out.append(OTHER)
    return tuple(out)


def group_name_problem(name: str) -> str | None:
    """Why a category cannot be a group name (None if it can)."""
    if not name or len(name) > MAX_GROUP_CHARS or not name.isprintable():
        return f"must be 1 to {MAX_GROUP_CHARS} printable characters"
    return None


def closed_groups(
    spec: FeatureSpec, edges: Sequence[float] | None, values: Sequence[float] = ()
) -> tuple[str, ...]:
    """The full group list of a feature: categories, bins or values, then missing/other."""
    if spec.is_category:
        return _tails(spec, spec.categories)
    if edges is not None:
        return _tails(spec, bin_labels(edges))
    return _tails(spec, [number_label(v) for v in values])


def check_edges(feature: str, edges: Sequence[float]) -> None:
    """Refuse fewer than two edges, or edges that are not finite and strictly increasing."""
    if len(edges) < 2:
        raise SegmentError(f"segment {feature}: bins need at least two edges")
    if not all(math.isfinite(e) for e in edges):
        raise SegmentError(f"segment {feature}: edges must be finite numbers")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise SegmentError(f"segment {feature}: edges must be strictly increasing")


def check_segment(spec: FeatureSpec, segment: Segment) -> None:
    """Refuse a stored segment whose groups are not the closed list its feature implies."""
    where = f"segment {segment.feature}"
    if spec.is_category:
        if segment.edges is not None:
            raise SegmentError(f"{where}: a category feature has no edges")
        if any(group_name_problem(c) for c in spec.categories):
            raise SegmentError(f"{where}: a category cannot be a group name")
        expected = closed_groups(spec, None)
    elif segment.edges is not None:
        check_edges(segment.feature, segment.edges)
        expected = closed_groups(spec, segment.edges)
    else:
        named = [g for g in segment.groups if g not in (MISSING, OTHER)]
        values = [_value(where, g) for g in named]
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise SegmentError(f"{where}: value groups must be strictly increasing")
        if len(values) > MAX_DISTINCT_VALUES:
            raise SegmentError(f"{where}: more than {MAX_DISTINCT_VALUES} value groups")
        if any(not spec.min <= v <= spec.max for v in values):
            raise SegmentError(f"{where}: a value group lies outside the training range")
        if spec.type == "integer" and not all(v.is_integer() for v in values):
            raise SegmentError(f"{where}: an integer feature's value groups must be whole")
        expected = closed_groups(spec, None, values)
    if segment.groups != expected:
        raise SegmentError(f"{where}: groups must be the feature's closed list of groups")


def _value(where: str, group: str) -> float:
    if not _NUMBER.fullmatch(group):
        raise SegmentError(f"{where}: a value group is not a number")
    value = float(group)
    if not math.isfinite(value) or number_label(value) != group:
        raise SegmentError(f"{where}: a value group is not a number in its canonical form")
    return value


def check_segments(schema: FeatureSchema, segments: Sequence[Segment], *, max_groups: int) -> None:
    """Refuse unknown or repeated features, bad groups, or more than ``max_groups`` groups."""
    by_name = {spec.name: spec for spec in schema.features}
    seen: set[str] = set()
    for segment in segments:
        spec = by_name.get(segment.feature)
        if spec is None:  # parse_segments names it; a stored one is not echoed
            raise SegmentError("a segment names a feature the model does not have")
        if segment.feature in seen:
            raise SegmentError(f"segment {segment.feature}: declared twice")
        seen.add(segment.feature)
        check_segment(spec, segment)
    total = sum(len(s.groups) for s in segments)
    if total > max_groups:
        raise SegmentError(
            f"segments declare {total} groups, more than the maximum of {max_groups}"
        )


def parse_segments(
    text: str | None,
    schema: FeatureSchema,
    training_frame: Mapping[str, Any] | None = None,
    *,
    max_groups: int = MAX_SEGMENT_GROUPS,
) -> list[Segment]:
    """Declarations like ``sex,age:0-40-65-120`` as segments over ``schema``'s features.

    ``training_frame`` (a DataFrame, or a mapping of feature name to column) gives the distinct
    values of a numeric feature declared without edges.
    """
    if text is None or not text.strip():
        return []
    by_name = {spec.name: spec for spec in schema.features}
    segments = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise SegmentError("segments: an empty item (two commas, or a trailing comma)")
        name, edges_text = item, None
        if item not in by_name and ":" in item:
            name, _, edges_text = item.rpartition(":")
            name = name.strip()
        spec = by_name.get(name)
        if spec is None:
            raise SegmentError(f"segment {_shown(name)}: not a feature of the model")
        segments.append(_declared(spec, edges_text, training_frame))
    check_segments(schema, segments, max_groups=max_groups)
    return segments


def _shown(name: str) -> str:
    # The user's own text, echoed bounded and printable.
    text = name[:64]
    return repr("".join(c if c.isprintable() else "?" for c in text))


def _declared(
    spec: FeatureSpec, edges_text: str | None, frame: Mapping[str, Any] | None
) -> Segment:
    where = f"segment {spec.name}"
    if spec.is_category:
        if edges_text is not None:
            raise SegmentError(f"{where}: a category feature takes no bin edges")
        for category in spec.categories:
            if group_name_problem(category):
                raise SegmentError(
                    f"{where}: a category is not a short printable name "
                    f"(1 to {MAX_GROUP_CHARS} characters), so it cannot be a segment label"
                )
        return Segment(spec.name, closed_groups(spec, None))
    if edges_text is not None:
        edges = _edges(where, edges_text)
        check_edges(spec.name, edges)
        return Segment(spec.name, closed_groups(spec, edges), tuple(edges))
    values = _distinct(spec.name, frame)
    if len(values) > MAX_DISTINCT_VALUES:
        raise SegmentError(
            f"{where}: a numeric feature with more than {MAX_DISTINCT_VALUES} distinct values "
            f"needs bin edges (e.g. {spec.name}:0-40-65-120)"
        )
    return Segment(spec.name, closed_groups(spec, None, values))


def _edges(where: str, text: str) -> list[float]:
    edges, at, text = [], 0, text.strip()
    while True:
        match = _NUMBER.match(text, at)
        if match is None:
            raise SegmentError(f"{where}: bin edges must be numbers joined by '-' (0-40-65-120)")
        edges.append(float(match.group()))
        at = match.end()
        if at == len(text):
            return edges
        if text[at] != "-":
            raise SegmentError(f"{where}: bin edges must be numbers joined by '-' (0-40-65-120)")
        at += 1


def _distinct(feature: str, frame: Mapping[str, Any] | None) -> list[float]:
    if frame is None or feature not in frame:
        raise SegmentError(f"segment {feature}: no training values to group a numeric feature by")
    column = np.asarray(frame[feature], dtype=np.float64)
    return [float(v) for v in np.unique(column[np.isfinite(column)])]


class DeclaresSegments(Protocol):
    """What ``SegmentIndex.from_metadata`` reads (``ml.metadata.BundleMetadata`` has both)."""

    def segment_list(self) -> tuple[Segment, ...]: ...

    def feature_schema(self) -> FeatureSchema: ...


class SegmentIndex:
    """Masks of stored feature dicts by segment label, for a model's declared segments."""

    def __init__(self, segments: Iterable[Segment], schema: FeatureSchema) -> None:
        by_name = {spec.name: spec for spec in schema.features}
        self.segments = tuple(segments)
        self._specs = [by_name[s.feature] for s in self.segments]

    @classmethod
    def from_metadata(cls, info: DeclaresSegments) -> SegmentIndex:
        """The index of a bundle's segments: ``info`` is its checked ``BundleMetadata``."""
        return cls(info.segment_list(), info.feature_schema())

    @property
    def labels(self) -> list[str]:
        """Every segment label, ``all`` first: the closed set a metric's ``segment`` takes."""
        return [ALL, *(label for s in self.segments for label in s.labels())]

    def masks(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """A boolean mask over ``rows`` per segment label (``all`` included); groups are
        disjoint and cover every row, per feature."""
        out = {ALL: np.ones(len(rows), dtype=bool)}
        for segment, spec in zip(self.segments, self._specs, strict=True):
            column = [
                row.get(segment.feature) if isinstance(row, Mapping) else None for row in rows
            ]
            codes = _codes(segment, spec, column)
            for j, label in enumerate(segment.labels()):
                out[label] = codes == j
        return out


def _codes(segment: Segment, spec: FeatureSpec, column: list[Any]) -> np.ndarray:
    """The index of each value's group in ``segment.groups``."""
    groups = segment.groups
    other = groups.index(OTHER)
    missing = groups.index(MISSING) if MISSING in groups else other
    is_none = np.fromiter((v is None for v in column), dtype=bool, count=len(column))
    if spec.is_category:
        lookup = {g: j for j, g in enumerate(groups)}
        codes = np.fromiter(
            (lookup.get(v, other) if type(v) is str else other for v in column),
            dtype=np.intp,
            count=len(column),
        )
    else:
        # bool is an int, but never a valid number here: it falls to "other" with strings.
        x = np.fromiter(
            (v if type(v) in _NUMBER_TYPES else math.nan for v in column),
            dtype=np.float64,
            count=len(column),
        )
        codes = np.full(len(column), other, dtype=np.intp)
        if segment.edges is not None:
            edges = np.asarray(segment.edges)
            index = np.searchsorted(edges, x, side="right") - 1
            index[x == edges[-1]] = len(edges) - 2  # the last bin is closed
            inside = (x >= edges[0]) & (x <= edges[-1])
        else:
            named = [g for g in groups if g not in (MISSING, OTHER)]
            values = np.asarray([float(g) for g in named], dtype=np.float64)
            index = np.searchsorted(values, x)  # NaN sorts last: never found
            inside = np.zeros(len(column), dtype=bool)
            if len(values):
                found = index < len(values)
                inside[found] = values[index[found]] == x[found]
        codes[inside] = index[inside]
    codes[is_none] = missing
    return codes


def declaration_text(segments: Iterable[Mapping[str, Any]]) -> str:
    """The declaration (``sex,age:0-40-65-120``) that stored segments were made from."""
    parts = []
    for segment in segments:
        edges = segment.get("edges")
        if edges is None:
            parts.append(str(segment["feature"]))
        else:
            parts.append(f"{segment['feature']}:" + "-".join(number_label(float(e)) for e in edges))
    return ",".join(parts)
