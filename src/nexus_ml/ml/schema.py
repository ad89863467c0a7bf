"""Typed feature schema and request-path validation of feature mappings.

A feature is a ``number``, an ``integer`` or a ``category`` (its training categories listed),
and is ``nullable`` when it was missing in the training data or declared so. Validation reports
every problem of a request (each naming its field, a bounded number of them), and returns, for
a valid request, the values in schema order with the warnings its answer carries
(``unseen_category``, ``out_of_range``). Error messages name the offending field but never echo
its value: feature values are patient data and must not reach responses or logs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

FeatureType = Literal["number", "integer", "category"]
FEATURE_TYPES: tuple[FeatureType, ...] = ("number", "integer", "category")
# Bundles written before types existed say "numeric": a number, never null.
LEGACY_TYPES = {"numeric": "number"}
WARNING_KINDS = ("unseen_category", "out_of_range")
# A feature name is a metric label value and a JSON key: bounded, printable text.
MAX_NAME_CHARS = 128
_MAX_FIELD_CHARS = 64  # an unknown key is echoed as its field name; bound what a client can inject
# A batch of 1,000 rows of 30 bad values would list 30,000 problems: list the first ones only.
MAX_PROBLEMS = 100
MAX_CATEGORY_CHARS = 256  # the metadata's bound on one category

Issue = tuple[str, str]  # (feature, kind): a warning of an answer, or a data-quality issue


def feature_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a feature name (None if it can): 1-128 printable characters."""
    if not isinstance(name, str) or not name:
        return "must be non-empty text"
    if len(name) > MAX_NAME_CHARS:
        return f"must be at most {MAX_NAME_CHARS} characters"
    # isprintable() is False for control, format, surrogate and separator characters other
    # than the plain space: nothing that could break a log line, a label or a terminal.
    if not name.isprintable():
        return "must hold printable characters only"
    return None


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a request: the field it concerns and the rule broken (never the value)."""

    field: str
    message: str
    # For a schema feature's value: the feature and its data-quality kind (missing |
    # wrong_type | non_finite | unseen_category), so monitoring can count it; else None.
    feature: str | None = None
    kind: str | None = None

    def to_dict(self) -> dict[str, str]:
        """The JSON form of one problem in an error body."""
        return {"field": self.field, "detail": f"{self.field}: {self.message}"}


class ValidationProblem(ValueError):
    """A request's features do not satisfy the schema; ``problems`` lists every problem found.

    ``field``, ``message``, ``feature`` and ``kind`` are the first problem's.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        feature: str | None = None,
        kind: str | None = None,
        problems: Sequence[Problem] = (),
        omitted: int = 0,
    ) -> None:
        first = Problem(field, message, feature, kind)
        self.problems: tuple[Problem, ...] = tuple(problems) or (first,)
        self.omitted = omitted  # problems found beyond MAX_PROBLEMS, not listed
        more = len(self.problems) - 1 + omitted
        super().__init__(f"{field}: {message}" + (f" (and {more} more)" if more else ""))
        self.field = field
        self.message = message
        self.feature = feature
        self.kind = kind

    @classmethod
    def of(cls, problems: Sequence[Problem], omitted: int = 0) -> ValidationProblem:
        """One exception for a non-empty list of problems."""
        p = problems[0]
        return cls(
            p.field, p.message, feature=p.feature, kind=p.kind, problems=problems, omitted=omitted
        )


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: name, type, whether it may be missing, and what training saw."""

    name: str
    type: str = "number"
    min: float = -math.inf
    max: float = math.inf
    nullable: bool = False
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", LEGACY_TYPES.get(self.type, self.type))
        object.__setattr__(self, "categories", tuple(self.categories))

    @property
    def is_category(self) -> bool:
        """True for a category feature (sent as a string)."""
        return self.type == "category"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for bundle metadata."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.is_category:
            out["categories"] = list(self.categories)
        else:
            out["min"], out["max"] = self.min, self.max
        return out


@dataclass(frozen=True)
class FeatureSchema:
    """Ordered features a model expects."""

    features: tuple[FeatureSpec, ...]
    # Category features whose pipeline cannot answer an unseen category (found by probing
    # at load): such a value is refused with 422 rather than answered.
    unseen_refused: frozenset[str] = field(default=frozenset(), compare=False)
    names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    numeric_only: bool = field(init=False, repr=False, compare=False)
    _name_set: frozenset[str] = field(init=False, repr=False, compare=False)
    _int_idx: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _lo: list[float] = field(init=False, repr=False, compare=False)
    _hi: list[float] = field(init=False, repr=False, compare=False)
    _categories: dict[str, frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(f.name for f in self.features)
        if not names:
            raise ValueError("a schema needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        for spec in self.features:
            problem = feature_name_problem(spec.name)
            if problem is not None:
                raise ValueError(f"a feature name {problem}")
            if spec.type not in FEATURE_TYPES:
                raise ValueError(f"feature {spec.name!r} has unsupported type {spec.type!r}")
        setattr_ = object.__setattr__
        setattr_(self, "names", names)
        setattr_(self, "numeric_only", not any(f.is_category for f in self.features))
        setattr_(self, "_name_set", frozenset(names))
        setattr_(
            self, "_int_idx", tuple(i for i, f in enumerate(self.features) if f.type == "integer")
        )
        # Categories get an infinite range: the range loop then never flags them.
        setattr_(self, "_lo", [-math.inf if f.is_category else f.min for f in self.features])
        setattr_(self, "_hi", [math.inf if f.is_category else f.max for f in self.features])
        setattr_(
            self,
            "_categories",
            {f.name: frozenset(f.categories) for f in self.features if f.is_category},
        )

    def __len__(self) -> int:
        return len(self.features)

    def refusing_unseen(self, names: frozenset[str]) -> FeatureSchema:
        """The same schema, refusing unseen categories of ``names`` (their pipeline cannot)."""
        return FeatureSchema(self.features, unseen_refused=frozenset(names))

    @classmethod
    def from_training(cls, X: np.ndarray, feature_names: Sequence[str]) -> FeatureSchema:
        """Number schema (never null) with each feature's training min/max."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(feature_names) or X.shape[0] == 0:
            raise ValueError("X must be a non-empty 2-D array with one column per feature name")
        lo, hi = X.min(axis=0), X.max(axis=0)
        return cls(
            tuple(
                FeatureSpec(name, "number", float(a), float(b))
                for name, a, b in zip(feature_names, lo, hi, strict=True)
            )
        )

    def to_list(self) -> list[dict[str, Any]]:
        """JSON-ready form for bundle metadata."""
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_list(cls, items: Sequence[Mapping[str, Any]]) -> FeatureSchema:
        """Rebuild from the metadata form written by ``to_list`` (or a pre-types bundle's)."""
        return cls(
            tuple(
                FeatureSpec(
                    str(item["name"]),
                    str(item.get("type", "number")),
                    _bound(item.get("min"), -math.inf),
                    _bound(item.get("max"), math.inf),
                    nullable=bool(item.get("nullable", False)),
                    categories=tuple(str(c) for c in item.get("categories") or ()),
                )
                for item in items
            )
        )


