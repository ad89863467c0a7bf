"""The limits in force in this process: the file/environment ones plus the stored overrides."""

from __future__ import annotations

import logging
from collections.abc import Callable

from nexus_ml.storage.repositories import Store
from nexus_ml.thresholds import Thresholds, apply_valid_overrides

log = logging.getLogger("nexus_ml.api")


class ThresholdState:
    """The current :class:`Thresholds`, and who must hear when they change."""

    def __init__(self, base: Thresholds, store: Store) -> None:
        self.base = base
        self.current = base
        self._store = store
        self._listeners: list[Callable[[Thresholds], None]] = []
        self._refused: list[str] = []

    def on_change(self, listener: Callable[[Thresholds], None]) -> None:
        """Call ``listener(new)`` whenever the limits in force change."""
        self._listeners.append(listener)

    def apply(self, thresholds: Thresholds) -> None:
        """Use ``thresholds`` everywhere in this process (evaluator, drift decisions)."""
        if thresholds == self.current:
            return
        self.current = thresholds
        for listener in self._listeners:
            listener(thresholds)

    def refresh(self) -> None:
        """Re-read the overrides stored by ``PUT /config/thresholds`` (by any worker).

        Blocking (one small query): call in a thread.
        """
        overrides = {k: r.value for k, r in self._store.threshold_overrides().items()}
        updated, refused = apply_valid_overrides(self.base, overrides, source="database")
        if refused and refused != self._refused:
            # Key names only when they are known keys (a bounded set); never values.
            known = [k for k in refused if k in Thresholds.model_fields]
            log.warning(
                "stored threshold overrides refused, the others apply: %s",
                ", ".join(known) or "unknown keys",
                extra={"error_type": "ThresholdError", "count": len(refused)},
            )
        self._refused = refused
        self.apply(updated)
