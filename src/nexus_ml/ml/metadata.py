"""The typed model of a bundle's ``metadata.json``: every field checked before anything uses it.

Parsed strictly (no coercion, no NaN or infinity, no unknown keys, no duplicate JSON keys), then
checked for consistency: the profile covers exactly the schema's features, in order, with the
array lengths and orderings that drift, data-quality and accuracy estimation rely on; the class
balance names the metadata's classes; counts agree with the training metrics. Error messages
name the field, never its value (a profile is a summary of patient data).

Three fields came with clinical monitoring and are optional, so older bundles still load:
``operating_point`` (absent: the positive class by ``ml.operating``'s default rule, the argmax
rule), ``segments`` (absent: none) and ``baseline`` (absent: null), the holdout's clinical
metrics at the operating point (``stats.clinical.realised(...).to_dict()``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from nexus_ml.ml.baseline import Baseline
from nexus_ml.ml.errors import BundleError
from nexus_ml.ml.operating import default_positive_class
from nexus_ml.ml.profile import CONFIDENCE_EDGES, N_QUANTILES
from nexus_ml.ml.schema import MAX_CATEGORY_CHARS, FeatureSchema, feature_name_problem
from nexus_ml.ml.segments import (
    MAX_GROUP_CHARS,
    MAX_STORED_SEGMENT_GROUPS,
    Segment,
    SegmentError,
    check_segments,
)
from nexus_ml.ml.strict import REL_TOL as _REL_TOL
from nexus_ml.ml.strict import Count, Name, Positive, Ratio
from nexus_ml.ml.strict import Strict as _Strict


def _close(a: float, b: float, scale: float = 1.0) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_REL_TOL * max(1.0, abs(scale)))


def _non_decreasing(values: Sequence[float], scale: float) -> bool:
    slack = _REL_TOL * max(1.0, abs(scale))
    return bool(np.all(np.diff(np.asarray(values, dtype=np.float64)) >= -slack))


def _feature_name(name: str) -> str:
    problem = feature_name_problem(name)
    if problem is not None:
        raise ValueError(f"a feature name {problem}")
    return name


FeatureName = Annotated[str, AfterValidator(_feature_name)]


class FeatureEntry(_Strict):
    """One feature of the schema: its name, type, nullability and what training saw.

    ``numeric`` is the type bundles written before typed features used: read as ``number``.
    """

    name: FeatureName
    type: Literal["number", "integer", "category", "numeric"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[Annotated[str, Field(max_length=MAX_CATEGORY_CHARS)]] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FeatureEntry:
        if self.type == "category":
            if self.min is not None or self.max is not None:
                raise ValueError("a category feature has no min or max")
            if self.categories is None:
                raise ValueError("a category feature needs categories")
            if self.categories != sorted(set(self.categories)):
                raise ValueError("categories must be unique and sorted")
            return self
        if self.categories is not None:
            raise ValueError("only a category feature has categories")
        if self.min is None or self.max is None:
            raise ValueError("a number or integer feature needs min and max")
        if self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class TrainingMetrics(_Strict):
    """Holdout metrics and sizes; further keys are allowed if they are finite numbers."""

    model_config = ConfigDict(extra="allow")

    holdout_accuracy: Ratio
    n_samples: Positive
    # 0 only for an imported pipeline (``source.kind == "import"``): trained elsewhere, and
    # the "holdout" is the reference CSV it was scored on.
    n_train: Annotated[int, Field(ge=0)]
    n_holdout: Positive
    n_features: Positive
    training_seconds: Annotated[float, Field(ge=0.0)]

    @model_validator(mode="after")
    def _sizes(self) -> TrainingMetrics:
        if self.n_train + self.n_holdout != self.n_samples:
            raise ValueError("n_train + n_holdout differs from n_samples")
        for key, value in (self.model_extra or {}).items():
            if type(value) not in (int, float) or not math.isfinite(value):
                raise ValueError(f"{_safe(key)} must be a finite number")
        return self


class Source(_Strict):
    """What a retrain reads again: a bundled dataset, a CSV file, or nothing recorded."""

    kind: Literal["bundled", "csv", "import"] | None = None
    dataset: Name | None = None
    path: Name | None = None
    target: Name | None = None
    # How a CSV was read and trained (``nexus-ml train`` options), so a retrain repeats it.
    estimator: Literal["logistic", "hist_gradient_boosting", "random_forest"] | None = None
    categorical: list[FeatureName] | None = None
    nullable: list[FeatureName] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Source:
        if self.kind in ("csv", "import") and (self.path is None or self.target is None):
            raise ValueError(f"a {self.kind} source needs path and target")
        if self.kind == "bundled" and self.dataset is None:
            raise ValueError("a bundled source needs dataset")
        return self


class NumericProfile(_Strict):
    """One numeric feature's reference summary (see ``nexus_ml.ml.profile``)."""

    type: Literal["numeric"]
    n: Positive
    n_missing: Count
    mean: float
    std: Annotated[float, Field(ge=0.0)]
    min: float
    max: float
    quantiles: list[float]
    bin_edges: list[float]
    bin_counts: list[Count]

    @model_validator(mode="after")
    def _consistent(self) -> NumericProfile:
        lo, hi, q = self.min, self.max, self.quantiles
        scale = max(abs(lo), abs(hi))
        if lo > hi:
            raise ValueError("min is greater than max")
        if not lo - _REL_TOL * max(1.0, scale) <= self.mean <= hi + _REL_TOL * max(1.0, scale):
            raise ValueError("mean lies outside [min, max]")
        if len(q) != N_QUANTILES:
            raise ValueError(f"quantiles must hold {N_QUANTILES} values")
        if not (_close(q[0], lo, scale) and _close(q[-1], hi, scale)):
            raise ValueError("quantiles must run from min to max")
        if not _non_decreasing(q, scale):
            raise ValueError("quantiles must not decrease")
        if not _non_decreasing(self.bin_edges, scale) or any(
            not lo <= e <= hi for e in self.bin_edges
        ):
            raise ValueError("bin_edges must be sorted and inside [min, max]")
        if len(self.bin_counts) != len(self.bin_edges) + 1:
            raise ValueError("bin_counts must hold one count more than bin_edges")
        if sum(self.bin_counts) != self.n:
            raise ValueError("bin_counts must add up to n")
        return self


