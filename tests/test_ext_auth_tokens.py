"""Personal API tokens: the token page, bearer requests, and the ``flasker auth`` commands."""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from flasker import Project
from flasker.ext.auth import auth_models

from .conftest import FLASKER, prepend_path, unique_package, write_project
from .oidc_provider import VIEWS_WITHOUT_API, FakeProvider, Flow, auth_cfg, auth_files

TOKEN_RE = re.compile(r"flk_[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def _security_events(caplog: pytest.LogCaptureFixture) -> None:
    """Record the INFO events of ``flasker.security`` too (sign-ins, tokens made, revoked).

    Nothing configures logging in a test, so the root logger's WARNING would hide them.
    """
    caplog.set_level(logging.INFO, logger="flasker.security")


@pytest.fixture
def cfg_path(tmp_path: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = unique_package()
    prepend_path(monkeypatch, str(tmp_path))
    return write_project(tmp_path, auth_cfg(provider, package,
                                            f"sqlite:///{tmp_path / 'db.sqlite'}"),
                         auth_files(package))


@pytest.fixture
def project(cfg_path: Path) -> t.Iterator[Project]:
    project = Project(cfg_path)
    project.metadata.create_all(project.engine)
    yield project
    project.close()


@pytest.fixture
def signed_in(project: Project, provider: FakeProvider) -> t.Any:
    """A test client signed in as alice@corp.com."""
    client = project.app.test_client()
    assert Flow(client, provider).sign_in().status_code == 302
    return client


def csrf(client: t.Any) -> str:
    return t.cast(str, client.get("/auth/me").get_json()["csrf_token"])


def create_on_page(client: t.Any, name: str = "ci", days: str = "30") -> str:
    page = client.post("/auth/tokens", data={"csrf_token": csrf(client), "name": name,
                                             "days": days})
    assert page.status_code == 200, page.get_data(as_text=True)
    found = TOKEN_RE.search(page.get_data(as_text=True))
    assert found, "the new token is shown once"
    return found.group(0)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rows(project: Project) -> list[t.Any]:
    """The rows of ``auth_tokens``."""
    with project.engine.connect() as connection:
        return list(connection.execute(sa.select(auth_models(project.app).AuthToken.__table__)))


# -- the token page and bearer requests -------------------------------------------------------


def test_a_token_made_on_the_page_reaches_the_api_without_cookies(
        project: Project, signed_in: t.Any) -> None:
    assert "No tokens yet." in signed_in.get("/auth/tokens").get_data(as_text=True)
    token = create_on_page(signed_in)
    assert [(r.name, r.prefix) for r in rows(project)] == [("ci", token[:10])]
    stored = rows(project)[0]
    assert stored.token_hash != token and token not in str(tuple(stored))  # hashed only
    listing = signed_in.get("/auth/tokens").get_data(as_text=True)
    assert token not in listing and token[:10] in listing  # never shown again

    script = project.app.test_client()  # no cookie: a script
    answer = script.get("/api/things", headers=bearer(token))
    assert answer.get_json() == {"user": "alice@corp.com", "method": "GET"}
    assert "Set-Cookie" not in answer.headers  # though the view wrote to the session
    # Bearer requests need no CSRF token: there is no ambient credential to abuse.
    posted = script.post("/api/things", json={}, headers=bearer(token))
    assert posted.get_json() == {"user": "alice@corp.com", "method": "POST"}
    assert "Set-Cookie" not in posted.headers
    assert rows(project)[0].last_used_at is not None


def test_a_bearer_request_ignores_the_cookie_it_comes_with(project: Project,
                                                           signed_in: t.Any) -> None:
    token = create_on_page(signed_in)
    answer = signed_in.get("/api/things", headers=bearer(token + "x"))
    assert answer.status_code == 401  # the bad token is not rescued by the session cookie
    assert "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("header", [
    "Bearer flk_" + "A" * 43,  # well-formed, unknown
    "Bearer not-a-token",
    "Bearer ",
    "bearer flk_" + "B" * 43,
])
def test_an_unknown_token_is_a_401_problem(project: Project, header: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    answer = project.app.test_client().get("/api/things", headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.mimetype == "application/problem+json"
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="Auth Test"')
    assert "Set-Cookie" not in answer.headers
    if header.strip().lower() != "bearer":
        assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
        assert answer.get_json()["code"] == "invalid_api_token"
        assert any(getattr(r, "security_event", None) == "invalid_api_token"
                   and r.levelno == logging.WARNING for r in caplog.records)


def test_an_expired_token_is_refused(project: Project, signed_in: t.Any) -> None:
    token = create_on_page(signed_in, days="7")
    with project.engine.begin() as connection:
        connection.execute(sa.update(auth_models(project.app).AuthToken).values(
            expires_at=dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=1)))
    answer = project.app.test_client().get("/api/things", headers=bearer(token))
    assert answer.status_code == 401
    assert answer.get_json()["code"] == "invalid_api_token"


def test_a_token_revoked_on_the_page_stops_working(project: Project, signed_in: t.Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    token = create_on_page(signed_in)
    script = project.app.test_client()
    assert script.get("/api/things", headers=bearer(token)).status_code == 200
    token_id = rows(project)[0].id
    assert signed_in.post(f"/auth/tokens/{token_id}/revoke").status_code == 403  # no CSRF
    done = signed_in.post(f"/auth/tokens/{token_id}/revoke", data={"csrf_token": csrf(signed_in)})
    assert done.status_code == 302
    assert rows(project)[0].revoked_at is not None
    assert "revoked" in signed_in.get("/auth/tokens").get_data(as_text=True)
    assert script.get("/api/things", headers=bearer(token)).status_code == 401
    assert any(getattr(r, "security_event", None) == "token_revoked" for r in caplog.records)


def test_someone_elses_token_cannot_be_revoked(project: Project, signed_in: t.Any,
                                               provider: FakeProvider) -> None:
    create_on_page(signed_in)
    provider.account.email, provider.account.sub = "bob@example.org", "2" * 21
    bob = project.app.test_client()
    Flow(bob, provider).sign_in()
    token_id = rows(project)[0].id
    refused = bob.post(f"/auth/tokens/{token_id}/revoke", data={"csrf_token": csrf(bob)})
    assert refused.status_code == 404
    assert 'data-reason="token_not_found"' in refused.get_data(as_text=True)
    assert rows(project)[0].revoked_at is None


def test_a_token_outside_the_api_is_refused(project: Project, signed_in: t.Any) -> None:
    token = create_on_page(signed_in)
    script = project.app.test_client()
    for path in ("/private", "/auth/tokens"):
        answer = script.get(path, headers=bearer(token))
        assert answer.status_code == 401, path
        assert answer.get_json()["code"] == "token_outside_api"
        assert answer.get_json()["title"] == "API tokens work under /api only"
        assert "Set-Cookie" not in answer.headers


def test_a_token_cannot_make_tokens(project: Project, signed_in: t.Any) -> None:
    token = create_on_page(signed_in)
    answer = project.app.test_client().post("/auth/tokens", headers=bearer(token),
                                            data={"name": "more"})
    assert answer.status_code == 401
    assert len(rows(project)) == 1


def test_bad_token_forms_are_clear_errors(project: Project, signed_in: t.Any) -> None:
    token = csrf(signed_in)
    for days, message in (("0", "from 1 to 3650 days"), ("forever", "1 to 3650 days")):
        page = signed_in.post("/auth/tokens", data={"csrf_token": token, "days": days})
        assert page.status_code == 400
        assert message in page.get_data(as_text=True)
    page = signed_in.post("/auth/tokens", data={"csrf_token": token, "name": "x" * 101})
    assert page.status_code == 400 and "at most 100 characters" in page.get_data(as_text=True)
    assert rows(project) == []


def test_a_token_of_a_user_taken_off_the_allow_list_is_refused(
        tmp_path: Path, project: Project, signed_in: t.Any, provider: FakeProvider,
        monkeypatch: pytest.MonkeyPatch) -> None:
    token = create_on_page(signed_in)
    # The application restarted with a shorter list (a new process: modules of its own).
    package = unique_package()
    folder = tmp_path / "restarted"
    path = write_project(folder, auth_cfg(provider, package, f"sqlite:///{tmp_path / 'db.sqlite'}",
                                          emails="bob@example.org"), auth_files(package))
    prepend_path(monkeypatch, str(folder))
    restarted = Project(path)
    try:
        answer = restarted.app.test_client().get("/api/things", headers=bearer(token))
        assert answer.status_code == 401
    finally:
        restarted.close()


def test_the_token_page_needs_a_signed_in_user(project: Project) -> None:
    client = project.app.test_client()
    assert client.get("/auth/tokens").status_code == 302
    assert client.get("/auth/me").status_code == 302
    assert client.get("/auth/me", headers={"Accept": "application/json"}).status_code == 401


# -- where the API lives: [API] URL_PREFIX, asked of the API extension -------------------------


@pytest.fixture(params=["/api", "/v1"])
def api_at(request: pytest.FixtureRequest, tmp_path: Path, provider: FakeProvider,
           monkeypatch: pytest.MonkeyPatch) -> t.Iterator[tuple[Project, str]]:
    """A project whose API (registered after the auth extension) lives at the parameter."""
    package = unique_package()
    prefix = t.cast(str, request.param)
    path = write_project(tmp_path, auth_cfg(provider, package,
                                            f"sqlite:///{tmp_path / 'db.sqlite'}",
                                            api_prefix=prefix), auth_files(package))
    prepend_path(monkeypatch, str(tmp_path))
    project = Project(path)
    project.metadata.create_all(project.engine)
    yield project, prefix
    project.close()


def test_a_signed_in_browser_writes_to_the_api_only_with_the_csrf_header(
        api_at: tuple[Project, str], provider: FakeProvider,
        caplog: pytest.LogCaptureFixture) -> None:
    project, prefix = api_at
    browser = project.app.test_client()
    Flow(browser, provider).sign_in()

    refused = browser.post(f"{prefix}/notes/", json={"text": "forged"})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "csrf_failed"
    assert any(getattr(r, "security_event", None) == "csrf_failed" for r in caplog.records)
    forged = browser.post(f"{prefix}/notes/", json={"text": "forged"},
                          headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403

    created = browser.post(f"{prefix}/notes/", json={"text": "mine"},
                           headers={"X-CSRF-Token": csrf(browser)})
    assert created.status_code == 201, created.get_data(as_text=True)
    listed = browser.get(f"{prefix}/notes/").get_json()
    assert [n["text"] for n in listed["items"]] == ["mine"]


def test_bearer_tokens_work_under_the_api_prefix_only(api_at: tuple[Project, str],
                                                      provider: FakeProvider) -> None:
    project, prefix = api_at
    browser = project.app.test_client()
    Flow(browser, provider).sign_in()
    token = create_on_page(browser)
    page = browser.get("/auth/tokens").get_data(as_text=True)
    assert f"to the API under <code>{prefix}</code>" in page

    script = project.app.test_client()
    created = script.post(f"{prefix}/notes/", json={"text": "from a script"},
                          headers=bearer(token))  # no CSRF token: no ambient credential
    assert created.status_code == 201, created.get_data(as_text=True)
    assert "Set-Cookie" not in created.headers
    listed = script.get(f"{prefix}/notes/", headers=bearer(token))
    assert [n["text"] for n in listed.get_json()["items"]] == ["from a script"]

    outside = ["/private", "/auth/tokens"] + (["/api/things"] if prefix != "/api" else [])
    for url in outside:
        answer = script.get(url, headers=bearer(token))
        assert answer.status_code == 401, url
        problem = answer.get_json()
        assert problem["code"] == "token_outside_api"
        assert problem["title"] == f"API tokens work under {prefix} only"
        assert f"accepted under '{prefix}' only" in problem["detail"]
        assert "Set-Cookie" not in answer.headers


def test_without_an_api_tokens_are_refused_everywhere(tmp_path: Path, provider: FakeProvider,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An app serving no API has no API paths: a bearer token is accepted nowhere."""
    package = unique_package()
    path = write_project(tmp_path, auth_cfg(provider, package,
                                            f"sqlite:///{tmp_path / 'db.sqlite'}"),
                         auth_files(package, VIEWS_WITHOUT_API))
    prepend_path(monkeypatch, str(tmp_path))
    project = Project(path)
    project.metadata.create_all(project.engine)
    try:
        browser = project.app.test_client()
        Flow(browser, provider).sign_in()
        token = create_on_page(browser)
        assert "This application serves no API" in browser.get("/auth/tokens").get_data(
            as_text=True)
        script = project.app.test_client()
        for url in ("/api/things", "/private"):
            answer = script.get(url, headers=bearer(token))
            assert answer.status_code == 401, url
            problem = answer.get_json()
            assert problem["code"] == "token_outside_api"
            assert problem["title"] == "API tokens are not accepted here"
            assert "serves no API" in problem["detail"]
    finally:
        project.close()


# -- flasker auth ... -------------------------------------------------------------------------


def test_auth_users_lists_who_signed_in(cfg_path: Path, signed_in: t.Any, runner: t.Any) -> None:
    result = runner.invoke(["-c", str(cfg_path), "auth", "users"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["ID", "EMAIL", "NAME", "ALLOWED", "LAST", "SIGN-IN", "FIRST",
                                "SIGN-IN"]
    assert "alice@corp.com" in lines[2] and "Alice Example" in lines[2] and " yes " in lines[2]


def test_auth_users_with_no_one_yet(cfg_path: Path, project: Project, runner: t.Any) -> None:
    result = runner.invoke(["-c", str(cfg_path), "auth", "users"])
    assert result.exit_code == 0 and "No one has signed in yet." in result.output


def test_auth_token_create_list_revoke(cfg_path: Path, project: Project, signed_in: t.Any,
                                       runner: t.Any) -> None:
    made = runner.invoke(["-c", str(cfg_path), "auth", "token", "create", " ALICE@corp.com",
                          "--expires-in", "7", "--name", "deploy"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert TOKEN_RE.fullmatch(token)
    assert "Created token 1 for alice@corp.com" in made.stderr
    script = project.app.test_client()
    assert script.get("/api/things", headers=bearer(token)).status_code == 200
    expires = rows(project)[0].expires_at - rows(project)[0].created_at
    assert dt.timedelta(days=7) - expires < dt.timedelta(seconds=5)

    listed = runner.invoke(["-c", str(cfg_path), "auth", "token", "list"])
    assert listed.exit_code == 0
    assert "deploy" in listed.output and token[:10] in listed.output and "active" in listed.output
    assert token not in listed.output

    revoked = runner.invoke(["-c", str(cfg_path), "auth", "token", "revoke", "1"])
    assert revoked.exit_code == 0 and "Revoked token 1 of alice@corp.com." in revoked.output
    assert script.get("/api/things", headers=bearer(token)).status_code == 401
    again = runner.invoke(["-c", str(cfg_path), "auth", "token", "revoke", token])
    assert "Already revoked: token 1" in again.output
    assert "revoked" in runner.invoke(["-c", str(cfg_path), "auth", "token", "list"]).output


def test_auth_token_revoke_every_token_of_a_user(cfg_path: Path, project: Project,
                                                 signed_in: t.Any, runner: t.Any) -> None:
    for _ in range(2):
        runner.invoke(["-c", str(cfg_path), "auth", "token", "create", "alice@corp.com"])
    result = runner.invoke(["-c", str(cfg_path), "auth", "token", "revoke", "--user",
                            "alice@corp.com"])
    assert result.exit_code == 0, result.output
    assert [r.revoked_at is not None for r in rows(project)] == [True, True]


@pytest.mark.parametrize(("args", "message"), [
    (["create", "nobody@corp.com"], "No user with the e-mail address 'nobody@corp.com'"),
    (["create", "alice@corp.com", "--expires-in", "0"], "0 is not in the range 1<=x<=3650"),
    (["create", "alice@corp.com", "--expires-in", "soon"], "'soon' is not a valid integer"),
    (["revoke"], "Name the tokens to revoke"),
    (["revoke", "42"], "No token '42'"),
    (["revoke", "garbage"], "No token 'garbage'"),
    (["list", "--user", "nobody@corp.com"], "No user with the e-mail address"),
])
def test_auth_token_misuse_is_a_usage_error(cfg_path: Path, signed_in: t.Any, runner: t.Any,
                                            args: list[str], message: str) -> None:
    result = runner.invoke(["-c", str(cfg_path), "auth", "token", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_auth_token_create_for_someone_no_longer_allowed(cfg_path: Path, signed_in: t.Any,
                                                         runner: t.Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASKER__AUTH__AUTHORIZED_EMAILS", "bob@example.org")
    result = runner.invoke(["-c", str(cfg_path), "auth", "token", "create", "alice@corp.com"])
    assert result.exit_code == 2
    assert "not on the allow-list any more" in result.output


def test_auth_commands_without_tables_say_how_to_make_them(cfg_path: Path,
                                                           runner: t.Any) -> None:
    result = runner.invoke(["-c", str(cfg_path), "auth", "users"])
    assert result.exit_code == 1
    assert "The auth tables cannot be read" in result.output
    assert "flasker db upgrade" in result.output


def test_auth_help_lists_the_commands(cfg_path: Path, runner: t.Any) -> None:
    result = runner.invoke(["-c", str(cfg_path), "auth", "-h"])
    assert result.exit_code == 0
    assert "users" in result.output and "token" in result.output
    sub = runner.invoke(["-c", str(cfg_path), "auth", "token", "-h"])
    assert all(word in sub.output for word in ("create", "list", "revoke"))


def test_auth_commands_as_a_subprocess(cfg_path: Path, provider: FakeProvider) -> None:
    folder = cfg_path.parent

    def flasker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([FLASKER, *args], cwd=folder, capture_output=True, text=True,
                              timeout=60, check=False)

    assert flasker("db", "create").returncode == 0
    missing = flasker("auth", "token", "create", "alice@corp.com")
    assert missing.returncode == 2 and "No user with the e-mail address" in missing.stderr

    project = Project(cfg_path)
    try:
        Flow(project.app.test_client(), provider).sign_in()
    finally:
        project.close()
    made = flasker("auth", "token", "create", "alice@corp.com", "--name", "cron")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert TOKEN_RE.fullmatch(token)
    users = flasker("auth", "users")
    assert users.returncode == 0 and "alice@corp.com" in users.stdout
    listed = flasker("auth", "token", "list", "--user", "alice@corp.com")
    assert "cron" in listed.stdout and "active" in listed.stdout
    assert flasker("auth", "token", "revoke", token).returncode == 0
    assert "revoked" in flasker("auth", "token", "list").stdout
    engine = sa.create_engine(f"sqlite:///{folder / 'db.sqlite'}")
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT email FROM auth_users")) == "alice@corp.com"
    engine.dispose()


def test_bearer_requests_stay_cookieless_when_the_app_replaces_its_sessions(
        tmp_path: Path, provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    """``after_startup`` wraps the session interface a module installed after registering."""
    package = unique_package()
    views = auth_files(package)[f"{package}/views.py"] + (
        "\nfrom flask.sessions import SecureCookieSessionInterface\n"
        "app.session_interface = SecureCookieSessionInterface()\n")
    path = write_project(tmp_path, auth_cfg(provider, package,
                                            f"sqlite:///{tmp_path / 'db.sqlite'}"),
                         {**auth_files(package), f"{package}/views.py": views})
    prepend_path(monkeypatch, str(tmp_path))
    project = Project(path)
    project.metadata.create_all(project.engine)
    try:
        client = project.app.test_client()
        Flow(client, provider).sign_in()
        token = create_on_page(client)
        answer = project.app.test_client().get("/api/things", headers=bearer(token))
        assert answer.status_code == 200
        assert "Set-Cookie" not in answer.headers
    finally:
        project.close()