def _bound(value: Any, default: float) -> float:
    return default if value is None else float(value)


class CheckedRow(NamedTuple):
    """One valid instance: values in schema order and the warnings its answer carries."""

    row: np.ndarray  # 1-D; float64 (NaN for null) if the schema has no category, else object
    warnings: list[Issue]


class CheckedBatch(NamedTuple):
    """Valid instances: a 2-D array in schema order and each row's warnings."""

    X: np.ndarray
    warnings: list[list[Issue]]


def check_instance(schema: FeatureSchema, features: Any) -> CheckedRow:
    """Check one feature mapping: its values and warnings, or ValidationProblem listing all."""
    values = _fast_row(schema, features)
    if values is not None:
        try:
            row = np.array(values, dtype=np.float64)
        except OverflowError:
            pass  # a plain int beyond float64: the exact path below names it
        else:
            return CheckedRow(row, _warnings(schema, values))
    batch = _checked([features], schema, lambda i: "")
    return CheckedRow(batch.X[0], batch.warnings[0])


def check_batch(
    schema: FeatureSchema, instances: Any, *, max_instances: int | None = None
) -> CheckedBatch:
    """Check a list of feature mappings; every problem of every instance is reported."""
    if isinstance(instances, str | bytes | Mapping) or not isinstance(instances, Sequence):
        raise ValidationProblem("instances", "must be a list of feature objects")
    if not instances:
        raise ValidationProblem("instances", "must contain at least one instance")
    if max_instances is not None and len(instances) > max_instances:
        raise ValidationProblem("instances", f"must contain at most {max_instances} instances")
    return _checked(instances, schema, lambda i: f"instances[{i}]")