class CategoricalProfile(_Strict):
    """One categorical feature's reference category counts."""

    type: Literal["categorical"]
    n: Count
    n_missing: Count
    categories: list[str]
    category_counts: list[Count]

    @model_validator(mode="after")
    def _consistent(self) -> CategoricalProfile:
        if len(self.categories) != len(self.category_counts):
            raise ValueError("categories and category_counts differ in length")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories must be unique")
        if sum(self.category_counts) != self.n:
            raise ValueError("category_counts must add up to n")
        return self


FeatureProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="type")]


class ClassBalance(_Strict):
    """Training rows per class."""

    classes: list[str]
    counts: list[Count]


class Calibration(_Strict):
    """Isotonic map of holdout correctness on confidence, as breakpoints."""

    x: Annotated[list[Ratio], Field(min_length=1)]
    y: list[Ratio]

    @model_validator(mode="after")
    def _monotone(self) -> Calibration:
        if len(self.x) != len(self.y):
            raise ValueError("x and y differ in length")
        if not (_non_decreasing(self.x, 1.0) and _non_decreasing(self.y, 1.0)):
            raise ValueError("a calibration map must not decrease")
        return self


class ConfidenceProfile(_Strict):
    """The holdout's confidence histogram, accuracy and calibration map."""

    n: Positive
    mean: Ratio
    bin_edges: list[float]
    bin_counts: list[Count]
    accuracy: Ratio | None = None
    correct_counts: list[Count] | None = None
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ConfidenceProfile:
        edges = CONFIDENCE_EDGES.tolist()
        if len(self.bin_edges) != len(edges) or not all(
            _close(a, b) for a, b in zip(self.bin_edges, edges, strict=True)
        ):
            raise ValueError("bin_edges must be the confidence histogram's edges")
        if len(self.bin_counts) != len(edges) - 1 or sum(self.bin_counts) != self.n:
            raise ValueError("bin_counts must hold one count per bin, adding up to n")
        if self.correct_counts is not None and (
            len(self.correct_counts) != len(self.bin_counts)
            or any(c > b for c, b in zip(self.correct_counts, self.bin_counts, strict=True))
        ):
            raise ValueError("correct_counts must not exceed bin_counts")
        return self


