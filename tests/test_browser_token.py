"""With GERMSEG_API_TOKEN set, a real headless Chromium is asked for the token once, then the
UI works. Leaves screenshots in ``scratch/ui_login.png`` and ``scratch/ui_after_login.png``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium", allow_module_level=True)
playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
)
pytest.importorskip("uvicorn")

from app.server import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.test_browser import CHROMIUM_ARGS  # noqa: E402

TOKEN = "browser-token-123"
SCRATCH = Path(__file__).resolve().parents[1] / "scratch"


def test_the_ui_asks_for_the_token_once(tiny_model, serve_app, tmp_path: Path) -> None:
    expect = playwright_sync.expect
    app = create_app(tiny_model, Settings(results_dir=tmp_path / "results", api_token=TOKEN))
    with serve_app(app) as url, playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(url)
        expect(page.get_by_text("needs its API token")).to_be_visible(timeout=30_000)
        SCRATCH.mkdir(exist_ok=True)
        page.screenshot(path=str(SCRATCH / "ui_login.png"), full_page=True)
        page.get_by_label("username").fill("me")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Incorrect")).to_be_visible(timeout=30_000)
        page.get_by_label("username").fill("me")
        page.get_by_label("password").fill(TOKEN)
        page.get_by_role("button", name="Login").click()
        segment = page.get_by_role("button", name="Segment", exact=True)
        expect(segment).to_be_visible(timeout=60_000)
        page.reload()  # the session cookie keeps the login: no second question
        expect(segment).to_be_visible(timeout=60_000)
        page.screenshot(path=str(SCRATCH / "ui_after_login.png"), full_page=True)
        browser.close()
