"""A real browser (Debian's chromium, driven by Playwright) on the reference app of the stack.

The stack is its own (the module-scoped ``stack`` fixture of conftest_stack.py starts one
per test module); the image is the one built once for the session. Each page is saved as a
screenshot under test-output/stack_browser/.
"""

from __future__ import annotations

import typing as t
import uuid

import pytest

from .conftest import CHROMIUM_ARGS, ROOT, require_chromium
from .conftest_stack import Stack, stack_test

OUTPUT = ROOT / "test-output" / "stack_browser"

if t.TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def page() -> t.Iterator[Page]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 800})
            yield context.new_page()
        finally:
            browser.close()


def screenshot(page: Page, name: str) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


@pytest.mark.docker
@pytest.mark.browser
@stack_test
def test_browser_creates_a_house_and_sees_the_task_result(stack: Stack, page: Page) -> None:
    from playwright.sync_api import expect

    web = stack.url("web", 8000)
    page.goto(web)
    expect(page).to_have_title("Houses and Cats")
    expect(page.locator("#houses")).to_contain_text("No houses yet.")
    screenshot(page, "01-index")

    # A form sent empty is refused with its reason, on the same page.
    page.get_by_role("button", name="Add house").click()
    expect(page.locator(".invalid-feedback")).to_have_text("A house needs a name.")
    screenshot(page, "02-house-without-a-name")

    name = f"Browser House {uuid.uuid4().hex[:4]}"
    page.get_by_placeholder("Name of a new house").fill(name)
    page.get_by_role("button", name="Add house").click()
    expect(page.get_by_role("alert")).to_have_text(f"House '{name}' created.")
    expect(page.locator("#houses")).to_contain_text(name)
    screenshot(page, "03-house-created")

    page.get_by_role("link", name=name).click()
    expect(page.locator("#house-name")).to_have_text(name)
    page.get_by_placeholder("Name of a cat").fill("Felix")
    page.get_by_role("button", name="Add cat").click()
    expect(page.get_by_role("alert")).to_have_text(f"Felix moved into {name}.")
    expect(page.locator("#cats")).to_contain_text("Felix")
    screenshot(page, "04-house-with-a-cat")

    page.get_by_role("link", name="All houses").click()
    expect(page.locator("#houses")).to_contain_text("1 cat")
    page.locator("#census").click()
    expect(page.get_by_role("alert")).to_contain_text("sent to the worker")
    result = page.locator("#result")
    expect(result).to_have_attribute("data-state", "SUCCESS", timeout=60_000)
    expect(result).to_have_text("1 house, 1 cat")
    screenshot(page, "05-task-result")