def validate_instance(schema: FeatureSchema, features: Any) -> np.ndarray:
    """Check one feature mapping and return it as a 1-D array in schema order."""
    return check_instance(schema, features).row


def validate_batch(
    schema: FeatureSchema, instances: Any, *, max_instances: int | None = None
) -> np.ndarray:
    """Check a list of feature mappings and return a 2-D array in schema order."""
    return check_batch(schema, instances, max_instances=max_instances).X


def _checked(
    instances: Sequence[Any], schema: FeatureSchema, prefix: Callable[[int], str]
) -> CheckedBatch:
    collector = _Problems()
    rows = [_row(schema, item, prefix(i), collector) for i, item in enumerate(instances)]
    collector.raise_if_any()
    valid: list[list[Any]] = [r for r in rows if r is not None]
    try:
        X = _as_array(valid, schema)
    except OverflowError:
        # The hot path let through a plain int beyond float64: the exact path names it.
        for i, item in enumerate(instances):
            _checked_row(schema, item, prefix(i), collector)
        collector.raise_if_any()
        raise
    return CheckedBatch(X, [_warnings(schema, r) for r in valid])


class _Problems:
    """Problems found so far, bounded; ``raise_if_any`` turns them into one exception."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.omitted = 0

    def add(self, problem: Problem) -> None:
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(problem)
        else:
            self.omitted += 1

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationProblem.of(self.items, self.omitted)


def _as_array(rows: list[list[Any]], schema: FeatureSchema) -> np.ndarray:
    if not schema.numeric_only:
        out = np.empty((len(rows), len(schema)), dtype=object)
        out[:] = rows
        return out
    # Every value is an int or a float already checked to fit a float64; None is missing.
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(schema))


def _warnings(schema: FeatureSchema, values: list[Any]) -> list[Issue]:
    """Out-of-range numbers and unseen categories of one valid row (usually none)."""
    # Plain Python over lists beats numpy for ~30 values (see stats/quality.py). A number
    # schema's values are all numbers (NaN compares False both ways).
    if schema.numeric_only:
        for v, a, b in zip(values, schema._lo, schema._hi, strict=True):
            if v < a or v > b:
                break
        else:
            return []
    out: list[Issue] = []
    cats = schema._categories
    for spec, v, a, b in zip(schema.features, values, schema._lo, schema._hi, strict=True):
        if v is None:
            continue
        if spec.is_category:
            if v not in cats[spec.name]:
                out.append((spec.name, "unseen_category"))
        elif v < a or v > b:
            out.append((spec.name, "out_of_range"))
    return out


_PLAIN_NUMBERS = frozenset({int, float})


def _row(
    schema: FeatureSchema, features: Any, prefix: str, problems: _Problems
) -> list[Any] | None:
    """Values in schema order, or None after adding this instance's problems."""
    values = _fast_row(schema, features)
    if values is not None:
        return values
    return _checked_row(schema, features, prefix, problems)


