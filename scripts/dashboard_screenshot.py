"""Take docs/dashboard.png from a running service (the README's picture).

    make run                                                    # one terminal
    nexus-ml simulate --duration 600 --rate 6 --feedback-rate 0.7   # another
    .venv/bin/python scripts/dashboard_screenshot.py --model diabetes_risk

Give the service traffic first (a few minutes of `nexus-ml simulate`, with feedback, and a
model-quality run: `POST /api/v1/monitoring/drift/run` or its interval), so every chart has a
series to draw. Drives Debian's /usr/bin/chromium through Playwright (never downloads a
browser), logs in with a monitor (or admin) key, chooses the clinical model, waits until no
panel is loading and two refreshes went by, and saves a full-page capture.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
# Every panel answered, and the live series (CPU, memory, error rate: one point per 10 s
# refresh, kept by the page) have a minute of points to draw.
SETTLED = (
    "[...document.querySelectorAll('.panel')].every((p) => p.dataset.state !== 'loading') "
    "&& Number(document.querySelector('#panel-cpu').dataset.points) >= 7"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8001")
    parser.add_argument("--key", default=os.environ.get("NEXUS_MONITOR_KEY"), help="monitor key "
                        "(default: NEXUS_MONITOR_KEY, then data/api_key)")  # fmt: skip
    parser.add_argument("--model", default="diagnostic", help="model of the clinical section")
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard.png"))
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    key = args.key or Path("data/api_key").read_text(encoding="utf-8").strip()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            page.goto(f"{args.url}/dashboard")
            page.fill("#api-key", key)
            page.click("#login button[type=submit]")
            page.select_option("#clinical-model", args.model)
            deadline = time.monotonic() + args.timeout
            while not page.evaluate(SETTLED):
                if time.monotonic() > deadline:
                    print("panels still loading; capturing anyway", file=sys.stderr)
                    break
                time.sleep(0.5)
            states = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('.panel')]"
                ".map((p) => [p.dataset.panel, p.dataset.state]))"
            )
            not_ready = {k: v for k, v in states.items() if v != "ready"}
            if not_ready:
                print(f"panels not ready: {not_ready}", file=sys.stderr)
            page.screenshot(path=str(args.out), full_page=True)
        finally:
            browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
