"""Plain value objects passed across the storage boundary (no ORM objects leak out)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# The states of a training run, in order.
TRAINING_STATUSES = ("queued", "running", "succeeded", "failed")
# Who made a prediction: the version that answered, or the one scoring in its shadow.
CHAMPION = "champion"
CHALLENGER = "challenger"
PREDICTION_ROLES = (CHAMPION, CHALLENGER)

_ID = re.compile(r"[0-9a-f]{32}")


def new_id() -> str:
    """A fresh 32-character id: Unix milliseconds (12 hex digits), then 80 random bits.

    Time-ordered like a UUIDv7 (the standard library has none before Python 3.14): a
    prediction's id says when it was made, so feedback can tell an id minted a moment ago,
    whose record may still wait in another worker's or replica's writer, from an unknown one
    (``minted_within``); and PostgreSQL's B-tree inserts land at the index's right edge.
    The shape (32 lowercase hex digits) is unchanged, so stored uuid4 ids stay valid.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def minted_at(ident: str) -> datetime | None:
    """The time :func:`new_id` wrote into ``ident`` (UTC), or None if it holds no valid time.

    An id made otherwise (an older uuid4, a challenger's derived id) decodes to a random
    time; callers treat the answer as a hint, never as the record's time.
    """
    try:
        return datetime.fromtimestamp(int(ident[:12], 16) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def minted_within(ident: str, seconds: float, *, now: float | None = None) -> bool:
    """Whether ``ident`` (shaped by :func:`new_id`) was minted in the last ``seconds``.

    An old uuid4 id decodes to a random time, which is recent by chance with a negligible
    probability (a few seconds out of thousands of years); the clock of another machine may
    run up to a second ahead.
    """
    minted = int(ident[:12], 16) / 1000
    at = time.time() if now is None else now
    return at - seconds <= minted <= at + 1.0


def challenger_id(prediction_id: str) -> str:
    """The id of the shadow challenger's score of the champion's prediction ``prediction_id``.

    Derived, not random: feedback on the champion's prediction finds its challenger's by
    primary key, with no link column and no search (a SHADOW names one version at a time, so
    a prediction has at most one challenger score). It has the shape of :func:`new_id`.
    """
    return hashlib.sha256(b"challenger:" + prediction_id.encode()).hexdigest()[:32]


def is_id(text: str) -> bool:
    """True if ``text`` has the shape of an id :func:`new_id` makes (no other can be stored)."""
    return _ID.fullmatch(text) is not None


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One served prediction, as the api layer hands it to the writer."""

    id: str
    model: str
    version: str
    created_at: datetime
    features: dict[str, Any]
    predicted_class: str
    confidence: float
    probabilities: dict[str, Any]
    latency_seconds: float
    # Traceability (migration 0002): the request's X-Request-ID, the sha256 of the version's
    # reference profile, and the version's role when it answered (champion or challenger).
    request_id: str | None = None
    profile_hash: str | None = None
    role: str = CHAMPION

    def to_row(self) -> dict[str, Any]:
        """The record as a column -> value mapping for an INSERT."""
        return {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "created_at": self.created_at,
            "features": self.features,
            "predicted_class": self.predicted_class,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "latency_seconds": self.latency_seconds,
            "request_id": self.request_id,
            "profile_hash": self.profile_hash,
            "role": self.role,
        }


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One prediction in a drift/quality window."""

    features: dict[str, Any]
    confidence: float
    predicted_class: str
    created_at: datetime
    probabilities: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScoredRow:
    """One prediction with what the clinical metrics read of it, and its label if it has one."""

    features: dict[str, Any]
    probabilities: dict[str, Any]
    predicted_class: str
    created_at: datetime
    actual: str | None


@dataclass(slots=True)
class ModelStats:
    """Raw per-model arrays; the monitoring layer computes percentiles from them."""

    count: int = 0
    latencies: list[float] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """A stored label."""

    id: int
    prediction_id: str
    actual: str
    correct: bool
    received_at: datetime


@dataclass(frozen=True, slots=True)
class LabelledPrediction:
    """A prediction joined to its label, timed by the prediction."""

    prediction_id: str
    created_at: datetime
    version: str
    predicted_class: str
    confidence: float
    actual: str
    correct: bool
    received_at: datetime
    # Read only when asked for (``with_features=True``): the clinical metrics need them, the
    # accuracy does not, and a week of feature maps is the bulk of what such a read moves.
    features: dict[str, Any] | None = None
    probabilities: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TrainingRunRecord:
    """A training run's current state."""

    id: str
    model: str
    status: str
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    version: str | None
    metrics: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit-log entry."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DriftResultRecord:
    """One stored drift computation."""

    id: int
    model: str
    version: str
    computed_at: datetime
    window_size: int
    window_start: datetime | None
    window_end: datetime | None
    drift_share: float
    results: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ThresholdOverrideRecord:
    """One threshold override."""

    key: str
    value: float
    updated_at: datetime
    updated_by: str