def _fast_row(schema: FeatureSchema, features: Any) -> list[Any] | None:
    """Values in schema order when nothing is unusual, else None (the exact path decides)."""
    # Hot path for number schemas, built from C-level calls: an exact dict holding exactly the
    # schema's keys, every value an exact int or float (so bool, a subclass of int, and None
    # fall through), and a finite sum (NaN or +/-inf anywhere makes s - s non-zero). Anything
    # unusual, including a sum that merely overflows, drops to _checked_row, which is exact and
    # finds every problem.
    if schema.numeric_only and type(features) is dict and len(features) == len(schema.names):
        try:
            values = list(map(features.__getitem__, schema.names))
            if set(map(type, values)) <= _PLAIN_NUMBERS:
                total = sum(values)
                if total - total == 0 and all(
                    float(values[i]).is_integer() for i in schema._int_idx
                ):
                    return values
        except (KeyError, OverflowError):
            pass
    return None


def _field(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _client_key(key: object) -> str:
    # A client's own key: bounded and printable before it is echoed as a field name.
    text = str(key)[:_MAX_FIELD_CHARS]
    return "".join(c if c.isprintable() else "?" for c in text)


def _checked_row(
    schema: FeatureSchema, features: Any, prefix: str, problems: _Problems
) -> list[Any] | None:
    """Slow path: the values in schema order, or None after adding every problem found."""
    if not isinstance(features, Mapping):
        problems.add(Problem(prefix or "features", "must be an object of feature name to value"))
        return None
    before = len(problems.items) + problems.omitted
    for name in schema.names:
        if name not in features:
            problems.add(
                Problem(_field(prefix, name), "required feature is missing", name, "missing")
            )
    for key in sorted(_client_key(k) for k in features if k not in schema._name_set):
        problems.add(Problem(_field(prefix, key), "unknown feature"))
    values: list[Any] = []
    for spec in schema.features:
        if spec.name not in features:
            continue
        value, problem = _checked_value(spec, features[spec.name], schema)
        if problem is not None:
            message, kind = problem
            problems.add(Problem(_field(prefix, spec.name), message, spec.name, kind))
        values.append(value)
    return values if len(problems.items) + problems.omitted == before else None


def _category_problem(value: str) -> str | None:
    """Why a category string cannot be stored with its prediction (None if it can)."""
    if len(value) > MAX_CATEGORY_CHARS:
        return f"must be at most {MAX_CATEGORY_CHARS} characters"
    # PostgreSQL's JSON cannot hold NUL, and no UTF-8 store a lone surrogate: both would
    # fail the audit record after the answer was computed.
    if "\x00" in value:
        return "must not contain a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None


def _checked_value(
    spec: FeatureSpec, value: Any, schema: FeatureSchema
) -> tuple[Any, tuple[str, str] | None]:
    """The value as served (float, str or None), or the problem's (message, kind)."""
    what = "a string" if spec.is_category else "a number"
    if value is None:
        if spec.nullable:
            return (None if spec.is_category else math.nan), None
        return None, (f"must be {what}, not null (this feature may not be missing)", "missing")
    # bool is a subclass of int: true/false must not silently become 1.0/0.0.
    if isinstance(value, bool | np.bool_):
        return None, (f"must be {what}, not a boolean", "wrong_type")
    if spec.is_category:
        if not isinstance(value, str):
            return None, ("must be a string (a category)", "wrong_type")
        problem = _category_problem(value)
        if problem is not None:
            return None, (problem, "wrong_type")
        if value not in schema._categories[spec.name] and spec.name in schema.unseen_refused:
            return None, (
                "is a category not seen in training, which this model cannot answer",
                "unseen_category",
            )
        return value, None
    if isinstance(value, str | bytes):
        return None, (f"must be {what}, not a string", "wrong_type")
    if not isinstance(value, int | float | np.integer | np.floating):
        return None, (f"must be {what}", "wrong_type")
    try:
        as_float = float(value)
    except OverflowError:
        return None, ("is too large to represent as a number", "non_finite")
    if math.isnan(as_float):
        return None, ("must be a finite number, not NaN", "non_finite")
    if math.isinf(as_float):
        return None, ("must be a finite number, not infinity", "non_finite")
    if spec.type == "integer" and not as_float.is_integer():
        return None, ("must be a whole number (an integer feature)", "wrong_type")
    return as_float, None
