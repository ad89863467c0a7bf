"""CORS is closed unless configured; the dashboard and its files carry browser security headers."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.helpers import auth
from tests.security._support import sqlite_app

from nexus_ml.api.routes import dashboard

ALLOWED = "https://ops.example.org"
EVIL = "https://evil.example"
API = "/api/v1/models"
STATIC_DIR = Path(dashboard.__file__).resolve().parent.parent / "static"


@pytest.fixture
def closed(bundled_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(sqlite_app(bundled_models, tmp_path), follow_redirects=False) as c:
        yield c


@pytest.fixture
def open_to_ops(bundled_models: Path, tmp_path: Path) -> Iterator[TestClient]:
    app = sqlite_app(bundled_models, tmp_path, cors_origins=ALLOWED)
    with TestClient(app, follow_redirects=False) as c:
        yield c


def _preflight(client: TestClient, origin: str, url: str = API) -> object:
    return client.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


# -- CORS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", [EVIL, ALLOWED, "null", "http://localhost:3000"])
def test_cors_closed_by_default(closed: TestClient, origin: str) -> None:
    r = _preflight(closed, origin)
    assert "access-control-allow-origin" not in r.headers  # type: ignore[attr-defined]
    r = closed.get(API, headers={"Origin": origin, **auth("predict")})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-credentials" not in r.headers


def test_cors_allows_only_the_configured_origin(open_to_ops: TestClient) -> None:
    r = _preflight(open_to_ops, ALLOWED)
    assert r.status_code == 200  # type: ignore[attr-defined]
    assert r.headers["access-control-allow-origin"] == ALLOWED  # type: ignore[attr-defined]
    allowed_headers = r.headers["access-control-allow-headers"].lower()  # type: ignore[attr-defined]
    assert "authorization" in allowed_headers
    r = open_to_ops.get(API, headers={"Origin": ALLOWED, **auth("predict")})
    assert r.headers["access-control-allow-origin"] == ALLOWED
    # Keys travel in headers, never cookies: credentialed CORS is not needed and stays off.
    assert "access-control-allow-credentials" not in r.headers

    for origin in (EVIL, ALLOWED + ".evil.example", "http://ops.example.org", "null"):
        r = _preflight(open_to_ops, origin)
        assert r.headers.get("access-control-allow-origin") not in (origin, "*")  # type: ignore[attr-defined]
        r = open_to_ops.get(API, headers={"Origin": origin, **auth("predict")})
        assert r.headers.get("access-control-allow-origin") not in (origin, "*")


def test_cors_preflight_does_not_bypass_auth(open_to_ops: TestClient) -> None:
    r = open_to_ops.get(API, headers={"Origin": ALLOWED})
    assert r.status_code == 401
    r = open_to_ops.request("DELETE", API, headers={"Origin": ALLOWED, **auth("admin")})
    assert r.status_code == 405


# -- dashboard headers -------------------------------------------------------------------------


def _static_files() -> list[str]:
    return sorted(
        str(p.relative_to(STATIC_DIR))
        for p in STATIC_DIR.rglob("*")
        if p.is_file() and p.suffix in dashboard.MEDIA_TYPES
    )


def _csp(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            out[words[0].lower()] = words[1:]
    return out


def _assert_security_headers(r: object, where: str) -> None:
    h = r.headers  # type: ignore[attr-defined]
    assert h.get("x-content-type-options") == "nosniff", where
    assert h.get("x-frame-options") == "DENY", where
    assert h.get("referrer-policy") in ("no-referrer", "same-origin", "strict-origin"), where
    csp = _csp(h.get("content-security-policy", ""))
    assert csp.get("default-src") == ["'self'"], (where, csp)
    assert csp.get("frame-ancestors") == ["'none'"], (where, csp)
    assert csp.get("object-src") == ["'none'"], (where, csp)
    assert csp.get("base-uri") in (["'none'"], ["'self'"]), (where, csp)
    for directive in ("script-src", "style-src", "default-src", "connect-src"):
        sources = csp.get(directive, [])
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(
            sources
        ), (where, directive, sources)


def test_dashboard_page_has_security_headers(closed: TestClient) -> None:
    r = closed.get("/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    _assert_security_headers(r, "/dashboard")
    r = closed.get("/dashboard/")
    assert r.status_code in (301, 302, 307, 308) and r.headers["location"] == "/dashboard"
    _assert_security_headers(r, "/dashboard/")


def test_every_static_file_has_security_headers(closed: TestClient) -> None:
    files = _static_files()
    assert "dashboard.js" in files and any(f.startswith("vendor/") for f in files), files
    for name in files:
        r = closed.get(f"/dashboard/static/{name}")
        assert r.status_code == 200, name
        _assert_security_headers(r, name)
        expected = dashboard.MEDIA_TYPES[Path(name).suffix].split(";")[0]
        assert r.headers["content-type"].split(";")[0] == expected, name


@pytest.mark.parametrize("page", ["index.html", "docs.html"])
def test_page_needs_no_inline_script_or_style(page: str) -> None:
    # The CSP forbids inline code; a page that relied on it would break (or tempt someone to
    # loosen the policy). External scripts and stylesheets only, no inline handlers.
    html = (STATIC_DIR / page).read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S | re.I)
    assert scripts, f"no script found: is {page} a page?"
    for attrs, body in scripts:
        assert "src=" in attrs and not body.strip(), attrs
    assert not re.search(r"<style\b", html, re.I)
    assert not re.search(r"\son[a-z]+\s*=", html, re.I)  # no inline event handlers


# -- /docs -------------------------------------------------------------------------------------

SWAGGER_DIR = STATIC_DIR / "vendor" / "swagger-ui"


def _references(html: str) -> list[str]:
    return re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", html, re.I)


def test_docs_page_is_served_from_this_origin_with_security_headers(closed: TestClient) -> None:
    r = closed.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    _assert_security_headers(r, "/docs")
    refs = _references(r.text)
    assert any(ref.endswith("swagger-ui-bundle.js") for ref in refs), refs
    for ref in refs:
        # Relative to this origin: no scheme, no host, not protocol-relative.
        assert not re.match(r"^([a-z][a-z0-9+.-]*:|//)", ref, re.I), ref
        asset = closed.get("/" + ref.lstrip("/"))
        assert asset.status_code == 200, ref
        _assert_security_headers(asset, ref)
    # The startup script points Swagger UI at this service's document, and nowhere else.
    script = (STATIC_DIR / "docs.js").read_text(encoding="utf-8")
    assert not re.search(r"https?://", script), script
    assert "validatorUrl: null" in script


def test_docs_assets_are_the_pinned_ones() -> None:
    version = (SWAGGER_DIR / "VERSION.txt").read_text(encoding="utf-8")
    pinned = dict(re.findall(r"sha256\((\S+)\)\s*=\s*([0-9a-f]{64})", version))
    assert set(pinned) == {"swagger-ui-bundle.js", "swagger-ui.css"}, pinned
    for name, digest in pinned.items():
        assert hashlib.sha256((SWAGGER_DIR / name).read_bytes()).hexdigest() == digest, name
    for licence in ("LICENSE.txt", "NOTICE.txt", "swagger-ui-bundle.js.LICENSE.txt"):
        assert (SWAGGER_DIR / licence).stat().st_size > 0, licence


def test_no_page_loads_anything_from_a_cdn(closed: TestClient) -> None:
    # FastAPI's own documentation pages load their scripts from a CDN: they are switched off.
    for path in ("/redoc", "/docs/oauth2-redirect"):
        assert closed.get(path).status_code == 404, path
    for path in ("/docs", "/dashboard"):
        html = closed.get(path).text
        assert not [ref for ref in _references(html) if "//" in ref], path
    assert not re.search(r"\son[a-z]+\s*=", html, re.I)
    assert not re.search(r"\sstyle\s*=", html, re.I)
    assert "javascript:" not in html.lower()


@pytest.mark.parametrize(
    "path",
    [
        "../routes/dashboard.py",
        "..%2Froutes%2Fdashboard.py",
        "%2e%2e/%2e%2e/config.py",
        "vendor/../../app.py",
        "/etc/passwd",
        "..%5c..%5capp.py",
        "index.html%00.js",
        "nope.js",
        "vendor",
    ],
)
def test_static_route_serves_nothing_outside_its_folder(closed: TestClient, path: str) -> None:
    r = closed.get(f"/dashboard/static/{path}")
    assert r.status_code == 404, (path, r.status_code)
    assert "import " not in r.text and "root:" not in r.text


def test_api_errors_are_json_not_html(closed: TestClient) -> None:
    # Error bodies are JSON with a JSON content type: nothing a browser would render as a page.
    for r in (
        closed.get("/api/v1/models"),
        closed.get("/no/such/<script>alert(1)</script>"),
        closed.post(
            "/api/v1/models/diagnostic/predict", content=b"<html>", headers=auth("predict")
        ),
    ):
        assert r.headers["content-type"].startswith("application/json"), r.headers
        assert "<script>" not in r.text