class Profile(_Strict):
    """The reference profile (``PROFILE_VERSION`` 1) of a bundle."""

    version: Literal[1]
    n_samples: Positive
    feature_names: list[Name]
    features: dict[str, FeatureProfile]
    class_balance: ClassBalance
    confidence: ConfidenceProfile


class OperatingPoint(_Strict):
    """The positive class (binary models only) and the decision threshold (None: argmax)."""

    positive_class: Name | None = None
    # Served positive iff P(positive) >= threshold; 0 and 1 would make one class unreachable.
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None


GroupName = Annotated[str, Field(min_length=1, max_length=MAX_GROUP_CHARS)]


class SegmentEntry(_Strict):
    """One declared segment feature (see ``ml.segments``): its closed list of groups."""

    feature: FeatureName
    groups: Annotated[list[GroupName], Field(min_length=1, max_length=MAX_STORED_SEGMENT_GROUPS)]
    edges: (
        Annotated[list[float], Field(min_length=2, max_length=MAX_STORED_SEGMENT_GROUPS)] | None
    ) = None

    def segment(self) -> Segment:
        """The ``ml.segments`` form."""
        edges = None if self.edges is None else tuple(self.edges)
        return Segment(self.feature, tuple(self.groups), edges)


class BundleMetadata(_Strict):
    """Everything ``metadata.json`` holds, checked field by field and across fields."""

    name: Name
    version: Name
    created_at: Name
    classes: Annotated[list[Name], Field(min_length=2)]
    features: Annotated[list[FeatureEntry], Field(min_length=1)]
    training_metrics: TrainingMetrics
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    sklearn_version: Name
    profile: Profile
    source: Source
    # Optional (see the module's docstring); after parsing, operating_point is never None.
    operating_point: OperatingPoint | None = None
    segments: list[SegmentEntry] = Field(default_factory=list, max_length=MAX_STORED_SEGMENT_GROUPS)
    baseline: Baseline | None = None
    # Who made this version: an API key's fingerprint, ``cli:<os user>`` or ``service``.
    created_by: Name | None = None

    @property
    def feature_names(self) -> list[str]:
        """The schema's feature names, in order."""
        return [f.name for f in self.features]

    def feature_schema(self) -> FeatureSchema:
        """The typed feature schema these features describe."""
        return FeatureSchema.from_list([f.model_dump() for f in self.features])

    @property
    def positive_class(self) -> str | None:
        """The binary model's positive class (None for more than two classes)."""
        return self.operating_point.positive_class if self.operating_point else None

    @property
    def threshold(self) -> float | None:
        """The decision threshold on P(positive); None for the argmax rule."""
        return self.operating_point.threshold if self.operating_point else None

    def segment_list(self) -> tuple[Segment, ...]:
        """The declared segments in the ``ml.segments`` form."""
        return tuple(entry.segment() for entry in self.segments)

    @model_validator(mode="after")
    def _consistent(self) -> BundleMetadata:
        try:
            created = datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("created_at must be an ISO 8601 UTC time") from None
        if not self.created_at.endswith("Z") or created.utcoffset() is None:
            raise ValueError("created_at must be an ISO 8601 UTC time")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes must be unique")
        names = self.feature_names
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        tm = self.training_metrics
        if tm.n_train == 0 and self.source.kind != "import":
            raise ValueError("training_metrics.n_train must be positive for a model trained here")
        if tm.n_features != len(names):
            raise ValueError("training_metrics.n_features differs from the number of features")
        self._check_profile(names)
        self._check_operating_point()
        try:
            check_segments(
                self.feature_schema(), self.segment_list(), max_groups=MAX_STORED_SEGMENT_GROUPS
            )
        except SegmentError as exc:
            raise ValueError(f"segments: {_safe_message(exc)}") from None
        self._check_baseline()
        return self

    def _check_operating_point(self) -> None:
        point = self.operating_point
        if point is None:
            # A bundle from before operating points: what it has always served (argmax).
            derived = default_positive_class(self.classes, self.profile.class_balance.counts)
            # Frozen model: set once here, during validation, before anyone can read it.
            object.__setattr__(self, "operating_point", OperatingPoint(positive_class=derived))
            return
        if len(self.classes) == 2:
            if point.positive_class not in self.classes:
                raise ValueError("operating_point.positive_class must be one of the classes")
        elif point.positive_class is not None or point.threshold is not None:
            raise ValueError(
                "operating_point: a model of more than two classes has no positive class "
                "or threshold"
            )

    def _check_baseline(self) -> None:
        baseline = self.baseline
        if baseline is None:
            return
        if list(baseline.classes) != self.classes:
            raise ValueError("baseline.classes must list exactly the metadata's classes, in order")
        if baseline.n != self.training_metrics.n_holdout:
            raise ValueError("baseline.n differs from training_metrics.n_holdout")

    def _check_profile(self, names: list[str]) -> None:
        p, tm = self.profile, self.training_metrics
        if p.feature_names != names:
            raise ValueError("profile.feature_names differ from the schema's names or order")
        if set(p.features) != set(names):
            raise ValueError("profile.features must cover exactly the schema's features")
        if p.n_samples != tm.n_samples:
            raise ValueError("profile.n_samples differs from training_metrics.n_samples")
        for spec in self.features:
            feat = p.features[spec.name]
            where = f"profile.features.{_safe(spec.name)}"
            if feat.n + feat.n_missing != p.n_samples:
                raise ValueError(f"{where}: n + n_missing differs from n_samples")
            if feat.n_missing and not spec.nullable:
                raise ValueError(f"{where}: missing in training, but the schema is not nullable")
            if isinstance(feat, CategoricalProfile):
                if spec.type != "category":
                    raise ValueError(f"{where}: type differs from the schema")
                if sorted(feat.categories) != spec.categories:
                    raise ValueError(f"{where}: categories differ from the schema's")
                continue
            if spec.type == "category" or spec.min is None or spec.max is None:
                raise ValueError(f"{where}: type differs from the schema")
            scale = max(abs(spec.min), abs(spec.max))
            if not (_close(feat.min, spec.min, scale) and _close(feat.max, spec.max, scale)):
                raise ValueError(f"{where}: range differs from the schema's training range")
        balance = p.class_balance
        if balance.classes != self.classes or len(balance.counts) != len(self.classes):
            raise ValueError("profile.class_balance must count exactly the metadata's classes")
        if sum(balance.counts) != p.n_samples:
            raise ValueError("profile.class_balance counts must add up to n_samples")
        conf = p.confidence
        if conf.n != tm.n_holdout:
            raise ValueError("profile.confidence.n differs from training_metrics.n_holdout")
        # Both are the holdout's accuracy (argmax of the probabilities against predict()):
        # they can differ only where two classes tie, at most by one row.
        if conf.accuracy is not None and abs(conf.accuracy - tm.holdout_accuracy) > (
            1.0 / tm.n_holdout + _REL_TOL
        ):
            raise ValueError("holdout_accuracy differs from the profile's holdout accuracy")


