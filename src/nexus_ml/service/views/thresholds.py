"""``GET/PUT /config/thresholds``: every limit with its unit and severity; audited updates.

An update is validated as a whole by :func:`nexus_ml.thresholds.apply_update`, persisted as
overrides, audited, and only then applied to this process's evaluator, so a failed write
leaves the service on the old limits. The rendered Prometheus rules are files and do not
change: ``nexus-ml render`` regenerates them from the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nexus_ml.monitoring.alerts import ALERTS
from nexus_ml.service.database import Database
from nexus_ml.service.errors import Invalid, echoes
from nexus_ml.service.threshold_state import ThresholdState
from nexus_ml.service.views.ops_results import AlertRef, ThresholdInfo, ThresholdsResponse
from nexus_ml.service.views.query import finite
from nexus_ml.stats.anomaly import SEVERITY as ANOMALY_SEVERITY
from nexus_ml.stats.anomaly import SIGNALS
from nexus_ml.stats.anomaly import THRESHOLD_KEYS as ANOMALY_KEYS
from nexus_ml.thresholds import (
    ThresholdError,
    Thresholds,
    apply_update,
    describe_thresholds,
)

_RANK = {"critical": 0, "warning": 1, "info": 2}
MAX_KEYS = 100


def _alerts_by_key() -> dict[str, list[AlertRef]]:
    """Alerts that read each key: as their limit, ``for`` duration, range or a guard."""
    out: dict[str, list[AlertRef]] = {}
    for spec in ALERTS:
        keys = (spec.threshold, spec.for_key, spec.window_key, *spec.reads)
        for key in sorted({k for k in keys if k is not None}):
            out.setdefault(str(key), []).append(AlertRef(name=spec.name, severity=spec.severity))
    # The anomaly alerts are Prometheus rules only (stats/anomaly.py); each reads every band key.
    for key in ANOMALY_KEYS:
        out[key] = [AlertRef(name=s.alert, severity=ANOMALY_SEVERITY) for s in SIGNALS.values()]
    return out


def describe(thresholds: Thresholds, overrides: Mapping[str, Any]) -> list[ThresholdInfo]:
    """Every threshold with unit, severity, the alerts using it and its override."""
    alerts = _alerts_by_key()
    rows = []
    for row in describe_thresholds(thresholds):
        key = str(row["key"])
        refs = alerts.get(key, [])
        override = overrides.get(key)
        value = row["value"]
        rows.append(
            ThresholdInfo(
                key=key,
                value=finite(value) if isinstance(value, int | float) else None,
                unit=str(row["unit"]),
                description=str(row["description"]) if row["description"] else None,
                severity=min((r.severity for r in refs), key=_RANK.__getitem__, default=None),
                alerts=refs,
                overridden=override is not None,
                updated_at=getattr(override, "updated_at", None),
                updated_by=getattr(override, "updated_by", None),
            )
        )
    return rows


def _field_of(update: Mapping[str, object], current: Thresholds, message: str) -> str:
    """The key an invalid update is about: the first that fails alone, or one the message names."""
    for key in update:
        try:
            apply_update(current, {key: update[key]})
        except ThresholdError:
            return key
    named = [k for k in update if k in message]
    return named[0] if named else "body"


def validated(current: Thresholds, update: Any) -> Thresholds:
    """``current`` with ``update`` applied, or Invalid naming the offending key."""
    if not isinstance(update, dict) or not update:
        raise Invalid("body: send an object of threshold keys and values", "body")
    if len(update) > MAX_KEYS:
        raise Invalid(f"body: at most {MAX_KEYS} keys per update", "body")
    for key in update:
        if key not in Thresholds.model_fields:
            raise Invalid(f"{key[:64]}: unknown threshold key", key[:64])
    try:
        # Types, units and ranges are checked in one place, for the API and the files alike.
        return apply_update(current, update)
    except ThresholdError as exc:
        field = _field_of(update, current, str(exc))
        message = str(exc).removeprefix("update: ")
        # The message names keys, units and rules; should one ever quote a value, say less.
        if echoes(message, [v for v in update.values() if isinstance(v, str)]):
            message = f"{field}: invalid value (see docs/thresholds.md)"
        raise Invalid(message, field) from None


class ThresholdAdmin:
    """Reads and changes the limits: stored as overrides, audited, then applied here."""

    def __init__(self, *, db: Database, thresholds: ThresholdState) -> None:
        self._db = db
        self._thresholds = thresholds

    async def get(self) -> ThresholdsResponse:
        """The limits in force in this process, with the stored overrides."""
        db = self._db
        overrides = await db.run(db.store.threshold_overrides)
        return ThresholdsResponse(thresholds=describe(self._thresholds.current, overrides))

    async def put(self, update: Any, actor: str) -> ThresholdsResponse:
        """Validate, persist as overrides, audit (as ``actor``), then apply to this process."""
        current = self._thresholds.current
        new = validated(current, update)
        changes = {
            key: {"old": getattr(current, key), "new": getattr(new, key)} for key in sorted(update)
        }
        db = self._db
        store = db.store
        for key in sorted(update):
            value = getattr(new, key)
            if value is None:  # unset (only the optional bytes ceiling can be)
                await db.run(store.delete_threshold_override, key)
            else:
                await db.run(store.set_threshold_override, key, value, actor)
        await db.run(store.audit, actor, "update_thresholds", "thresholds", {"changes": changes})
        self._thresholds.apply(new)
        overrides = await db.run(store.threshold_overrides)
        changed = [k for k, c in changes.items() if c["old"] != c["new"]]
        return ThresholdsResponse(thresholds=describe(new, overrides), changed=changed)
