"""Chromium on every page of the reference app: the Content-Security-Policy holds, pages work.

The reference app runs as the stack runs it, without Docker: ``flasker web`` (gunicorn with
the stack's settings) and ``flasker worker`` on SQLite and the embedded broker, outside
debug. Two web servers share the database and the worker: one as ``make up`` configures
it (pages open, Secure cookies, which Chromium keeps for http://127.0.0.1), one with
Sign in with Google against the fake provider (the auth pages; cookies without Secure, as
sign-in sends the provider an https redirect URI when they are Secure).

Every violation is caught twice: Chromium's console message and the page's
``securitypolicyviolation`` event (from an init script, reported through a binding). A
script injected on purpose at the end shows that both listen.
"""

from __future__ import annotations

import os
import subprocess
import typing as t
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from flasker.security import DEFAULT_CSP

from .conftest import (
    CHROMIUM_ARGS,
    FLASKER,
    ROOT,
    SECRET,
    Process,
    free_port,
    require_chromium,
    wait_for,
)
from .oidc_provider import FakeProvider

if t.TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Response

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

CONFIG = ROOT / "reference" / "default.cfg"
SHOTS = ROOT / "test-output" / "security_browser"

LISTEN = """
document.addEventListener("securitypolicyviolation", (e) => {
  window.reportCspViolation(
    `${e.effectiveDirective} blocked ${e.blockedURI || "inline"} in ${e.documentURI}`
    + ` (${e.sourceFile}:${e.lineNumber})`);
});
"""


@dataclass
class Site:
    """The reference app's two servers, and its processes."""

    open_url: str
    signin_url: str
    provider: FakeProvider
    processes: list[Process] = field(default_factory=list)


def _flasker(*args: str, env: t.Mapping[str, str]) -> None:
    result = subprocess.run([FLASKER, "-c", str(CONFIG), *args], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def _answers(url: str) -> t.Callable[[], bool]:
    return lambda: requests.get(url + "/healthz", timeout=2).ok


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Site]:
    require_chromium()
    folder = tmp_path_factory.mktemp("reference")
    provider = FakeProvider().start()
    env = {
        "FLASKER__APP__SECRET_KEY": SECRET,
        "FLASKER__PROJECT__DB_URL": f"sqlite:///{folder / 'db.sqlite'}",
        "FLASKER__PROJECT__STATE_FOLDER": str(folder / "state"),
        "FLASKER_GUNICORN_CONFIG": str(ROOT / "services" / "web" / "gunicorn.conf.py"),
        "WEB_CONCURRENCY": "1",
    }
    signin_env = {
        **env,
        "FLASKER__AUTH__CLIENT_ID": provider.client_id,
        "FLASKER__AUTH__CLIENT_SECRET": provider.client_secret,
        "FLASKER__AUTH__AUTHORIZED_EMAILS": "alice@corp.com",
        "FLASKER__AUTH__METADATA_URL": provider.metadata_url,
        "FLASKER__APP__SESSION_COOKIE_SECURE": "false",
    }
    _flasker("db", "upgrade", env=env)
    running = Site(open_url="", signin_url="", provider=provider)
    try:
        for name, server_env in (("open", env), ("signin", signin_env)):
            port = free_port()
            running.processes.append(Process(
                ["-c", str(CONFIG), "web", "-b", f"127.0.0.1:{port}"], cwd=folder,
                env=server_env, log=folder / f"web-{name}.log"))
            setattr(running, f"{name}_url", f"http://127.0.0.1:{port}")
        running.processes.append(Process(["-c", str(CONFIG), "worker", "--concurrency", "1"],
                                         cwd=folder, env=env, log=folder / "worker.log"))
        for url in (running.open_url, running.signin_url):
            wait_for(_answers(url), timeout=60, what=f"gunicorn at {url}")
        yield running
    finally:
        for process in running.processes:
            process.stop()
        provider.stop()


