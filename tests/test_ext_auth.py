"""Sign in with Google, end to end: the real Authlib client against a fake provider over HTTP.

One test per check and per refusal; each refusal is a friendly page (or a problem)
and a security event on the ``flasker.security`` logger, never a 500.
"""

from __future__ import annotations

import logging
import typing as t
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
import sqlalchemy as sa
from flask import Flask

from flasker import ConfigError, Project
from flasker.ext.auth import GoogleAuthManager, auth_models

from .auth_cases import BYPASSES
from .conftest import free_port, prepend_path, unique_package, write_project
from .oidc_provider import CLIENT_ID, Account, FakeProvider, Flow, auth_files

Make = t.Callable[..., Project]


@pytest.fixture(autouse=True)
def _security_events(caplog: pytest.LogCaptureFixture) -> None:
    """Record the INFO events of ``flasker.security`` too (sign-ins, tokens made, revoked).

    Nothing configures logging in a test, so the root logger's WARNING would hide them.
    """
    caplog.set_level(logging.INFO, logger="flasker.security")


@pytest.fixture
def project(build_auth: t.Callable[..., Project]) -> Project:
    return build_auth()


@pytest.fixture
def client(project: Project) -> t.Any:
    return project.app.test_client()


@pytest.fixture
def flow(client: t.Any, provider: FakeProvider) -> Flow:
    return Flow(client, provider)


def assert_refused(response: t.Any, code: str, caplog: pytest.LogCaptureFixture,
                   status: int = 403) -> None:
    """A friendly page with the reason, a security event, and no sign-in."""
    body = response.get_data(as_text=True)
    assert response.status_code == status, body
    assert response.mimetype == "text/html"
    assert f'data-reason="{code}"' in body
    assert "Back to sign-in" in body
    events = [r for r in caplog.records if getattr(r, "security_event", None) == code]
    assert events, f"no security event {code!r} in {[r.getMessage() for r in caplog.records]}"
    assert all(r.name == "flasker.security" and r.levelno >= logging.WARNING for r in events)


def session_cookie(client: t.Any) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None, "no session cookie"
    return t.cast(str, cookie.value)


def users(project: Project) -> list[t.Any]:
    """The rows of ``auth_users``."""
    with project.engine.connect() as connection:
        return list(connection.execute(sa.select(auth_models(project.app).AuthUser.__table__)))


# -- the happy path -------------------------------------------------------------------------


def test_sign_in_lands_on_the_requested_page(db_url: str, build_auth: t.Callable[..., Project],
                                             provider: FakeProvider,
                                             caplog: pytest.LogCaptureFixture) -> None:
    project = build_auth(db_url)
    client = project.app.test_client()
    flow = Flow(client, provider)

    first = client.get("/private?tab=2")
    assert first.status_code == 302
    login_url = urlsplit(first.headers["Location"])
    assert login_url.path == "/auth/login"
    assert parse_qs(login_url.query)["next"] == ["/private?tab=2"]
    page = client.get(first.headers["Location"])
    assert page.status_code == 200
    assert "Sign in to Auth Test" in page.get_data(as_text=True)

    authorize = flow.start("/private?tab=2")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["nonce"] and query["state"]
    assert query["scope"] == ["openid email profile"]
    assert query["redirect_uri"] == ["http://localhost/auth/oauth2callback"]

    done = client.get(flow.consent(authorize))
    assert done.status_code == 302
    assert done.headers["Location"] == "/private?tab=2"
    landed = client.get("/private?tab=2")
    assert landed.status_code == 200
    assert "Private: alice@corp.com" in landed.get_data(as_text=True)

    rows = users(project)
    assert [(r.email, r.sub, r.issuer) for r in rows] == [
        ("alice@corp.com", provider.account.sub, provider.url)]
    assert any(getattr(r, "security_event", None) == "signed_in" for r in caplog.records)