class _NotStrictJson(ValueError):
    """JSON that Python's parser accepts but a bundle must not hold."""


def _refuse_constant(token: str) -> Any:
    raise _NotStrictJson("NaN and infinity are not JSON numbers")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _NotStrictJson("a JSON object repeats a key")
    return out


def read_json(data: bytes, what: str) -> Any:
    """Parse JSON strictly (no NaN/Infinity, no repeated keys), or raise BundleError."""
    try:
        return json.loads(
            data.decode("utf-8"), parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates
        )
    except _NotStrictJson as exc:
        raise BundleError(f"{what} is unreadable: {exc}", reason="metadata") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{what} is unreadable: not valid JSON", reason="metadata") from None


def parse_metadata(raw: Any) -> BundleMetadata:
    """Validate a decoded ``metadata.json``; raise BundleError naming the first bad field."""
    try:
        return BundleMetadata.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        first = errors[0]
        where = _location(first["loc"])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        if first["type"].startswith("union_tag"):  # pydantic quotes the tag it found
            message = "type must be 'numeric' or 'categorical'"
        field = f" field {where}" if where else ""
        raise BundleError(f"metadata{field}: {message}{more}", reason="metadata") from None


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _safe_message(exc: Exception) -> str:
    # Segment errors name only the schema's own features (already printable, bounded).
    return "".join(c if c.isprintable() else "?" for c in str(exc))[:300]


def _safe(part: object) -> str:
    # A key of a forged file could hold anything; a log line gets a short, plain version of it.
    return _UNSAFE.sub("?", str(part))[:64]


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("numeric", "categorical"):  # the union's tag, not a field
            out += ("." if out else "") + _safe(part)
    return out
