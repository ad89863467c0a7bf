"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nexus_ml.api.state import Nexus


async def get_nexus(request: Request) -> Nexus:
    """The running service's parts (async: a sync dependency costs a thread hop)."""
    nexus: Nexus = request.app.state.nexus
    return nexus


NexusDep = Annotated[Nexus, Depends(get_nexus)]
