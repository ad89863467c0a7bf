"""``/docs``: Swagger UI for the OpenAPI document, served from this origin.

FastAPI's own page loads an unpinned Swagger UI from a CDN with an inline script, no
integrity check and no framing protection, on the page where API keys are typed. This one
loads a pinned copy (``static/vendor/swagger-ui``) through the dashboard's static route and
answers with the dashboard's headers: a CSP allowing scripts, styles and connections from
this origin only, no inline script, no framing.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from nexus_ml.api.routes import answer_head_like_get
from nexus_ml.api.routes.dashboard import STATIC_DIR, static_file

router = APIRouter(tags=["docs"], include_in_schema=False)


@router.get("/docs")
async def docs() -> FileResponse:
    """The interactive API documentation."""
    return static_file(STATIC_DIR / "docs.html", "no-cache")


answer_head_like_get(router)
