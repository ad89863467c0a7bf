"""Pure helpers for ``nexus-ml simulate``: realistic rows, shifts, bad values, latency stats.

No I/O here: the sampler draws rows of a bundled dataset (resampled with small noise, so the
model's answers and the true labels stay realistic) and the caller sends them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from nexus_ml.ml.datasets import load_dataset

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

_SHIFT = re.compile(
    r"^(?P<feature>[A-Za-z0-9_]+)=(?P<op>x|\*)?(?P<value>[-+]?[0-9.]+(e[-+]?\d+)?)$"
)


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
    """One row to send: its features, true label and how it was made bad (None: it was not)."""

    features: dict[str, Any]
    label: str
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
        self._X = data.X
        self._y = data.y
        self._std = data.X.std(axis=0)
        self._min = data.X.min(axis=0)
        self._max = data.X.max(axis=0)
        self.rng = np.random.default_rng(self.seed)
        index = {n: j for j, n in enumerate(self.names)}
        self._shifts: list[tuple[int, Shift]] = []
        for s in self.shifts:
            if s.feature not in index:
                raise ValueError(f"model {self.dataset!r} has no feature {s.feature!r}")
            self._shifts.append((index[s.feature], s))

    def sample(self) -> Sample:
        """One resampled row with noise, shifts applied, and maybe one out-of-range value."""
        rng = self.rng
        i = int(rng.integers(len(self._X)))
        row = self._X[i] + rng.normal(0.0, NOISE_STD, size=len(self.names)) * self._std
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


def split_shifts(shifts: Sequence[Shift], models: Sequence[str]) -> dict[str, list[Shift]]:
    """Give each model the shifts naming one of its features; refuse a shift no model knows."""
    features = {m: set(load_dataset(m).feature_names) for m in models}
    out: dict[str, list[Shift]] = {m: [] for m in models}
    for s in shifts:
        owners = [m for m in models if s.feature in features[m]]
        if not owners:
            raise ValueError(f"no selected model has a feature {s.feature!r}")
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
