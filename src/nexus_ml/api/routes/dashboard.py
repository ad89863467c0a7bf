"""The built-in dashboard page (no Grafana needed): ``/dashboard`` and its static files.

The page is public (it holds no data); it asks for a monitor key, keeps it in
sessionStorage and calls the monitoring API with it. Every answer carries a strict
Content-Security-Policy: scripts, styles and connections only from this origin, no
inline script, no framing, so an injected string in a label can never run.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from nexus_ml.api.errors import ApiError
from nexus_ml.api.routes import answer_head_like_get

router = APIRouter(tags=["dashboard"], include_in_schema=False)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
# Only these types are served: anything else in the folder (a stray file) stays private.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".md": "text/plain; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def static_file(path: Path, cache: str) -> FileResponse:
    """``path`` with its allowlisted media type and every security header."""
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[path.suffix],
        headers={**SECURITY_HEADERS, "Cache-Control": cache},
    )


@router.get("/dashboard")
async def dashboard() -> FileResponse:
    """The dashboard page."""
    # no-cache: a deploy must not leave browsers on a page that calls a changed API.
    return static_file(STATIC_DIR / "index.html", "no-cache")


@router.get("/dashboard/", include_in_schema=False)
async def dashboard_slash() -> RedirectResponse:
    """Redirect ``/dashboard/`` to the page (relative URLs in it assume ``/dashboard``)."""
    return RedirectResponse("/dashboard", status_code=308, headers=SECURITY_HEADERS)


@router.get("/dashboard/static/{path:path}")
async def static(path: str) -> FileResponse:
    """A file of the page (script, style, vendored library, licence)."""
    try:
        target = (STATIC_DIR / path).resolve()
        # resolve() folds '..' and symlinks: whatever it names must still be inside the folder.
        found = (
            target.is_relative_to(STATIC_DIR) and target.suffix in MEDIA_TYPES and target.is_file()
        )
    except (OSError, ValueError):  # a NUL byte, a name too long
        found = False
    if not found:
        raise ApiError(404, "not found", "path")
    return static_file(target, "no-cache")


answer_head_like_get(router)
