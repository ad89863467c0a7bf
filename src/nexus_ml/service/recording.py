"""The stored record of one scored instance, for the champion's answer and a challenger's score."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from nexus_ml.ml.registry import LoadedModel
from nexus_ml.storage.records import CHAMPION, PredictionRecord, new_id


def prediction_record(
    loaded: LoadedModel,
    *,
    sent: dict[str, Any],
    index: int,
    probabilities: np.ndarray,
    latency: float,
    at: datetime,
    request_id: str | None,
    role: str = CHAMPION,
    record_id: str | None = None,
) -> PredictionRecord:
    """The record of one scored instance: the features as the client ``sent`` them."""
    classes = loaded.classes
    return PredictionRecord(
        id=record_id or new_id(),
        model=loaded.name,
        version=loaded.version,
        created_at=at,
        features=sent,
        predicted_class=classes[index],
        confidence=float(probabilities[index]),
        probabilities=dict(zip(classes, map(float, probabilities), strict=True)),
        latency_seconds=latency,
        request_id=request_id,
        profile_hash=loaded.profile_hash,
        role=role,
    )
