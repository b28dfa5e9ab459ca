"""flasker.security: the headers every response carries, ``[SECURITY]``, and the cookies.

Projects made by ``make_project`` (a real Flask app, its test client); the browser's view
of the same policy on the reference app is ``test_security_browser.py``.
"""

from __future__ import annotations

import logging
import re
import textwrap
import typing as t
from pathlib import Path

import pytest
from werkzeug.middleware.proxy_fix import ProxyFix

from flasker import Project
from flasker.config import ConfigError
from flasker.security import DEFAULT_CSP, plain_http_cookies

from .conftest import ROOT, unique_package

STRICT = {
    "Content-Security-Policy": DEFAULT_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}

VIEWS = '''
from flask import abort, make_response, redirect, render_template_string, session
from sqlalchemy import Column, Integer, Unicode

from flasker import Model, current_project
from flasker.ext.api import APIManager

app = current_project.app
current_project.register_manager(APIManager(add_all_models=True))


class Gadget(Model):
    id = Column(Integer, primary_key=True)
    name = Column(Unicode(40))


@app.get("/")
def index():
    return render_template_string("<!doctype html><title>Hi</title><p>{{ 1 + 1 }}</p>")


@app.get("/data")
def data():
    return {"answer": 42}


@app.get("/gone")
def gone():
    abort(410)


@app.get("/boom")
def boom():
    raise RuntimeError("a bug")


@app.get("/elsewhere")
def elsewhere():
    return redirect("/")


@app.get("/own-headers")
def own_headers():
    response = make_response("framed on purpose")
    response.headers["Content-Security-Policy"] = "frame-ancestors https://partner.example"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@app.get("/remember")
def remember():
    session["seen"] = True
    return "ok"


@app.get("/teapot")
def teapot():
    abort(418)


@app.errorhandler(418)
def short_and_stout(error):
    return "I'm a teapot", 418
'''


def _project(make_project: t.Callable[..., Project], security: str = "",
             overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None = None) -> Project:
    package = unique_package()
    cfg = textwrap.dedent(f"""
        [PROJECT]
        NAME = Security Test
        MODULES = {package}.views
        """) + textwrap.dedent(security)
    project = make_project(cfg, files={f"{package}/__init__.py": "",
                                       f"{package}/views.py": VIEWS,
                                       "app/static/site.css": "p { color: teal; }\n"},
                           overrides=overrides)
    project.metadata.create_all(project.engine)
    return project


@pytest.fixture
def secured(make_project: t.Callable[..., Project]) -> Project:
    # Outside testing, so that a bug's 500 is served as a user would get it.
    return _project(make_project, overrides={"APP": {"TESTING": False}})


def _security_headers(response: t.Any) -> dict[str, str]:
    return {name: response.headers.get(name) for name in
            (*STRICT, "Strict-Transport-Security")}


# -- every response ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200),
    ("GET", "/data", 200),
    ("GET", "/static/site.css", 200),
    ("GET", "/healthz", 200),
    ("GET", "/api/gadgets/", 200),
    ("GET", "/api/gadgets/999", 404),  # problem+json
    ("POST", "/api/gadgets/", 415),  # problem+json: no JSON body
    ("GET", "/api/openapi.json", 200),
    ("GET", "/no-such-page", 404),
    ("POST", "/data", 405),
    ("GET", "/gone", 410),
    ("GET", "/boom", 500),
    ("GET", "/teapot", 418),  # the app's own error handler
    ("GET", "/elsewhere", 302),
    ("HEAD", "/", 200),
    ("OPTIONS", "/data", 200),
])
def test_every_response_carries_the_headers(secured: Project, method: str, path: str,
                                            status: int) -> None:
    response = secured.app.test_client().open(path, method=method)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert _security_headers(response) == {**STRICT, "Strict-Transport-Security": None}


