"""A real browser signs in through the fake provider's consent page, then signs out.

Debian's Chromium, driven by Playwright, against the app served on 127.0.0.1 by a
real server thread; screenshots go to ``test-output/auth/``.
"""

from __future__ import annotations

import threading
import typing as t
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from flasker import Project
from flasker.util import Model

from .conftest import ROOT, unique_package, write_project
from .oidc_provider import FakeProvider, auth_cfg, auth_files

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = ROOT / "test-output" / "auth"

pytestmark = pytest.mark.browser


@pytest.fixture
def provider() -> t.Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def app_url(tmp_path: Path, provider: FakeProvider) -> t.Iterator[str]:
    package = unique_package()
    path = write_project(tmp_path, auth_cfg(provider, package,
                                            f"sqlite:///{tmp_path / 'db.sqlite'}"),
                         auth_files(package))
    project = Project(path)
    Model.metadata.create_all(project.engine)
    server = make_server("127.0.0.1", 0, project.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    project.engine.dispose()


def test_a_browser_signs_in_lands_on_the_page_and_signs_out(app_url: str,
                                                           provider: FakeProvider) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(app_url + "/private?tab=2")
            expect(page).to_have_url(app_url + "/auth/login?next=/private?tab%3D2")
            expect(page.locator("h1")).to_have_text("Sign in to Auth Test")
            page.screenshot(path=SHOTS / "1-sign-in.png")

            page.click("#sign-in")
            page.wait_for_url(provider.url + "/authorize?**")
            expect(page.locator("h1")).to_have_text("Sign in as alice@corp.com?")
            page.screenshot(path=SHOTS / "2-consent.png")

            page.click("#allow")
            page.wait_for_url(app_url + "/private?tab=2")
            expect(page.locator("#who")).to_have_text("Private: alice@corp.com")
            cookie = next(c for c in page.context.cookies() if c["name"] == "session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            page.screenshot(path=SHOTS / "3-signed-in.png")

            page.click("#sign-out")
            page.wait_for_url(app_url + "/auth/login?signed_out=1")
            expect(page.locator("[role=status]")).to_have_text("You are signed out.")
            page.screenshot(path=SHOTS / "4-signed-out.png")

            page.goto(app_url + "/private")
            expect(page).to_have_url(app_url + "/auth/login?next=/private")
        finally:
            browser.close()
    assert all((SHOTS / name).stat().st_size > 1000 for name in
               ("1-sign-in.png", "2-consent.png", "3-signed-in.png", "4-signed-out.png"))


def test_a_browser_sees_a_friendly_refusal(app_url: str, provider: FakeProvider) -> None:
    from playwright.sync_api import expect, sync_playwright

    provider.account.email = "mallory@corp.com"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(app_url + "/private")
            page.click("#sign-in")
            page.click("#allow")
            expect(page.locator("h1")).to_have_text("This account is not allowed")
            expect(page.locator("[data-reason=not_allowed]")).to_be_visible()
            page.screenshot(path=SHOTS / "5-refused.png")
        finally:
            browser.close()
