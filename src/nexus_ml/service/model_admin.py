"""The governance service as the API calls it: off the event loop, then this worker switched.

Other workers and replicas switch by polling CURRENT/SHADOW (``ModelRegistry.refresh``); the
worker that made the change refreshes at once, so its next request is already on the new version.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nexus_ml.ml.bundle import BundleError
from nexus_ml.ml.registry import ModelRegistry
from nexus_ml.service.database import Database
from nexus_ml.service.governance import Change, Governance
from nexus_ml.service.publishing import ModelPublisher

MAX_REPORTS = 500


class ModelAdmin:
    """Versions, promote, rollback, shadow and promotion reports for the routes."""

    def __init__(
        self,
        *,
        governance: Governance,
        db: Database,
        models: ModelRegistry,
        publisher: ModelPublisher,
    ) -> None:
        self._gov = governance
        self._db = db
        self._models = models
        self._publisher = publisher

    async def versions(self, name: str) -> dict[str, Any]:
        """Every version with its role (see ``Governance.versions``)."""
        versions = await asyncio.to_thread(self._gov.versions, name)
        role_of = {v["version"]: v["role"] for v in versions}
        return {
            "model": name,
            "champion": next((v for v, r in role_of.items() if r == "champion"), None),
            "challenger": next((v for v, r in role_of.items() if r == "challenger"), None),
            "versions": versions,
        }

    async def _changed(self, change: Change, *, champion: bool = True) -> Change:
        if not change.changed:
            return change
        if not champion:
            await asyncio.to_thread(self._models.refresh)
            return change
        try:
            loaded = await asyncio.to_thread(self._models.reload, change.model)
        except BundleError:
            return change  # refused and logged by the registry; verified just before, so rare
        # Its per-version series and baseline, as the model watcher does for a swap it sees.
        self._publisher.publish(loaded)
        return change

    async def promote(
        self, name: str, version: str, actor: str, *, allow_incompatible: bool
    ) -> Change:
        """Make ``version`` the champion (audited)."""
        return await self._changed(
            await self._db.run(
                self._gov.promote, name, version, actor, allow_incompatible=allow_incompatible
            )
        )

    async def rollback(self, name: str, actor: str) -> Change:
        """Back to the previous champion (audited)."""
        return await self._changed(await self._db.run(self._gov.rollback, name, actor))

    async def start_shadow(self, name: str, version: str, actor: str) -> Change:
        """Score ``version`` in shadow (audited)."""
        change = await self._db.run(self._gov.start_shadow, name, version, actor)
        return await self._changed(change, champion=False)

    async def stop_shadow(self, name: str, actor: str) -> Change:
        """Stop the challenger (audited)."""
        change = await self._db.run(self._gov.stop_shadow, name, actor)
        return await self._changed(change, champion=False)

    async def reports(self, name: str, limit: int) -> list[dict[str, Any]]:
        """The model's promotion reports, newest first."""
        await asyncio.to_thread(self._gov.versions, name)  # NotFound for an unknown model
        records = await self._db.run(
            self._db.store.list_promotion_reports, name, limit=min(limit, MAX_REPORTS)
        )
        return [
            {
                "id": r.id,
                "model": r.model,
                "candidate_version": r.candidate_version,
                "champion_version": r.champion_version,
                "created_at": r.created_at,
                "actor": r.actor,
                "policy": r.policy,
                "decision": r.decision,
                "report": r.report,
            }
            for r in records
        ]
