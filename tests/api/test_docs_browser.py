"""``/docs`` in a real headless Chromium against the real service: Swagger UI, served from the
service itself, runs under the dashboard's CSP (no violation, no error), asks no other host
for anything, and a key typed into its Authorize dialog calls the API.

Debian's /usr/bin/chromium through Playwright's ``executable_path`` (never a downloaded
browser). Skips without chromium locally; fails under CI=true.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.api.test_dashboard_browser import CHROMIUM_ARGS
from tests.helpers import KEYS, require_binary
from tests.reliability.service import Service, free_port, service_env, uvicorn_command

pytestmark = pytest.mark.browser


def test_docs_page_works_under_its_csp_and_calls_only_this_origin(
    bundled_models: Path, tmp_path: Path
) -> None:
    require_binary("chromium")
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = service_env(
        models=bundled_models,
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'nexus.db'}",
    )
    problems: list[str] = []
    hosts: set[str] = set()
    with Service(uvicorn_command(port, 5), env, port, tmp_path / "service.log") as svc:
        svc.start()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                # A CSP violation is reported on the console as an error.
                page.on(
                    "console",
                    lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
                )
                page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
                page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
                page.on("request", lambda r: hosts.add(urlsplit(r.url).netloc))
                page.goto(f"{svc.base}/docs")
                page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/models']")
                assert page.locator(".opblock").count() >= 20  # every operation rendered

                # Authorize with a key, then "Try it out" on GET /api/v1/models.
                page.click("button.authorize")
                page.locator(".modal-ux input").first.fill(KEYS["predict"])
                page.locator(".modal-ux .auth-btn-wrapper button.authorize").first.click()
                page.locator(".modal-ux button.btn-done").first.click()
                page.click(".opblock-summary-path[data-path='/api/v1/models']")
                page.click(".try-out__btn")
                with page.expect_response(lambda r: r.url.endswith("/api/v1/models")) as answer:
                    page.click("button.execute")
                assert answer.value.status == 200, answer.value.text()
                sent = answer.value.request.headers.get("authorization", "")
                assert sent == f"Bearer {KEYS['predict']}"
                # Typed keys are not kept beyond the tab.
                assert page.evaluate("localStorage.length") == 0
            finally:
                browser.close()
    assert problems == []
    assert hosts == {f"127.0.0.1:{port}"}, hosts