def test_a_static_file_revalidated_keeps_the_headers(secured: Project) -> None:
    client = secured.app.test_client()
    first = client.get("/static/site.css")
    again = client.get("/static/site.css", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert _security_headers(again) == {**STRICT, "Strict-Transport-Security": None}


def test_a_header_the_view_set_is_kept(secured: Project) -> None:
    response = secured.app.test_client().get("/own-headers")
    assert response.headers["Content-Security-Policy"] == (
        "frame-ancestors https://partner.example")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers.getlist("Content-Security-Policy") == [
        "frame-ancestors https://partner.example"]


# -- HSTS over HTTPS only ---------------------------------------------------------------------


def test_hsts_only_over_https(secured: Project) -> None:
    client = secured.app.test_client()
    assert "Strict-Transport-Security" not in client.get("/").headers
    secure = client.get("/", base_url="https://example.org")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    # Also on errors and redirects served over HTTPS.
    assert client.get("/boom", base_url="https://example.org").headers[
        "Strict-Transport-Security"] == "max-age=31536000"
    # A client cannot claim HTTPS: the proxy headers count only when the app trusts them.
    forged = client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in forged.headers


def test_hsts_behind_a_trusted_proxy(secured: Project) -> None:
    app = secured.app
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1)  # type: ignore[method-assign]
    client = app.test_client()
    behind_tls = client.get("/", headers={"X-Forwarded-Proto": "https"})
    assert behind_tls.headers["Strict-Transport-Security"] == "max-age=31536000"
    plain = client.get("/", headers={"X-Forwarded-Proto": "http"})
    assert "Strict-Transport-Security" not in plain.headers


# -- [SECURITY] -------------------------------------------------------------------------------


def test_the_section_sets_each_header(make_project: t.Callable[..., Project]) -> None:
    project = _project(make_project, """
        [SECURITY]
        # One directive a line: the lines are joined.
        CONTENT_SECURITY_POLICY = default-src 'self';
            img-src 'self' https://img.example.org;
            frame-ancestors 'self'
        REFERRER_POLICY = no-referrer
        HSTS_MAX_AGE = 600
        HSTS_INCLUDE_SUBDOMAINS = yes
        """)
    response = project.app.test_client().get("/", base_url="https://example.org")
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'self'; img-src 'self' https://img.example.org; frame-ancestors 'self'")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Strict-Transport-Security"] == "max-age=600; includeSubDomains"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_environment_sets_the_policy(make_project: t.Callable[..., Project],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASKER__SECURITY__CONTENT_SECURITY_POLICY",
                       "default-src 'self'; style-src 'self' 'unsafe-inline'")
    monkeypatch.setenv("FLASKER__SECURITY__HSTS_MAX_AGE", "0")
    project = _project(make_project)
    response = project.app.test_client().get("/", base_url="https://example.org")
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'self'; style-src 'self' 'unsafe-inline'")
    assert "Strict-Transport-Security" not in response.headers


def test_empty_values_and_headers_off(make_project: t.Callable[..., Project]) -> None:
    project = _project(make_project, """
        [SECURITY]
        CONTENT_SECURITY_POLICY =
        REFERRER_POLICY =
        """)
    response = project.app.test_client().get("/")
    assert "Content-Security-Policy" not in response.headers
    assert "Referrer-Policy" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"

    off = _project(make_project, "[SECURITY]\nHEADERS = off\n")
    response = off.app.test_client().get("/", base_url="https://example.org")
    assert _security_headers(response) == dict.fromkeys(_security_headers(response))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("HEADERS", "maybe", "Not a boolean"),
    ("HSTS_MAX_AGE", "-1", "Not a number of seconds: expected 0 (no header) or more"),
    ("HSTS_MAX_AGE", "a year", "Not an integer"),
    ("HSTS_INCLUDE_SUBDOMAINS", "2", "Not a boolean"),
    ("REFERRER_POLICY", "no-referer", "'no-referer' is not a Referrer-Policy; expected one of"),
    ("CONTENT_SECURITY_POLICY", "default-src 'self'; scirpt-src 'self'",
     "'scirpt-src' is not a Content-Security-Policy directive (did you mean 'script-src'?)"),
    ("CONTENT_SECURITY_POLICY", "default-src self",
     "The keyword 'self' of 'default-src' must be in single quotes ('self')"),
    ("CONTENT_SECURITY_POLICY", "img-src 'self'; img-src data:",
     "The directive 'img-src' appears twice"),
    ("CONTENT_SECURITY_POLICY", "default-src 'self' https://café.example",
     "Not a Content-Security-Policy: a header holds printable ASCII only"),
    ("CONTENT_SECURITY_POLICY", "'self'", "is not a Content-Security-Policy directive"),
])
def test_a_bad_value_stops_start_up_with_a_sentence(
        make_project: t.Callable[..., Project], monkeypatch: pytest.MonkeyPatch, key: str,
        value: str, message: str) -> None:
    variable = f"FLASKER__SECURITY__{key}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        _project(make_project)
    text = str(error.value)
    assert text.startswith(f"Config 'SECURITY.{key}' has value {value!r}"
                           f" (environment variable '{variable}'). ")
    assert message in text


