"""Pure helpers for ``nexus-ml simulate``: realistic rows, shifts, bad values, latency stats.

No I/O here. Two samplers make rows: ``RowSampler`` resamples a bundled dataset's rows with
small noise (the model's answers and the true labels stay real), ``ProfileSampler`` draws
from any model's reference profile (numbers through the quantile sketch, integers rounded,
categories by their shares, missing values at the training rate) and draws each label from
the model's calibration, so a model imported from a notebook gets traffic too.

Neither moves a value off the set it comes from: ``RowSampler`` adds no noise to a
whole-numbered column (age in years) nor to a feature its model segments by value (``sex``
1/2 of ``diabetes_risk``), and ``ProfileSampler`` rounds integer features and snaps a
by-value segment feature to its groups' values, so traffic lands in the model's declared
segment groups and not in ``other``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from nexus_ml.ml.datasets import BUNDLED_DECLARATIONS, load_dataset
from nexus_ml.ml.schema import FeatureSchema
from nexus_ml.ml.segments import parse_segments

# Noise added to each resampled value, in units of the feature's std: small enough that the
# window still matches the reference (no drift), large enough that rows are not verbatim copies.
NOISE_STD = 0.02
# An out-of-range value sits this many stds beyond the training max: still a finite number, so it
# is accepted, predicted and counted as a data-quality issue (not refused).
BAD_OFFSET_STD = 10.0
# A bad request is either out of range (quality score drops, 200) or invalid (refused with 422,
# counted as a quality issue of kind missing/wrong_type); half and half.
BadKind = Literal["out_of_range", "null", "string"]
_BAD_KINDS: tuple[BadKind, ...] = ("out_of_range", "out_of_range", "null", "string")

# The feature is everything before the last "=": feature names may hold any printable text.
_SHIFT = re.compile(r"^(?P<feature>.+)=(?P<op>x|\*)?(?P<value>[-+]?[0-9.]+(e[-+]?\d+)?)$")


@dataclass(frozen=True)
class Shift:
    """Move one feature: ``add`` DELTA training stds, or ``scale`` by a factor."""

    feature: str
    kind: Literal["add", "scale"]
    value: float


def parse_shift(text: str) -> Shift:
    """Parse ``feature=DELTA`` (in training stds) or ``feature=xFACTOR``."""
    m = _SHIFT.match(text.strip())
    if m is None:
        raise ValueError(f"shift {text!r}: expected FEATURE=DELTA (stds) or FEATURE=xFACTOR")
    value = float(m["value"])
    if not math.isfinite(value):
        raise ValueError(f"shift {text!r}: the value must be finite")
    return Shift(m["feature"], "scale" if m["op"] else "add", value)


@dataclass(frozen=True)
class Sample:
    """One row to send: its features, true label and how it was made bad (None: it was not).

    ``label`` is None for a row drawn from a profile: its label is drawn from the answer
    (``ProfileSampler.label_for``), as no true one exists.
    """

    features: dict[str, Any]
    label: str | None
    bad: BadKind | None


@dataclass
class RowSampler:
    """Draws rows of one bundled dataset, shifted and sometimes corrupted, reproducibly."""

    dataset: str
    shifts: Sequence[Shift] = ()
    bad_rate: float = 0.0
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        data = load_dataset(self.dataset)
        self.names = list(data.feature_names)
        self.numeric = list(self.names)
        self._X = data.X
        self._y = data.y
        self._std = data.X.std(axis=0)
        self._min = data.X.min(axis=0)
        self._max = data.X.max(axis=0)
        # Noise per column: none for a whole-numbered feature (age in years: an integer in
        # every row) or one segmented by value (its values are its groups).
        self._noise = self._std * NOISE_STD
        self._noise[np.all(np.round(data.X) == data.X, axis=0)] = 0.0
        self._noise[[self.names.index(f) for f in _value_segments(self.dataset, data)]] = 0.0
        self.rng = np.random.default_rng(self.seed)
        index = {n: j for j, n in enumerate(self.names)}
        self._shifts: list[tuple[int, Shift]] = []
        for s in self.shifts:
            if s.feature not in index:
                raise ValueError(no_feature(self.dataset, s.feature, self.numeric))
            self._shifts.append((index[s.feature], s))

    def label_for(self, answer: dict[str, Any]) -> str:  # pragma: no cover - rows carry labels
        """Rows of a dataset carry their true label; nothing is drawn."""
        raise AssertionError("a dataset row has its true label")

    def sample(self) -> Sample:
        """One resampled row with noise, shifts applied, and maybe one out-of-range value."""
        rng = self.rng
        i = int(rng.integers(len(self._X)))
        row = self._X[i] + rng.normal(0.0, 1.0, size=len(self.names)) * self._noise
        # The reference profile's range is the dataset's: noise must not push an extreme row
        # out of it, or clean traffic would show quality issues (only shifts and --bad-rate may).
        np.clip(row, self._min, self._max, out=row)
        for j, s in self._shifts:
            row[j] = row[j] + s.value * self._std[j] if s.kind == "add" else row[j] * s.value
        bad: BadKind | None = None
        j = int(rng.integers(len(self.names)))
        if self.bad_rate > 0 and rng.random() < self.bad_rate:
            bad = _BAD_KINDS[int(rng.integers(len(_BAD_KINDS)))]
            if bad == "out_of_range":
                row[j] = self._max[j] + BAD_OFFSET_STD * max(self._std[j], 1e-9)
        # float() keeps the JSON plain (numpy scalars are not JSON-serialisable).
        features: dict[str, Any] = dict(zip(self.names, map(float, row), strict=True))
        if bad == "null":
            features[self.names[j]] = None
        elif bad == "string":
            features[self.names[j]] = "n/a"
        return Sample(features, str(self._y[i]), bad)


class ProfileSampler:
    """Draws rows of any model from its reference profile and schema (metadata.json).

    Numbers: the inverse of the profile's quantile sketch at a uniform draw (exact at the
    sketch's 1001 nodes, linear between them), rounded for an ``integer`` feature, so a tied
    value keeps its share. Categories: by their training shares. Missing: at the training
    missing rate. Shifts move a numeric feature by training standard deviations (or scale
    it). Labels: the answer's class with probability ``calibration(confidence)`` (the
    profile's isotonic map, else the confidence itself), else another class at random, so the
    accuracy the service measures from this feedback is the one the model should have.
    """

    def __init__(
        self,
        model: str,
        metadata: dict[str, Any],
        shifts: Sequence[Shift] = (),
        bad_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        profile = metadata["profile"]
        types = {f["name"]: f for f in metadata.get("features", []) if isinstance(f, dict)}
        self.model = model
        self.names: list[str] = [str(f) for f in profile["feature_names"]]
        self.rng = np.random.default_rng(seed)
        self.bad_rate = bad_rate
        self.classes = [str(c) for c in metadata.get("classes", [])]
        conf = profile.get("confidence") or {}
        self._calibration = conf.get("calibration")
        by_value = _value_groups(metadata)
        self._features = {
            f: _draw_spec(profile["features"][f], types.get(f, {}), by_value.get(f))
            for f in self.names
        }
        self.numeric = [f for f, d in self._features.items() if d.categories is None]
        self._shifts = list(shifts)
        for s in self._shifts:
            if s.feature not in self.numeric:
                raise ValueError(no_feature(model, s.feature, self.numeric))

    def sample(self) -> Sample:
        """One row drawn from the profile, shifted, and maybe made bad."""
        rng = self.rng
        row: dict[str, Any] = {f: d.draw(rng) for f, d in self._features.items()}
        for s in self._shifts:
            d = self._features[s.feature]
            if row[s.feature] is not None:
                value = (
                    row[s.feature] + s.value * d.std
                    if s.kind == "add"
                    else row[s.feature] * s.value
                )
                row[s.feature] = round(value) if d.integer else float(value)
        bad: BadKind | None = None
        if self.bad_rate > 0 and rng.random() < self.bad_rate:
            bad = _BAD_KINDS[int(rng.integers(len(_BAD_KINDS)))]
            f = self.names[int(rng.integers(len(self.names)))]
            d = self._features[f]
            if bad == "out_of_range":
                # A category outside training answers with a warning, like a number out of range.
                row[f] = (
                    "unseen"
                    if d.categories is not None
                    else d.hi + BAD_OFFSET_STD * max(d.std, 1e-9)
                )
            else:
                row[f] = None if bad == "null" else ("n/a" if d.categories is None else 1.5)
        return Sample(row, None, bad)

    def label_for(self, answer: dict[str, Any]) -> str:
        """A label for an answer: right with the calibrated probability of its confidence."""
        predicted = str(answer["predicted_class"])
        confidence = float(answer.get("confidence", 1.0))
        cal = self._calibration
        p_right = float(np.interp(confidence, cal["x"], cal["y"])) if cal else confidence
        others = [c for c in self.classes if c != predicted]
        if not others or self.rng.random() < p_right:
            return predicted
        return others[int(self.rng.integers(len(others)))]


def _value_segments(dataset: str, data: Any) -> list[str]:
    """Features the bundled model of ``dataset`` segments by value (no bin edges)."""
    declared = BUNDLED_DECLARATIONS.get(dataset)
    if declared is None or not declared.segments:
        return []
    schema = FeatureSchema.from_training(data.X, data.feature_names)
    columns = {name: data.X[:, j] for j, name in enumerate(data.feature_names)}
    segments = parse_segments(declared.segments, schema, columns, max_groups=10**6)
    return [s.feature for s in segments if s.edges is None]


@dataclass(frozen=True)
class _FeatureDraw:
    """How to draw one feature: a sketch for numbers, shares for categories."""

    missing: float
    quantiles: np.ndarray = field(default_factory=lambda: np.zeros(1))
    categories: list[str] | None = None
    shares: np.ndarray | None = None
    integer: bool = False
    std: float = 0.0
    hi: float = 0.0
    # A feature segmented by value: draws snap to the nearest of these (its groups).
    values: np.ndarray | None = None

    def draw(self, rng: np.random.Generator) -> Any:
        if self.missing and rng.random() < self.missing:
            return None
        if self.categories is not None:
            return self.categories[int(rng.choice(len(self.categories), p=self.shares))]
        q = self.quantiles
        value = float(np.interp(rng.random(), np.linspace(0.0, 1.0, q.size), q))
        if self.values is not None:
            value = float(self.values[int(np.argmin(np.abs(self.values - value)))])
        return round(value) if self.integer else value


def _value_groups(metadata: dict[str, Any]) -> dict[str, np.ndarray]:
    """The values of each numeric feature the model segments by value (metadata form)."""
    out = {}
    for segment in metadata.get("segments") or []:
        if not isinstance(segment, dict) or segment.get("edges") is not None:
            continue
        named = [g for g in segment.get("groups", []) if g not in ("missing", "other")]
        try:
            out[str(segment["feature"])] = np.asarray([float(g) for g in named])
        except (KeyError, ValueError):  # a category feature's groups: not numbers
            continue
    return {f: v for f, v in out.items() if v.size}


def _draw_spec(
    feat: dict[str, Any], schema: dict[str, Any], values: np.ndarray | None = None
) -> _FeatureDraw:
    present, gone = int(feat.get("n", 0)), int(feat.get("n_missing", 0))
    missing = gone / (present + gone) if present + gone else 0.0
    if feat["type"] == "categorical":
        counts = np.asarray(feat["category_counts"], dtype=np.float64)
        return _FeatureDraw(
            missing=missing, categories=list(feat["categories"]), shares=counts / counts.sum()
        )
    if not feat["quantiles"]:  # never observed in training: always missing
        return _FeatureDraw(missing=1.0)
    return _FeatureDraw(
        missing=missing,
        quantiles=np.asarray(feat["quantiles"], dtype=np.float64),
        integer=_integer(feat, schema.get("type")),
        std=float(feat["std"] or 0.0),
        hi=float(feat["max"]),
        values=values,
    )


def _integer(feat: dict[str, Any], declared: str | None) -> bool:
    """An ``integer`` feature; for a bundle older than typed schemas, integral data.

    Such a bundle says only "numeric". Its data were integers if its range ends are and every
    bin edge is too or lies halfway between two (edges sit midway between neighbouring
    values): a continuous feature's float edges never all do.
    """
    if declared is not None and declared != "numeric":
        return declared == "integer"
    ends = [feat["min"], feat["max"], *(2 * e for e in feat["bin_edges"])]
    return all(float(v).is_integer() for v in ends)


def no_feature(model: str, feature: str, numeric: Sequence[str]) -> str:
    """The error for a shift of a feature a model does not have as a number."""
    valid = ", ".join(repr(f) for f in numeric) or "none"
    return (
        f"model {model!r} has no numeric feature {feature!r} to shift; "
        f"its numeric features: {valid}"
    )


def split_shifts(
    shifts: Sequence[Shift], numeric: dict[str, Sequence[str]]
) -> dict[str, list[Shift]]:
    """Give each model the shifts naming one of its numeric features; refuse one none has."""
    out: dict[str, list[Shift]] = {m: [] for m in numeric}
    for s in shifts:
        owners = [m for m, names in numeric.items() if s.feature in names]
        if not owners:
            valid = "; ".join(f"{m}: {', '.join(names) or 'none'}" for m, names in numeric.items())
            raise ValueError(
                f"no selected model has a numeric feature {s.feature!r} to shift (numeric "
                f"features by model: {valid})"
            )
        for m in owners:
            out[m].append(s)
    return out


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """``{"p50": ..., ...}`` of ``values`` (NaN when empty)."""
    if not values:
        return {f"p{q:g}": math.nan for q in qs}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}


def status_class(status: int) -> str:
    """``ok`` for 2xx, ``4xx``, ``5xx``, or ``error`` (no response: connection, timeout)."""
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "4xx"
    if status >= 500:
        return "5xx"
    return "error"


def interval_for(rate: float | None) -> float:
    """Seconds between request starts for ``rate`` requests/s (0: as fast as responses come)."""
    return 1.0 / rate if rate else 0.0


def to_json_ready(obj: Any) -> Any:
    """NaN to None, recursively (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: to_json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json_ready(v) for v in obj]
    return obj
