"""Feature schema and request-path validation of feature mappings.

Error messages name the offending field but never echo its value: feature values are patient
data and must not reach responses or logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURE_TYPES = ("numeric",)
_MAX_FIELD_CHARS = 64  # an unknown key is echoed as its field name; bound what a client can inject


class ValidationProblem(ValueError):
    """A request's features do not satisfy the schema; ``field`` names where."""

    def __init__(
        self, field: str, message: str, *, feature: str | None = None, kind: str | None = None
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        # When the problem is one schema feature's value: that feature's name and the
        # data-quality kind (missing | wrong_type | non_finite), so monitoring can count it
        # without reading them back out of ``field``; None for structural problems.
        self.feature = feature
        self.kind = kind


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: name, type and the range seen in training."""

    name: str
    type: str = "numeric"
    min: float = -math.inf
    max: float = math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for bundle metadata."""
        return {"name": self.name, "type": self.type, "min": self.min, "max": self.max}


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered features a model expects."""

    features: tuple[FeatureSpec, ...]
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _name_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(f.name for f in self.features)
        if not names:
            raise ValueError("a schema needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        for spec in self.features:
            if spec.type not in FEATURE_TYPES:
                raise ValueError(f"feature {spec.name!r} has unsupported type {spec.type!r}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_name_set", frozenset(names))

    def __len__(self) -> int:
        return len(self.features)

    @classmethod
    def from_training(cls, X: np.ndarray, feature_names: Sequence[str]) -> FeatureSchema:
        """Numeric schema with each feature's training min/max."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(feature_names) or X.shape[0] == 0:
            raise ValueError("X must be a non-empty 2-D array with one column per feature name")
        lo, hi = X.min(axis=0), X.max(axis=0)
        return cls(
            tuple(
                FeatureSpec(name, "numeric", float(a), float(b))
                for name, a, b in zip(feature_names, lo, hi, strict=True)
            )
        )

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready form for bundle metadata."""
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_list(cls, items: Sequence[Mapping[str, Any]]) -> FeatureSchema:
        """Rebuild from the metadata form written by ``to_list``."""
        return cls(
            tuple(
                FeatureSpec(
                    str(item["name"]),
                    str(item.get("type", "numeric")),
                    float(item.get("min", -math.inf)),
                    float(item.get("max", math.inf)),
                )
                for item in items
            )
        )


def validate_instance(schema: FeatureSchema, features: Any) -> np.ndarray:
    """Check one feature mapping and return it as a 1-D float64 array in schema order."""
    values = _row(schema, features, "")
    try:
        return np.array(values, dtype=np.float64)
    except (OverflowError, TypeError, ValueError):
        return np.array(_checked_row(schema, features, ""), dtype=np.float64)


def validate_batch(
    schema: FeatureSchema, instances: Any, *, max_instances: int | None = None
) -> np.ndarray:
    """Check a list of feature mappings and return a 2-D float64 array in schema order."""
    if isinstance(instances, str | bytes | Mapping) or not isinstance(instances, Sequence):
        raise ValidationProblem("instances", "must be a list of feature objects")
    if not instances:
        raise ValidationProblem("instances", "must contain at least one instance")
    if max_instances is not None and len(instances) > max_instances:
        raise ValidationProblem("instances", f"must contain at most {max_instances} instances")
    rows = [_row(schema, item, f"instances[{i}]") for i, item in enumerate(instances)]
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(schema))
    except (OverflowError, TypeError, ValueError):
        rows = [_checked_row(schema, item, f"instances[{i}]") for i, item in enumerate(instances)]
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(schema))


_PLAIN_NUMBERS = frozenset({int, float})


def _row(schema: FeatureSchema, features: Any, prefix: str) -> list[Any]:
    """Values in schema order; plain ints may still overflow float64 (the caller converts)."""
    # Hot path, built from C-level calls: an exact dict holding exactly the schema's keys, every
    # value an exact int or float (so bool, a subclass of int, falls through), and a finite sum
    # (NaN or +/-inf anywhere makes s - s non-zero). Anything unusual, including a sum that
    # merely overflows, drops to _checked_row, which is exact and finds the first problem.
    if type(features) is dict and len(features) == len(schema.names):
        try:
            values = list(map(features.__getitem__, schema.names))
            if set(map(type, values)) <= _PLAIN_NUMBERS:
                total = sum(values)
                if total - total == 0:
                    return values
        except (KeyError, OverflowError):
            pass
    return _checked_row(schema, features, prefix)


def _field(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _checked_row(schema: FeatureSchema, features: Any, prefix: str) -> list[float]:
    """Slow path: the values in schema order, or the first problem (missing, unknown, value)."""
    if not isinstance(features, Mapping):
        raise ValidationProblem(prefix or "features", "must be an object of feature name to number")
    for name in schema.names:
        if name not in features:
            raise ValidationProblem(
                _field(prefix, name), "required feature is missing", feature=name, kind="missing"
            )
    unknown = sorted(str(k)[:_MAX_FIELD_CHARS] for k in features if k not in schema._name_set)
    if unknown:
        raise ValidationProblem(_field(prefix, unknown[0]), "unknown feature")
    return [_checked_value(features[name], prefix, name) for name in schema.names]


def _checked_value(value: Any, prefix: str, name: str) -> float:
    def problem(message: str, kind: str) -> ValidationProblem:
        return ValidationProblem(_field(prefix, name), message, feature=name, kind=kind)

    if value is None:
        raise problem("must be a number, not null", "missing")
    # bool is a subclass of int: true/false must not silently become 1.0/0.0.
    if isinstance(value, bool | np.bool_):
        raise problem("must be a number, not a boolean", "wrong_type")
    if isinstance(value, str | bytes):
        raise problem("must be a number, not a string", "wrong_type")
    if not isinstance(value, int | float | np.integer | np.floating):
        raise problem("must be a number", "wrong_type")
    try:
        as_float = float(value)
    except OverflowError:
        raise problem("is too large to represent as a number", "non_finite") from None
    if math.isnan(as_float):
        raise problem("must be a finite number, not NaN", "non_finite")
    if math.isinf(as_float):
        raise problem("must be a finite number, not infinity", "non_finite")
    return as_float