class Watch:
    """A browser context whose pages report every CSP violation and check every document."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.origin = origin
        self.violations: list[str] = []
        self.documents: list[str] = []
        self.without_headers: list[str] = []
        context.expose_function("reportCspViolation", self._report)
        context.add_init_script(LISTEN)
        self.page = context.new_page()
        self.page.on("console", self._console)
        self.page.on("response", self._response)

    def _report(self, text: str) -> None:
        self.violations.append(text)

    def _console(self, message: t.Any) -> None:
        if "Content Security Policy" in message.text:
            self.violations.append(f"console: {message.text}")

    def _response(self, response: Response) -> None:
        if response.url.startswith(self.origin):
            headers = response.headers
            # Every response of the app carries the policy: pages, scripts, styles, JSON.
            if (headers.get("content-security-policy") != DEFAULT_CSP
                    or headers.get("x-content-type-options") != "nosniff"):
                self.without_headers.append(response.url)
            if response.request.resource_type == "document":
                self.documents.append(f"{response.status} {response.url}")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def browser() -> t.Iterator[t.Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=require_chromium(),
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _watch(browser: t.Any, origin: str) -> Watch:
    return Watch(browser.new_context(viewport={"width": 1200, "height": 800}), origin)


def _assert_policy_caught_an_injected_script(watch: Watch) -> None:
    """The listeners work: an inline script added now is refused, and reported."""
    before = len(watch.violations)
    watch.page.evaluate("""() => {
      const script = document.createElement("script");
      script.textContent = "document.title = 'injected';";
      document.head.append(script);
    }""")
    # Playwright delivers events while it waits on the browser, not while Python sleeps.
    for _ in range(100):
        if len(watch.violations) >= before + 2:
            break
        watch.page.wait_for_timeout(100)
    assert len(watch.violations) == before + 2, watch.violations  # the event, the console
    assert watch.page.title() != "injected"
    assert any("script-src" in v for v in watch.violations[before:])


def test_the_open_pages_satisfy_the_policy_and_work(site: Site, browser: t.Any) -> None:
    from playwright.sync_api import expect

    watch = _watch(browser, site.open_url)
    page = watch.page
    page.goto(site.open_url)
    expect(page).to_have_title("Houses and Cats")
    watch.shot("01-index")

    # The forms post (with Secure cookies on http://127.0.0.1, as 'make up' serves them).
    page.get_by_role("button", name="Add house").click()
    expect(page.locator(".invalid-feedback")).to_have_text("A house needs a name.")
    name = f"CSP House {uuid.uuid4().hex[:4]}"
    page.get_by_placeholder("Name of a new house").fill(name)
    page.get_by_role("button", name="Add house").click()
    expect(page.get_by_role("alert")).to_have_text(f"House '{name}' created.")
    cookie = next(c for c in page.context.cookies() if c["name"] == "session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.get_by_role("link", name=name).click()
    expect(page.locator("#house-name")).to_have_text(name)
    page.get_by_placeholder("Name of a cat").fill("Felix")
    page.get_by_role("button", name="Add cat").click()
    expect(page.locator("#cats")).to_contain_text("Felix")
    watch.shot("02-house")
    page.get_by_role("button", name="Remove").click()
    expect(page.get_by_role("alert")).to_have_text("Felix left.")

    # The task form enqueues; task.js (a static file) polls until the worker has run it.
    page.get_by_role("link", name="All houses").click()
    page.locator("#census").click()
    expect(page.get_by_role("alert")).to_contain_text("sent to the worker")
    result = page.locator("#result")
    expect(result).to_have_attribute("data-state", "SUCCESS", timeout=60_000)
    expect(result).to_contain_text("house")
    watch.shot("03-task-result")

    # The error pages.
    page.goto(site.open_url + "/houses/999999")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto(site.open_url)
    page.locator("input[name=csrf_token]").first.evaluate("(input) => input.value = 'stale'")
    page.get_by_placeholder("Name of a new house").fill("Never")
    page.get_by_role("button", name="Add house").click()
    expect(page.get_by_role("heading", name="Form expired")).to_be_visible()
    watch.shot("04-form-expired")
    page.get_by_role("link", name="Back to the houses").click()
    page.get_by_role("link", name=name).click()
    page.get_by_role("button", name="Delete house and cats").click()
    expect(page.get_by_role("alert")).to_have_text(f"House '{name}' and its cats deleted.")

    watch.page.wait_for_timeout(500)  # the last events are delivered
    assert watch.violations == []
    assert watch.without_headers == []
    assert len(watch.documents) >= 10, watch.documents
    _assert_policy_caught_an_injected_script(watch)


def test_the_sign_in_pages_satisfy_the_policy_and_work(site: Site, browser: t.Any) -> None:
    from playwright.sync_api import expect

    site.provider.reset()
    watch = _watch(browser, site.signin_url)
    page = watch.page
    page.goto(site.signin_url + "/")
    expect(page).to_have_url(site.signin_url + "/auth/login?next=/")
    expect(page.locator("#sign-in")).to_be_visible()
    # The stylesheet of the sign-in pages is a file of their own, and it applies.
    assert page.locator(".card").evaluate("(el) => getComputedStyle(el).borderRadius") != "0px"
    watch.shot("11-sign-in")

    page.click("#sign-in")
    page.wait_for_url(site.provider.url + "/authorize?**")
    page.click("#allow")
    page.wait_for_url(site.signin_url + "/")
    expect(page).to_have_title("Houses and Cats")
    expect(page.locator("nav")).to_contain_text("alice@corp.com")
    watch.shot("12-signed-in")

    page.goto(site.signin_url + "/auth/tokens")
    page.get_by_placeholder("What is it for?").fill("backup script")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token")).to_be_visible()
    watch.shot("13-tokens")
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("table")).to_contain_text("revoked")

    page.goto(site.signin_url + "/")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(site.signin_url + "/auth/login?signed_out=1")
    expect(page.locator("[role=status]")).to_have_text("You are signed out.")

    # A refused account sees the refusal page.
    site.provider.account.email = "mallory@corp.com"
    page.click("#sign-in")
    page.click("#allow")
    expect(page.locator("[data-reason=not_allowed]")).to_be_visible()
    watch.shot("14-refused")

    watch.page.wait_for_timeout(500)  # the last events are delivered
    assert watch.violations == []
    assert watch.without_headers == []
    assert any("/auth/tokens" in d for d in watch.documents), watch.documents
    _assert_policy_caught_an_injected_script(watch)
