"""A real browser signs in through the fake provider's consent page, then signs out.

Debian's Chromium, driven by Playwright, against the app served on 127.0.0.1 by a
real server thread; screenshots go to ``test-output/auth/``.
"""

from __future__ import annotations

import typing as t

import pytest

from flasker import Project

from .conftest import (
    CHROMIUM_ARGS,
    ROOT,
    require_chromium,
    serve,
)
from .oidc_provider import FakeProvider

SHOTS = ROOT / "test-output" / "auth"

pytestmark = pytest.mark.browser


@pytest.fixture
def provider() -> t.Iterator[FakeProvider]:
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def app_url(build_auth: t.Callable[..., Project]) -> t.Iterator[str]:
    yield from serve(build_auth().app)


def test_a_browser_signs_in_lands_on_the_page_and_signs_out(app_url: str,
                                                           provider: FakeProvider) -> None:
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(app_url + "/private?tab=2")
            expect(page).to_have_url(app_url + "/auth/login?next=/private?tab%3D2")
            expect(page.locator("h1")).to_have_text("Sign in to Auth Test")
            expect(page.locator("#sign-in")).to_have_text("Sign in with 127.0.0.1")
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
        browser = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(app_url + "/private")
            page.click("#sign-in")
            page.click("#allow")
            expect(page.locator("h1")).to_have_text("This account is not allowed")
            expect(page.locator("[data-reason=not_allowed]")).to_be_visible()
            page.screenshot(path=SHOTS / "5-refused.png")

            # The retry asks the provider to offer another account, not the same one again.
            page.click("#another-account")
            page.wait_for_url(provider.url + "/authorize?**")
            assert "prompt=select_account" in page.url
            provider.account.email = "alice@corp.com"
            page.click("#allow")
            # ... and goes where the refused sign-in was to go.
            page.wait_for_url(app_url + "/private")
            expect(page.locator("#who")).to_have_text("Private: alice@corp.com")
        finally:
            browser.close()
