"""``GET/PUT /config/thresholds``: every limit with its unit and severity; audited updates.

An update is validated as a whole by :func:`nexus_ml.thresholds.apply_update`, persisted as
overrides, audited, and only then applied to this process's evaluator, so a failed write
leaves the service on the old limits. The rendered Prometheus rules are files and do not
change: ``nexus-ml render`` regenerates them from the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nexus_ml.api.auth import Principal
from nexus_ml.api.errors import ApiError, echoes
from nexus_ml.api.monitoring_query import db_call, finite
from nexus_ml.api.monitoring_schemas_ops import AlertRef, ThresholdInfo, ThresholdsResponse
from nexus_ml.monitoring.alerts import ALERTS
from nexus_ml.thresholds import (
    ThresholdError,
    Thresholds,
    apply_update,
    describe_thresholds,
)

if TYPE_CHECKING:
    from nexus_ml.api.state import Nexus

_RANK = {"critical": 0, "warning": 1, "info": 2}
MAX_KEYS = 100


def _alerts_by_key() -> dict[str, list[AlertRef]]:
    """Alerts that read each key: as their limit, their ``for`` duration or their range."""
    out: dict[str, list[AlertRef]] = {}
    for spec in ALERTS:
        for key in {spec.threshold, spec.for_key, spec.window_key} - {None}:
            out.setdefault(str(key), []).append(AlertRef(name=spec.name, severity=spec.severity))
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


async def get_thresholds(nexus: Nexus) -> ThresholdsResponse:
    """The limits in force in this process, with the stored overrides."""
    overrides = await db_call(nexus, nexus.store.threshold_overrides)
    return ThresholdsResponse(thresholds=describe(nexus.thresholds, overrides))


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
    """``current`` with ``update`` applied, or a 422 naming the offending key."""
    if not isinstance(update, dict) or not update:
        raise ApiError(422, "body: send an object of threshold keys and values", "body")
    if len(update) > MAX_KEYS:
        raise ApiError(422, f"body: at most {MAX_KEYS} keys per update", "body")
    for key in update:
        if key not in Thresholds.model_fields:
            raise ApiError(422, f"{key[:64]}: unknown threshold key", key[:64])
    try:
        # Types, units and ranges are checked in one place, for the API and the files alike.
        return apply_update(current, update)
    except ThresholdError as exc:
        field = _field_of(update, current, str(exc))
        message = str(exc).removeprefix("update: ")
        # The message names keys, units and rules; should one ever quote a value, say less.
        if echoes(message, [v for v in update.values() if isinstance(v, str)]):
            message = f"{field}: invalid value (see docs/thresholds.md)"
        raise ApiError(422, message, field) from None


async def put_thresholds(nexus: Nexus, principal: Principal, update: Any) -> ThresholdsResponse:
    """Validate, persist as overrides, audit, then apply to this process."""
    current = nexus.thresholds
    new = validated(current, update)
    changes = {
        key: {"old": getattr(current, key), "new": getattr(new, key)} for key in sorted(update)
    }
    store = nexus.store
    for key in sorted(update):
        value = getattr(new, key)
        if value is None:  # unset (only the optional bytes ceiling can be)
            await db_call(nexus, store.delete_threshold_override, key)
        else:
            await db_call(nexus, store.set_threshold_override, key, value, principal.fingerprint)
    await db_call(
        nexus,
        store.audit,
        principal.fingerprint,
        "update_thresholds",
        "thresholds",
        {"changes": changes},
    )
    nexus.apply_thresholds(new)
    overrides = await db_call(nexus, store.threshold_overrides)
    changed = [k for k, c in changes.items() if c["old"] != c["new"]]
    return ThresholdsResponse(thresholds=describe(new, overrides), changed=changed)
