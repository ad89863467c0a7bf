"""Model versions and roles: list, promote, rollback, shadow start/stop, promotion reports.

Writes need an admin key (audited under its fingerprint); reads a monitor key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from nexus_ml.api.auth import AdminKey, MonitorKey
from nexus_ml.api.deps import JSON_BODY_RESPONSES, JsonBody, ModelAdminDep
from nexus_ml.api.schemas import (
    ModelChange,
    ModelVersions,
    PromoteRequest,
    PromotionReportEntry,
)
from nexus_ml.service.governance import Change

router = APIRouter(tags=["governance"])

_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown model or version"}}


def _change(change: Change) -> ModelChange:
    return ModelChange(**change.to_dict())


@router.get(
    "/models/{name}/versions",
    response_model=ModelVersions,
    summary="Every version of a model with its role and evidence",
    responses=_UNKNOWN,
)
async def list_versions(name: str, admin: ModelAdminDep, _key: MonitorKey) -> ModelVersions:
    """Newest first: role (champion, challenger, retired), created_at/by, source, holdout
    metrics, schema and reference-profile hashes, compatibility with the champion."""
    return ModelVersions(**await admin.versions(name))


@router.post(
    "/models/{name}/versions/{version}/promote",
    response_model=ModelChange,
    summary="Make a version the champion (idempotent)",
    responses={
        **_UNKNOWN,
        409: {"description": "Incompatible with the champion, or fails verification"},
        **JSON_BODY_RESPONSES,
    },
)
async def promote(
    name: str,
    version: str,
    admin: ModelAdminDep,
    principal: AdminKey,
    _json: JsonBody,
    body: PromoteRequest | None = None,
) -> ModelChange:
    """Every worker and replica switches within seconds (they poll CURRENT)."""
    options = body or PromoteRequest()
    change = await admin.promote(
        name, version, principal.fingerprint, allow_incompatible=options.replace_incompatible
    )
    return _change(change)


@router.post(
    "/models/{name}/rollback",
    response_model=ModelChange,
    summary="Make the previous champion the champion again",
    responses={**_UNKNOWN, 409: {"description": "No previous champion recorded"}},
)
async def rollback(name: str, admin: ModelAdminDep, principal: AdminKey) -> ModelChange:
    """The champion before the current one, from the model's HISTORY."""
    return _change(await admin.rollback(name, principal.fingerprint))


@router.post(
    "/models/{name}/versions/{version}/shadow",
    response_model=ModelChange,
    summary="Score a version in shadow beside the champion (idempotent)",
    responses={**_UNKNOWN, 409: {"description": "The champion itself, or incompatible"}},
)
async def start_shadow(
    name: str, version: str, admin: ModelAdminDep, principal: AdminKey
) -> ModelChange:
    """Clients keep getting the champion's answers; the challenger's are stored apart."""
    return _change(await admin.start_shadow(name, version, principal.fingerprint))


@router.delete(
    "/models/{name}/shadow",
    response_model=ModelChange,
    summary="Stop scoring the challenger (idempotent)",
    responses=_UNKNOWN,
)
async def stop_shadow(name: str, admin: ModelAdminDep, principal: AdminKey) -> ModelChange:
    """No challenger is not an error: ``changed`` is false."""
    return _change(await admin.stop_shadow(name, principal.fingerprint))


@router.get(
    "/models/{name}/promotion-reports",
    response_model=list[PromotionReportEntry],
    summary="Evaluations of candidates against the champion, newest first",
    responses=_UNKNOWN,
)
async def promotion_reports(
    name: str,
    admin: ModelAdminDep,
    _key: MonitorKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[PromotionReportEntry]:
    """Data used, metrics side by side, criteria, decision, who and when."""
    return [PromotionReportEntry(**r) for r in await admin.reports(name, limit)]