def test_the_fake_provider_enforces_pkce_and_single_use_codes(provider: FakeProvider) -> None:
    """The double is strict, so that a sign-in passing through it proves PKCE ran."""
    authorize = (provider.url + "/authorize?" + "&".join(f"{k}={quote(v)}" for k, v in {
        "client_id": CLIENT_ID, "response_type": "code", "scope": "openid email",
        "redirect_uri": "http://localhost/cb", "state": "s", "nonce": "n",
        "code_challenge": "x" * 43, "code_challenge_method": "S256"}.items()))
    params = dict((k, v[0]) for k, v in parse_qs(urlsplit(authorize).query).items())
    answer = requests.post(provider.url + "/authorize", data={**params, "allow": "1"},
                           allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    token = requests.post(provider.url + "/token", timeout=10,
                          auth=(provider.client_id, provider.client_secret),
                          data={"grant_type": "authorization_code", "code": code,
                                "redirect_uri": "http://localhost/cb", "code_verifier": "wrong"})
    assert token.status_code == 400
    assert token.json()["error_description"] == "PKCE verification failed"
    plain = dict(params, code_challenge_method="plain")
    refused = requests.get(provider.url + "/authorize", params=plain, timeout=10)
    assert refused.status_code == 400


# -- state, PKCE and the provider's answers --------------------------------------------------


def test_a_replayed_callback_is_refused(flow: Flow, client: t.Any,
                                        caplog: pytest.LogCaptureFixture) -> None:
    callback = flow.consent(flow.start())
    assert client.get(callback).status_code == 302
    assert_refused(client.get(callback), "state_mismatch", caplog, 400)


def test_a_replayed_old_cookie_does_not_bring_the_state_back(
        project: Project, flow: Flow, client: t.Any, caplog: pytest.LogCaptureFixture) -> None:
    """The pending sign-in lives server-side: a copy of the pre-callback cookie is useless."""
    callback = flow.consent(flow.start())
    old_cookie = session_cookie(client)
    assert client.get(callback).status_code == 302
    attacker = project.app.test_client()
    attacker.set_cookie("session", old_cookie)
    assert_refused(attacker.get(callback), "state_mismatch", caplog, 400)
    assert attacker.get("/private").status_code == 302


def test_a_callback_in_another_browser_is_refused(project: Project, flow: Flow,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    callback = flow.consent(flow.start())
    other = project.app.test_client()
    assert_refused(other.get(callback), "state_mismatch", caplog, 400)
    # The code was not spent: the rightful browser still completes its sign-in.
    assert flow.client.get(callback).headers["Location"] == "/private"


def test_a_forged_state_is_refused(flow: Flow, client: t.Any,
                                   caplog: pytest.LogCaptureFixture) -> None:
    callback = flow.consent(flow.start())
    forged = callback.replace("state=", "state=forged")
    assert_refused(client.get(forged), "state_mismatch", caplog, 400)


def test_a_callback_without_state_is_refused(client: t.Any,
                                             caplog: pytest.LogCaptureFixture) -> None:
    assert_refused(client.get("/auth/oauth2callback?code=abc"), "state_mismatch", caplog, 400)


def test_the_user_denying_consent_is_refused(flow: Flow, client: t.Any,
                                             caplog: pytest.LogCaptureFixture) -> None:
    response = flow.sign_in(approve=False)
    assert_refused(response, "provider_error", caplog, 400)
    assert "access_denied" in caplog.text
    assert client.get("/private").status_code == 302


def test_an_identity_provider_error_is_refused(flow: Flow, provider: FakeProvider,
                                               caplog: pytest.LogCaptureFixture) -> None:
    provider.tamper.authorize_error = "server_error"
    assert_refused(flow.sign_in(), "provider_error", caplog, 400)


def test_a_refused_code_exchange_is_refused(flow: Flow, provider: FakeProvider,
                                            caplog: pytest.LogCaptureFixture) -> None:
    provider.tamper.token_error = "invalid_grant"
    assert_refused(flow.sign_in(), "token_exchange_failed", caplog, 400)


def test_a_token_response_without_id_token_is_refused(flow: Flow, provider: FakeProvider,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    provider.tamper.omit_id_token = True
    assert_refused(flow.sign_in(), "invalid_id_token", caplog)


def test_an_unreachable_provider_is_a_friendly_502(build_auth: t.Callable[..., Project],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    project = build_auth(overrides={"AUTH": {"METADATA_URL": dead}})
    response = project.app.test_client().get("/auth/start?next=/private")
    assert_refused(response, "provider_unavailable", caplog, 502)


def test_missing_tables_are_a_friendly_503(build_auth: t.Callable[..., Project],
                                           caplog: pytest.LogCaptureFixture) -> None:
    project = build_auth(create_tables=False)
    response = project.app.test_client().get("/auth/start")
    assert_refused(response, "storage_unavailable", caplog, 503)


def test_refusals_are_problem_json_for_json_clients(flow: Flow, client: t.Any,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    callback = flow.consent(flow.start())
    client.get(callback)
    response = client.get(callback, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "state_mismatch"
    assert body["status"] == 400 and body["title"] and body["detail"]


# -- the ID token ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "value", "code"), [
    ("nonce", "another-sign-in's-nonce", "nonce_mismatch"),
    ("iss", "https://evil.example", "issuer_mismatch"),
    ("aud", "another-client.apps.example", "audience_mismatch"),
    ("azp", "another-client.apps.example", "audience_mismatch"),
    ("exp_delta", -300, "token_expired"),
    ("iat_delta", 600, "invalid_id_token"),
    ("key", "unknown_kid", "unknown_signing_key"),
    ("key", "other_key", "bad_signature"),
    ("key", "hs256", "bad_signature"),
])
def test_a_bad_id_token_is_refused(flow: Flow, provider: FakeProvider, project: Project,
                                   caplog: pytest.LogCaptureFixture, fault: str, value: t.Any,
                                   code: str) -> None:
    setattr(provider.tamper, fault, value)
    assert_refused(flow.sign_in(), code, caplog)
    assert users(project) == []
    assert flow.client.get("/private").status_code == 302


def test_a_token_for_another_audience_is_refused_even_when_azp_is_ours(
        flow: Flow, provider: FakeProvider, caplog: pytest.LogCaptureFixture) -> None:
    """Authlib's default checks accept this one (azp is ours, aud is never compared)."""
    provider.tamper.aud = "another-client.apps.example"
    provider.tamper.azp = CLIENT_ID
    assert_refused(flow.sign_in(), "audience_mismatch", caplog)


def test_an_audience_list_holding_us_and_another_is_refused(
        flow: Flow, provider: FakeProvider, caplog: pytest.LogCaptureFixture) -> None:
    provider.tamper.aud = [CLIENT_ID, "another-client.apps.example"]
    provider.tamper.azp = CLIENT_ID
    assert_refused(flow.sign_in(), "audience_mismatch", caplog)


def test_a_recently_expired_token_passes_within_the_small_leeway(flow: Flow,
                                                                 provider: FakeProvider) -> None:
    provider.tamper.exp_delta = -20
    assert flow.sign_in().headers["Location"] == "/private"


def test_an_unknown_kid_refetches_the_keys_once(flow: Flow, provider: FakeProvider,
                                                caplog: pytest.LogCaptureFixture) -> None:
    provider.tamper.key = "unknown_kid"
    assert_refused(flow.sign_in(), "unknown_signing_key", caplog)
    assert provider.hits.count("/jwks") == 2


def test_rotated_keys_are_fetched_again(project: Project, flow: Flow,
                                        provider: FakeProvider) -> None:
    assert flow.sign_in().headers["Location"] == "/private"
    assert provider.hits.count("/jwks") == 1
    provider.rotate_key()
    again = Flow(project.app.test_client(), provider)
    assert again.sign_in().headers["Location"] == "/private"
    assert provider.hits.count("/jwks") == 2


@pytest.mark.parametrize("token_issuer", ["https://accounts.google.com", "accounts.google.com"])
def test_both_google_issuer_forms_are_accepted(flow: Flow, provider: FakeProvider,
                                               project: Project, token_issuer: str) -> None:
    provider.tamper.metadata_issuer = "https://accounts.google.com"
    provider.tamper.iss = token_issuer
    assert flow.sign_in().headers["Location"] == "/private"
    assert [r.issuer for r in users(project)] == ["https://accounts.google.com"]


def test_a_lookalike_of_the_google_issuer_is_refused(flow: Flow, provider: FakeProvider,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    provider.tamper.metadata_issuer = "https://accounts.google.com"
    provider.tamper.iss = "https://accounts.google.com.evil.example"
    assert_refused(flow.sign_in(), "issuer_mismatch", caplog)


def test_an_authorization_response_from_another_issuer_is_refused(
        flow: Flow, provider: FakeProvider, caplog: pytest.LogCaptureFixture) -> None:
    provider.tamper.iss_param = "https://evil.example"  # RFC 9207 mix-up defence
    assert_refused(flow.sign_in(), "issuer_mismatch", caplog)


@pytest.mark.parametrize("verified", [False, None, "true", 1])
def test_an_unverified_email_is_refused(flow: Flow, provider: FakeProvider,
                                        caplog: pytest.LogCaptureFixture, verified: t.Any) -> None:
    provider.account.email_verified = verified
    assert_refused(flow.sign_in(), "email_unverified", caplog)


@pytest.mark.parametrize("hd", [None, "evil.com", "corp.com.evil.com", "sub.corp.com"])
def test_a_hosted_domain_mismatch_is_refused(build_auth: t.Callable[..., Project],
                                             provider: FakeProvider,
                                             caplog: pytest.LogCaptureFixture,
                                             hd: str | None) -> None:
    project = build_auth(extra="HOSTED_DOMAIN = corp.com")
    provider.account.hd = hd
    assert_refused(Flow(project.app.test_client(), provider).sign_in(),
                   "hosted_domain_mismatch", caplog)


def test_the_hosted_domain_is_asked_for_and_accepted(build_auth: t.Callable[..., Project],
                                                     provider: FakeProvider) -> None:
    project = build_auth(extra="HOSTED_DOMAIN = Corp.com")
    provider.account.hd = "corp.com"
    flow = Flow(project.app.test_client(), provider)
    authorize = flow.start()
    assert parse_qs(urlsplit(authorize).query)["hd"] == ["corp.com"]
    assert flow.client.get(flow.consent(authorize)).headers["Location"] == "/private"


# -- accounts -------------------------------------------------------------------------------


def test_users_are_keyed_by_sub(project: Project, flow: Flow, provider: FakeProvider) -> None:
    flow.sign_in()
    provider.account.email = "Bob@example.org"  # the same account changed its address
    Flow(project.app.test_client(), provider).sign_in()
    assert [(r.sub, r.email) for r in users(project)] == [(provider.account.sub,
                                                           "bob@example.org")]


def test_a_known_email_with_a_new_sub_is_refused(project: Project, flow: Flow,
                                                 provider: FakeProvider,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    assert flow.sign_in().status_code == 302
    provider.account.sub = "999999999999999999999"  # another account claiming the address
    other = Flow(project.app.test_client(), provider)
    assert_refused(other.sign_in(), "account_mismatch", caplog)
    assert len(users(project)) == 1


def test_an_account_off_the_allow_list_is_refused(flow: Flow, provider: FakeProvider,
                                                  project: Project,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    provider.account.email = "mallory@corp.com"
    response = flow.sign_in()
    assert_refused(response, "not_allowed", caplog)
    assert "not on this application&#39;s list of allowed accounts" in response.get_data(
        as_text=True)
    assert "mallory@corp.com" in caplog.text
    assert users(project) == []


@pytest.mark.parametrize(("email", "code"), [
    ("malice@corp.com", "not_allowed"),           # a longer local part ending the same way
    ("alice@corp.com.evil.com", "not_allowed"),   # the allowed address as a prefix
    ("alice@evilcorp.com", "not_allowed"),
    ("alice@sub.corp.com", "not_allowed"),
    ("alice+admin@corp.com", "not_allowed"),
    ("\u0430lice@corp.com", "not_allowed"),       # Cyrillic 'а'
    ("\uff41lice@corp.com", "not_allowed"),       # fullwidth 'ａ'
    ("bob@example.org.evil.com", "not_allowed"),  # the allowed domain as a prefix
    ("bob@sub.example.org", "not_allowed"),       # domains match exactly, not subdomains
    ("bob@evilexample.org", "not_allowed"),
    ("alice@corp.com\u00a0", "invalid_id_token"), # a trailing no-break space
    ("alice@corp.com\u200b", "invalid_id_token"), # a trailing zero-width space
    ("ali ce@corp.com", "invalid_id_token"),
    ("alice@corp.com.", "invalid_id_token"),
    ("alice@corp.com@evil.com", "invalid_id_token"),
])
def test_lookalike_emails_are_refused(build_auth: t.Callable[..., Project], provider: FakeProvider,
                                      caplog: pytest.LogCaptureFixture, email: str,
                                      code: str) -> None:
    project = build_auth(emails="alice@corp.com", extra="AUTHORIZED_DOMAINS = example.org")
    provider.account.email = email
    assert_refused(Flow(project.app.test_client(), provider).sign_in(), code, caplog)
    assert users(project) == []


def test_the_kelvin_sign_does_not_become_a_k(build_auth: t.Callable[..., Project],
                                             provider: FakeProvider,
                                             caplog: pytest.LogCaptureFixture) -> None:
    project = build_auth(emails="kate@corp.com")
    provider.account.email = "\u212aate@corp.com"  # lowers to 'kate' under Unicode rules
    assert_refused(Flow(project.app.test_client(), provider).sign_in(), "not_allowed", caplog)


@pytest.mark.parametrize("email", ["ALICE@CORP.COM", "Alice@Corp.com", "bob@EXAMPLE.org"])
def test_allowed_emails_match_whatever_their_case(build_auth: t.Callable[..., Project],
                                                  provider: FakeProvider, email: str) -> None:
    project = build_auth(emails="  Alice@CORP.com ,bob@example.org")
    provider.account.email = email
    assert Flow(project.app.test_client(), provider).sign_in().headers["Location"] == "/private"


def test_an_allowed_domain_lets_its_addresses_in(build_auth: t.Callable[..., Project],
                                                 provider: FakeProvider) -> None:
    project = build_auth(emails="", extra="AUTHORIZED_DOMAINS = example.org")
    provider.account.email = "carol@example.org"
    assert Flow(project.app.test_client(), provider).sign_in().headers["Location"] == "/private"


def test_an_empty_allow_list_denies_everyone(build_auth: t.Callable[..., Project],
                                             provider: FakeProvider,
                                             caplog: pytest.LogCaptureFixture) -> None:
    project = build_auth(emails="")
    assert any(getattr(r, "security_event", None) == "empty_allow_list" for r in caplog.records)
    assert_refused(Flow(project.app.test_client(), provider).sign_in(), "not_allowed", caplog)


def test_removing_an_email_takes_effect_on_the_next_request(
        build_auth: t.Callable[..., Project], provider: FakeProvider, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    db = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    before = build_auth(db)
    client = before.app.test_client()
    Flow(client, provider).sign_in()
    cookie = session_cookie(client)
    assert client.get("/private").status_code == 200
    after = build_auth(db, emails="bob@example.org")  # the app restarted with a shorter list
    same_browser = after.app.test_client()
    same_browser.set_cookie("session", cookie)
    response = same_browser.get("/private")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/auth/login"
    assert any(getattr(r, "security_event", None) == "access_revoked" for r in caplog.records)


# -- the session ----------------------------------------------------------------------------


def test_signing_in_rotates_the_session(flow: Flow, client: t.Any) -> None:
    with client.session_transaction() as planted:
        planted["fixated"] = "attacker's value"
    authorize = flow.start()
    before = session_cookie(client)
    client.get(flow.consent(authorize))
    after = session_cookie(client)
    assert after != before
    with client.session_transaction() as session:
        assert "fixated" not in session
        assert not any(k.startswith("_state_") for k in session)
        assert isinstance(session["_user_id"], str) and len(session["_user_id"]) >= 43


def test_sign_out_needs_post_and_its_csrf_token(project: Project, flow: Flow, client: t.Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    flow.sign_in()
    cookie = session_cookie(client)
    assert client.get("/auth/logout").status_code == 405
    assert_refused(client.post("/auth/logout"), "csrf_failed", caplog)
    assert client.post("/auth/logout", data={"csrf_token": "forged"}).status_code == 403
    assert client.get("/private").status_code == 200  # still signed in

    token = client.get("/auth/me").get_json()["csrf_token"]
    out = client.post("/auth/logout", data={"csrf_token": token})
    assert out.status_code == 302
    assert out.headers["Location"] == "/auth/login?signed_out=1"
    assert "You are signed out." in client.get(out.headers["Location"]).get_data(as_text=True)
    assert client.get("/private").status_code == 302
    with project.engine.connect() as connection:
        sessions = auth_models(project.app).AuthSession
        assert connection.scalar(sa.select(sa.func.count()).select_from(sessions)) == 0

    # A copy of the signed-in cookie is worthless once its sign-in is over.
    thief = project.app.test_client()
    thief.set_cookie("session", cookie)
    assert thief.get("/private").status_code == 302


def test_signing_in_again_ends_the_previous_sign_in(project: Project, flow: Flow,
                                                   client: t.Any) -> None:
    flow.sign_in()
    first = session_cookie(client)
    assert client.get("/auth/login?next=/private").headers["Location"] == "/private"
    flow.sign_in()
    with project.engine.connect() as connection:
        sessions = auth_models(project.app).AuthSession
        assert connection.scalar(sa.select(sa.func.count()).select_from(sessions)) == 1
    old = project.app.test_client()
    old.set_cookie("session", first)
    assert old.get("/private").status_code == 302


def test_a_json_client_signs_out_with_the_csrf_header(flow: Flow, client: t.Any) -> None:
    flow.sign_in()
    token = client.get("/auth/me").get_json()["csrf_token"]
    out = client.post("/auth/logout", headers={"X-CSRF-Token": token,
                                               "Accept": "application/json"})
    assert out.status_code == 204
    assert client.get("/api/things").status_code == 401


def test_auth_pages_cannot_be_framed_or_cached(client: t.Any) -> None:
    page = client.get("/auth/login?next=/private")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"


def test_cookies_are_httponly_and_lax_and_secure_outside_development(
        build_auth: t.Callable[..., Project], provider: FakeProvider) -> None:
    project = build_auth(testing=False)
    app = project.app
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    client = app.test_client()
    start = client.get("/auth/start")
    cookie = start.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    # The redirect URI is https too: Secure cookies mean the site is served over TLS.
    redirect_uri = parse_qs(urlsplit(start.headers["Location"]).query)["redirect_uri"][0]
    assert redirect_uri == "https://localhost/auth/oauth2callback"


def test_cookies_in_testing_are_httponly_and_lax(flow: Flow, client: t.Any) -> None:
    response = flow.sign_in()
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_samesite_strict_is_lowered_to_lax_for_the_callback(
        build_auth: t.Callable[..., Project]) -> None:
    project = build_auth(overrides={"APP": {"SESSION_COOKIE_SAMESITE": "Strict"}})
    assert project.app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


# -- next -----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", BYPASSES)
def test_next_bypasses_go_home(flow: Flow, target: str) -> None:
    assert flow.sign_in(next_url=target).headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/private", "/private?tab=2&q=a%20b", "/api/things",
                                    "/caf%C3%A9"])
def test_next_same_site_paths_are_honoured(flow: Flow, target: str) -> None:
    assert flow.sign_in(next_url=target).headers["Location"] == target


def test_a_protected_path_with_odd_characters_round_trips(flow: Flow, client: t.Any) -> None:
    first = client.get("/caf%C3%A9/a%2Fb?x=%2F%2F")
    target = parse_qs(urlsplit(first.headers["Location"]).query)["next"][0]
    assert target == "/caf%C3%A9/a/b?x=%2F%2F"
    assert flow.sign_in(next_url=target).headers["Location"] == target


# -- protecting views -----------------------------------------------------------------------


def test_every_view_needs_a_sign_in_but_the_exempt_ones(client: t.Any) -> None:
    page = client.get("/private")
    assert page.status_code == 302
    assert urlsplit(page.headers["Location"]).path == "/auth/login"
    assert client.get("/no/such/page").status_code == 302  # no hint of what exists
    api = client.get("/api/things")
    assert api.status_code == 401
    assert api.mimetype == "application/problem+json"
    assert api.get_json()["code"] == "unauthenticated"
    assert api.headers["WWW-Authenticate"] == 'Bearer realm="Auth Test"'
    json_page = client.get("/private", headers={"Accept": "application/json"})
    assert json_page.status_code == 401
    assert json_page.mimetype == "application/problem+json"
    assert client.post("/private", json={"a": 1}).status_code == 401

    assert client.get("/static/hello.txt").get_data(as_text=True) == "static hello\n"
    assert client.get("/healthz").status_code == 200
    assert client.get("/open").get_data(as_text=True) == "open to everyone"
    assert client.get("/auth/login").status_code == 200


def test_without_protect_all_views_only_marked_views_need_a_sign_in(
        build_auth: t.Callable[..., Project], provider: FakeProvider) -> None:
    project = build_auth(extra="PROTECT_ALL_VIEWS = false")
    client = project.app.test_client()
    assert client.get("/private").status_code == 200
    guarded = client.get("/guarded")
    assert guarded.status_code == 302
    assert parse_qs(urlsplit(guarded.headers["Location"]).query)["next"] == ["/guarded"]
    api = client.get("/api/guarded")
    assert api.status_code == 401 and api.mimetype == "application/problem+json"
    Flow(client, provider).sign_in()
    assert client.get("/guarded").get_data(as_text=True) == "guarded alice@corp.com"


def test_session_api_calls_that_change_things_need_the_csrf_header(
        flow: Flow, client: t.Any, caplog: pytest.LogCaptureFixture) -> None:
    flow.sign_in()
    assert client.get("/api/things").get_json() == {"user": "alice@corp.com", "method": "GET"}
    refused = client.post("/api/things", json={})
    assert refused.status_code == 403
    assert refused.mimetype == "application/problem+json"
    assert refused.get_json()["code"] == "csrf_failed"
    assert any(getattr(r, "security_event", None) == "csrf_failed" for r in caplog.records)
    assert client.delete("/api/things", headers={"X-CSRF-Token": "forged"}).status_code == 403
    token = client.get("/auth/me").get_json()["csrf_token"]
    done = client.post("/api/things", json={}, headers={"X-CSRF-Token": token})
    assert done.get_json() == {"user": "alice@corp.com", "method": "POST"}


def test_pages_expose_the_csrf_token(flow: Flow, client: t.Any) -> None:
    flow.sign_in()
    page = client.get("/auth/tokens").get_data(as_text=True)
    assert '<meta name="csrf-token" content="' in page


# -- options --------------------------------------------------------------------------------


def test_a_custom_prefix_and_callback(build_auth: t.Callable[..., Project],
                                      provider: FakeProvider) -> None:
    project = build_auth(extra="URL_PREFIX = /account/\nCALLBACK_URL = /google/back")
    client = project.app.test_client()
    assert urlsplit(client.get("/private").headers["Location"]).path == "/account/login"
    start = client.get("/account/start?next=/private")
    redirect_uri = parse_qs(urlsplit(start.headers["Location"]).query)["redirect_uri"][0]
    assert redirect_uri == "http://localhost/account/google/back"
    callback = Flow(client, provider).consent(start.headers["Location"])
    assert callback.startswith("/account/google/back?")
    assert client.get(callback).headers["Location"] == "/private"


def test_the_config_section_wins_over_the_constructor(build_auth: t.Callable[..., Project],
                                                      provider: FakeProvider) -> None:
    views = auth_files("x")["x/views.py"].replace(
        'GoogleAuthManager()',
        'GoogleAuthManager(authorized_emails=["carol@corp.com"], url_prefix="/signin",'
        ' protect_all_views=False)')
    project = build_auth(views=views)  # the section sets AUTHORIZED_EMAILS but not the rest
    settings = project.app.extensions["flasker_auth"].settings
    assert settings.allow_list.emails == {"alice@corp.com", "bob@example.org"}
    assert settings.url_prefix == "/signin"
    assert settings.protect_all_views is False


def test_constructor_options_alone(tmp_path: Path, provider: FakeProvider,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    package = unique_package()
    views = auth_files(package)[f"{package}/views.py"].replace(
        "GoogleAuthManager()",
        f'GoogleAuthManager(client_id="{CLIENT_ID}", client_secret="{provider.client_secret}",'
        f' authorized_emails="alice@corp.com", metadata_url="{provider.metadata_url}")')
    path = write_project(tmp_path, f"""
        [PROJECT]
        NAME = Ctor
        MODULES = {package}.views
        [APP]
        TESTING = true
        SECRET_KEY = test-secret-key-0123456789abcdef
        """, {**auth_files(package), f"{package}/views.py": views})
    prepend_path(monkeypatch, str(tmp_path))
    project = Project(path)
    project.metadata.create_all(project.engine)
    try:
        client = project.app.test_client()
        assert Flow(client, provider).sign_in().headers["Location"] == "/private"
    finally:
        project.close()


WITHOUT_REGISTRATION = auth_files("x")["x/views.py"].replace(
    "current_project.register_manager(GoogleAuthManager())\n", "")


@pytest.mark.parametrize("how", ["GoogleAuthManager(app)", "init_app", "register_manager"])
def test_the_auth_section_is_read_however_the_extension_is_registered(
        build_auth: t.Callable[..., Project], provider: FakeProvider, how: str) -> None:
    project = build_auth(views=WITHOUT_REGISTRATION, create_tables=False)
    assert "flasker_auth" not in project.app.extensions
    if how == "GoogleAuthManager(app)":
        GoogleAuthManager(project.app)
    elif how == "init_app":
        GoogleAuthManager().init_app(project.app)
    else:
        project.register_manager(GoogleAuthManager())
    project.metadata.create_all(project.engine)
    settings = project.app.extensions["flasker_auth"].settings
    assert settings.allow_list.emails == {"alice@corp.com", "bob@example.org"}  # from [AUTH]
    assert Flow(project.app.test_client(), provider).sign_in().headers["Location"] == "/private"


def test_another_section_can_be_named(build_auth: t.Callable[..., Project],
                                      provider: FakeProvider) -> None:
    project = build_auth(views=WITHOUT_REGISTRATION, create_tables=False, overrides={
        "SIGNIN": {"CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": provider.client_secret,
                   "AUTHORIZED_EMAILS": "carol@corp.com",
                   "METADATA_URL": provider.metadata_url}})
    project.register_manager(GoogleAuthManager(), config_section="SIGNIN")
    settings = project.app.extensions["flasker_auth"].settings
    assert settings.allow_list.emails == {"carol@corp.com"}


def test_an_unknown_key_in_the_auth_section_suggests_the_right_one(
        build_auth: t.Callable[..., Project]) -> None:
    with pytest.raises(ConfigError, match=r"Unknown key 'CLIENT_IDD' in section \[AUTH\]"
                                          r" \(.*default.cfg:\d+\)\. Did you mean 'CLIENT_ID'\?"):
        build_auth(extra="CLIENT_IDD = typo.apps.example")


def test_registering_twice_is_refused(project: Project) -> None:
    with pytest.raises(RuntimeError, match="A GoogleAuthManager is already registered on the"
                                           " app"):
        project.register_manager(GoogleAuthManager())


def test_a_bare_flask_app_is_refused() -> None:
    with pytest.raises(RuntimeError, match="The app 'bare' is not a flasker project's app"):
        GoogleAuthManager(client_id="x").init_app(Flask("bare"))


# -- the tables, per project ------------------------------------------------------------------


def test_two_projects_in_one_process_have_their_own_auth_models(
        build_auth: t.Callable[..., Project], provider: FakeProvider) -> None:
    first, second = build_auth(), build_auth()
    one, two = auth_models(first.app), auth_models(second.app)
    assert one.AuthUser is not two.AuthUser
    for project, models in ((first, one), (second, two)):
        assert set(project.metadata.tables) >= {"auth_users", "auth_sessions", "auth_tokens",
                                                "auth_login_states"}
        assert models.AuthUser.__table__ is project.metadata.tables["auth_users"]
        assert project.models()["AuthToken"] is models.AuthToken
        with project.app.app_context():
            assert auth_models() is models
    assert Flow(first.app.test_client(), provider).sign_in().headers["Location"] == "/private"
    assert [r.email for r in users(first)] == ["alice@corp.com"]
    assert users(second) == []
    assert Flow(second.app.test_client(), provider).sign_in().headers["Location"] == "/private"


def test_auth_models_of_an_app_without_them_say_how_to_get_them(
        build_auth: t.Callable[..., Project]) -> None:
    project = build_auth(views=WITHOUT_REGISTRATION, create_tables=False)
    with pytest.raises(RuntimeError, match="The auth models are not declared on the app"
                                           ".*Register 'GoogleAuthManager'.*'flasker.ext.auth"
                                           ".declare_models\\(\\)' in a module of the"
                                           " project's MODULES"):
        auth_models(project.app)
    assert "auth_users" not in project.metadata.tables


@pytest.mark.parametrize(("key", "value", "message"), [
    ("AUTHORIZED_EMAILS", "alice@corp.com, not-an-address",
     "Config 'AUTH.AUTHORIZED_EMAILS' has value .*'not-an-address' is not an e-mail address"),
    ("AUTHORIZED_DOMAINS", "@corp.com",
     "Config 'AUTH.AUTHORIZED_DOMAINS' has value .*is not a domain name"),
    ("HOSTED_DOMAIN", "https://corp.com", "Config 'AUTH.HOSTED_DOMAIN' has value"),
    ("PROTECT_ALL_VIEWS", "maybe", "Config 'AUTH.PROTECT_ALL_VIEWS' has value 'maybe'.*bool"),
    ("URL_PREFIX", "auth", "Config 'AUTH.URL_PREFIX' has value 'auth'.*starting with '/'"),
    ("URL_PREFIX", "/", "Config 'AUTH.URL_PREFIX' has value '/'"),
    ("CALLBACK_URL", "/cb?x=1", "Config 'AUTH.CALLBACK_URL' has value '/cb\\?x=1'"),
    ("METADATA_URL", "accounts.google.com", "Config 'AUTH.METADATA_URL'.*discovery document"),
    ("AUTHORISED_EMAILS", "alice@corp.com", "Did you mean 'AUTHORIZED_EMAILS'"),
])
def test_bad_options_stop_start_up_with_the_key_and_the_fix(
        build_auth: t.Callable[..., Project], key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_auth(overrides={"AUTH": {key: value}})


def test_a_bad_option_in_the_file_names_its_line(build_auth: t.Callable[..., Project]) -> None:
    with pytest.raises(ConfigError, match=r"'AUTH.HOSTED_DOMAIN' has value 'a b'"
                                          r" \(.*default.cfg:\d+\)"):
        build_auth(extra="HOSTED_DOMAIN = a b")


def test_a_missing_client_id_says_how_to_get_one(build_auth: t.Callable[..., Project]) -> None:
    with pytest.raises(ConfigError, match="'AUTH.CLIENT_ID' is required.*console.cloud.google"):
        build_auth(overrides={"AUTH": {"CLIENT_ID": ""}})


@pytest.mark.parametrize(("secret", "reason"), [
    ("", "it is not set"), ("changeme", "it is a placeholder"), ("short-secret", "it is shorter")])
def test_a_weak_client_secret_stops_start_up_outside_testing(
        build_auth: t.Callable[..., Project], secret: str, reason: str) -> None:
    with pytest.raises(ConfigError,
                       match=f"'AUTH.CLIENT_SECRET' cannot be used outside testing: {reason}"):
        build_auth(testing=False, overrides={"AUTH": {"CLIENT_SECRET": secret}})


def test_a_weak_secret_key_stops_start_up_even_in_debug(
        build_auth: t.Callable[..., Project]) -> None:
    with pytest.raises(ConfigError, match="'APP.SECRET_KEY' cannot be used with"
                                          " GoogleAuthManager outside testing: it is a"
                                          " placeholder"):
        build_auth(testing=False, overrides={"APP": {"DEBUG": True, "SECRET_KEY": "dev"}})


def test_plain_http_metadata_is_refused_outside_testing(
        build_auth: t.Callable[..., Project]) -> None:
    with pytest.raises(ConfigError, match="Expected an 'https://' URL"):
        build_auth(testing=False, overrides={
            "AUTH": {"METADATA_URL": "http://idp.example/.well-known/openid-configuration"}})


def test_another_login_manager_is_refused(build_auth: t.Callable[..., Project]) -> None:
    views = auth_files("x")["x/views.py"].replace(
        "app = current_project.app\n",
        "app = current_project.app\nimport flask_login\nflask_login.LoginManager(app)\n")
    with pytest.raises(RuntimeError, match="already has a Flask-Login 'LoginManager'"):
        build_auth(views=views)


def test_the_provider_account_fixture_is_fresh(provider: FakeProvider) -> None:
    assert provider.account == Account()