def test_an_unknown_key_suggests_the_nearest(make_project: t.Callable[..., Project]) -> None:
    with pytest.raises(ConfigError, match=r"Unknown key 'HSTS_MAXAGE' in section \[SECURITY\]"
                       r" \(.*default.cfg:\d+\)\. Did you mean 'HSTS_MAX_AGE'\?"):
        _project(make_project, "[SECURITY]\nHSTS_MAXAGE = 10\n")


def test_a_bad_value_given_in_code_is_refused_too(make_project: t.Callable[..., Project]
                                                  ) -> None:
    with pytest.raises(ConfigError, match=r"Config 'SECURITY.HSTS_MAX_AGE' has value -5"
                       r" \(code override\)\. Not a number of seconds"):
        _project(make_project, overrides={"SECURITY": {"HSTS_MAX_AGE": -5}})


# -- cookies ------------------------------------------------------------------------------------


def _set_cookie(project: Project, base_url: str = "http://localhost") -> str:
    response = project.app.test_client().get("/remember", base_url=base_url)
    return response.headers["Set-Cookie"]


def test_cookies_are_secure_httponly_and_lax_outside_development(secured: Project) -> None:
    cookie = _set_cookie(secured, "https://localhost")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
    assert secured.app.config["REMEMBER_COOKIE_SECURE"] is True


def test_cookies_in_development_are_httponly_and_lax(make_project: t.Callable[..., Project]
                                                    ) -> None:
    cookie = _set_cookie(_project(make_project))  # TESTING
    assert "Secure" not in cookie
    assert "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
    debug = _project(make_project, overrides={"APP": {"TESTING": False, "DEBUG": True}})
    assert debug.app.config["SESSION_COOKIE_SECURE"] is False


def test_an_explicit_cookie_setting_is_kept_with_a_warning(
        make_project: t.Callable[..., Project], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flasker.security"):
        project = _project(make_project, overrides={"APP": {
            "TESTING": False, "SESSION_COOKIE_SECURE": False,
            "SESSION_COOKIE_SAMESITE": "Strict"}})
    cookie = _set_cookie(project)
    assert "Secure" not in cookie and "; SameSite=Strict" in cookie
    warnings = [r.getMessage() for r in caplog.records if r.name == "flasker.security"]
    assert warnings == [
        "insecure_cookie: SESSION_COOKIE_SECURE is false outside development: the cookie is"
        " less protected (from scripts, other sites or plain HTTP). Remove the key from [APP]"
        " to get the safe default."]
    assert getattr(caplog.records[-1], "security_event", None) == "insecure_cookie"


def test_the_development_server_sends_cookies_over_plain_http(secured: Project) -> None:
    plain_http_cookies(secured.app, secured.config)
    assert "Secure" not in _set_cookie(secured)


# -- the pages satisfy the policy -----------------------------------------------------------------

TEMPLATES = sorted([
    *ROOT.glob("reference/app/templates/**/*.html"),
    *ROOT.glob("shared/flasker/src/flasker/ext/auth/templates/**/*.html"),
    *ROOT.glob("shared/flasker/src/flasker/scaffold/*/app/templates/**/*.html"),
    *ROOT.glob("shared/flasker/src/flasker/templates/**/*.html"),  # flasker's own pages
])
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an event handler attribute"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(ROOT)))
def test_templates_hold_no_inline_script_or_style(template: Path) -> None:
    """What the default policy blocks (the browser test sees the pages themselves)."""
    text = template.read_text()
    found = [what for pattern, what in INLINE if pattern.search(text)]
    assert not found, f"{template.relative_to(ROOT)} holds {', '.join(found)}"


def test_every_template_folder_is_checked() -> None:
    folders = {p.parent.relative_to(ROOT).as_posix() for p in TEMPLATES}
    assert {"reference/app/templates",
            "shared/flasker/src/flasker/ext/auth/templates/flasker_auth",
            "shared/flasker/src/flasker/scaffold/basic/app/templates",
            "shared/flasker/src/flasker/scaffold/celery/app/templates"} <= folders
    assert any(p.name == "base.html" and "common" in p.parts for p in TEMPLATES)
