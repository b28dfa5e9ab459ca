"""Providers other than Google: e-mail from the userinfo endpoint, the retry's prompt, the name.

OpenID Connect Core 5.4 lets a provider serve ``email`` and ``email_verified`` from its
userinfo endpoint only; the fake provider does so over real HTTP when told, and its
userinfo endpoint wants the access token it issued.
"""

from __future__ import annotations

import html
import logging
import typing as t
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from flasker import ConfigError, Project
from flasker.ext.auth import oidc
from flasker.ext.auth.oidc import another_account_prompt, merge_userinfo
from flasker.ext.auth.options import GOOGLE_METADATA_URL
from flasker.ext.auth.refusals import Refusal

from .oidc_provider import USERINFO_ONLY, FakeProvider, Flow
from .test_ext_auth import assert_refused, users


@pytest.fixture(autouse=True)
def _security_events(caplog: pytest.LogCaptureFixture) -> None:
    """Record the INFO events of ``flasker.security`` too (sign-ins)."""
    caplog.set_level(logging.INFO, logger="flasker.security")


@pytest.fixture
def project(build_auth: t.Callable[..., Project]) -> Project:
    return build_auth()


@pytest.fixture
def flow(project: Project, provider: FakeProvider) -> Flow:
    return Flow(project.app.test_client(), provider)


@pytest.fixture
def userinfo_only(provider: FakeProvider) -> FakeProvider:
    """The provider keeps the e-mail claims out of the ID token (oidc-provider's default)."""
    provider.tamper.id_token_omits = USERINFO_ONLY
    return provider


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# -- e-mail from the userinfo endpoint -----------------------------------------------------------


def test_the_email_comes_from_userinfo_when_the_id_token_lacks_it(
        project: Project, flow: Flow, userinfo_only: FakeProvider) -> None:
    done = flow.sign_in()
    assert done.status_code == 302, done.get_data(as_text=True)
    assert done.headers["Location"] == "/private"
    assert "Private: alice@corp.com" in flow.client.get("/private").get_data(as_text=True)
    assert "/userinfo" in userinfo_only.hits
    assert [(r.email, r.sub, r.name) for r in users(project)] == [
        ("alice@corp.com", userinfo_only.account.sub, "Alice Example")]


def test_userinfo_is_not_asked_when_the_id_token_has_the_email(flow: Flow,
                                                               provider: FakeProvider) -> None:
    assert flow.sign_in().status_code == 302
    assert "/userinfo" not in provider.hits


def test_the_fake_userinfo_endpoint_wants_the_access_token(provider: FakeProvider) -> None:
    """The double is strict, so that a sign-in through it proves the bearer token was sent."""
    assert requests.get(provider.url + "/userinfo", timeout=10).status_code == 401
    wrong = requests.get(provider.url + "/userinfo", timeout=10,
                         headers={"Authorization": "Bearer made-up"})
    assert wrong.status_code == 401


def test_the_allow_list_applies_to_the_userinfo_email(
        project: Project, flow: Flow, userinfo_only: FakeProvider,
        caplog: pytest.LogCaptureFixture) -> None:
    userinfo_only.account.email = "mallory@corp.com"
    assert_refused(flow.sign_in(), "not_allowed", caplog)
    assert users(project) == []


@pytest.mark.parametrize("verified", [False, "true", None])
def test_email_verified_from_userinfo_must_be_exactly_true(
        flow: Flow, userinfo_only: FakeProvider, caplog: pytest.LogCaptureFixture,
        verified: t.Any) -> None:
    userinfo_only.account.email_verified = verified
    assert_refused(flow.sign_in(), "email_unverified", caplog)


@pytest.mark.parametrize(("hd", "allowed"), [("corp.com", True), ("evil.com", False),
                                              (None, False)])
def test_the_hosted_domain_applies_to_the_userinfo_hd(
        build_auth: t.Callable[..., Project], userinfo_only: FakeProvider,
        caplog: pytest.LogCaptureFixture, hd: str | None, allowed: bool) -> None:
    project = build_auth(extra="HOSTED_DOMAIN = corp.com")
    userinfo_only.account.hd = hd
    response = Flow(project.app.test_client(), userinfo_only).sign_in()
    if allowed:
        assert response.headers["Location"] == "/private"
    else:
        assert_refused(response, "hosted_domain_mismatch", caplog)


@pytest.mark.parametrize("sub", ["999999999999999999999", None, 42])
def test_a_userinfo_about_another_sub_is_refused(
        project: Project, flow: Flow, userinfo_only: FakeProvider,
        caplog: pytest.LogCaptureFixture, sub: t.Any) -> None:
    userinfo_only.tamper.userinfo = {"sub": sub}
    assert_refused(flow.sign_in(), "subject_mismatch", caplog)
    assert users(project) == []
    assert "userinfo sub=" in caplog.text


def test_the_id_tokens_claims_win_over_userinfo(project: Project, flow: Flow,
                                                provider: FakeProvider) -> None:
    provider.tamper.id_token_omits = ("email_verified",)
    provider.tamper.userinfo = {"name": "Mallory", "picture": "https://example.com/m.png"}
    assert flow.sign_in().headers["Location"] == "/private"
    assert "/userinfo" in provider.hits
    assert [(r.email, r.name, r.picture) for r in users(project)] == [
        ("alice@corp.com", "Alice Example", "https://example.com/alice.png")]


def test_a_userinfo_verifying_another_address_verifies_nothing(
        project: Project, flow: Flow, provider: FakeProvider,
        caplog: pytest.LogCaptureFixture) -> None:
    """Its ``email_verified`` is about its own ``email``, not about the ID token's."""
    provider.tamper.id_token_omits = ("email_verified",)
    provider.tamper.userinfo = {"email": "bob@example.org", "email_verified": True}
    assert_refused(flow.sign_in(), "email_unverified", caplog)
    assert "alice@corp.com" in caplog.text
    assert users(project) == []


def test_an_unverified_id_token_is_not_rescued_by_userinfo(
        flow: Flow, provider: FakeProvider, caplog: pytest.LogCaptureFixture) -> None:
    provider.account.email_verified = False
    provider.tamper.id_token_omits = ("email",)
    provider.tamper.userinfo = {"email_verified": True}
    assert_refused(flow.sign_in(), "email_unverified", caplog)
    assert "/userinfo" in provider.hits


def test_a_known_email_with_a_new_sub_from_userinfo_is_refused(
        project: Project, flow: Flow, userinfo_only: FakeProvider,
        caplog: pytest.LogCaptureFixture) -> None:
    assert flow.sign_in().status_code == 302
    userinfo_only.account.sub = "999999999999999999999"
    assert_refused(Flow(project.app.test_client(), userinfo_only).sign_in(), "account_mismatch",
                   caplog)
    assert len(users(project)) == 1


def test_a_provider_without_userinfo_or_email_is_refused_saying_what_it_lacks(
        flow: Flow, userinfo_only: FakeProvider, caplog: pytest.LogCaptureFixture) -> None:
    userinfo_only.tamper.userinfo_endpoint = False
    assert_refused(flow.sign_in(), "email_missing", caplog)
    assert "/userinfo" not in userinfo_only.hits
    assert ("the provider must put 'email' and 'email_verified' in the ID token, or serve them"
            " from the 'userinfo_endpoint' of its discovery document") in caplog.text


def test_a_token_response_without_access_token_cannot_ask_userinfo(
        flow: Flow, userinfo_only: FakeProvider, caplog: pytest.LogCaptureFixture) -> None:
    userinfo_only.tamper.omit_access_token = True
    assert_refused(flow.sign_in(), "email_missing", caplog)
    assert "the token response has no 'access_token'" in caplog.text
    assert "/userinfo" not in userinfo_only.hits


def test_a_userinfo_without_email_is_refused(flow: Flow, userinfo_only: FakeProvider,
                                             caplog: pytest.LogCaptureFixture) -> None:
    userinfo_only.tamper.userinfo = {"email": None}
    assert_refused(flow.sign_in(), "email_missing", caplog)
    assert "neither the ID token nor the userinfo response has 'email'" in caplog.text


@pytest.mark.parametrize(("status", "body", "mimetype", "logged"), [
    (500, "oops", "text/plain", "500 Server Error"),
    (200, "<html>not json</html>", "text/html", "not a JSON object"),
    (200, '["a", "list"]', "application/json", "not a JSON object"),
    (200, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "application/jwt", "'application/jwt', is not"),
])
def test_a_failing_userinfo_endpoint_is_a_friendly_refusal(
        flow: Flow, userinfo_only: FakeProvider, caplog: pytest.LogCaptureFixture, status: int,
        body: str, mimetype: str, logged: str) -> None:
    userinfo_only.tamper.userinfo_status = status
    userinfo_only.tamper.userinfo_body = body
    userinfo_only.tamper.userinfo_type = mimetype
    assert_refused(flow.sign_in(), "userinfo_failed", caplog, 502)
    assert logged in caplog.text


def test_a_slow_userinfo_endpoint_times_out_into_a_refusal(
        build_auth: t.Callable[..., Project], userinfo_only: FakeProvider,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(oidc, "HTTP_TIMEOUT", 0.5)  # read when the client is made
    project = build_auth()
    userinfo_only.tamper.userinfo_delay = 1.5
    assert_refused(Flow(project.app.test_client(), userinfo_only).sign_in(), "userinfo_failed",
                   caplog, 502)
    assert "timed out" in caplog.text


def test_merge_userinfo_fills_only_what_the_id_token_lacks() -> None:
    id_token = {"sub": "1", "email": "a@corp.com", "email_verified": None, "aud": "me"}
    merged = merge_userinfo(id_token, {"sub": "1", "email": "b@corp.com", "email_verified": True,
                                       "aud": "other", "nonce": "x", "hd": "corp.com"})
    assert merged == {"sub": "1", "email": "a@corp.com", "aud": "me", "hd": "corp.com"}
    merged = merge_userinfo(id_token, {"sub": "1", "email": "A@corp.com", "email_verified": True,
                                       "aud": "other", "nonce": "x", "hd": "corp.com"})
    assert merged == {"sub": "1", "email": "a@corp.com", "email_verified": True, "aud": "me",
                      "hd": "corp.com"}
    with pytest.raises(Refusal, match="subject_mismatch"):
        merge_userinfo(id_token, {"sub": "2", "email": "a@corp.com"})


# -- another account on the retry -------------------------------------------------------------


def test_a_first_sign_in_sends_no_prompt(flow: Flow) -> None:
    assert "prompt" not in query_of(flow.start())


@pytest.mark.parametrize(("supported", "prompt"), [
    (None, "select_account"),
    (["none", "login", "consent", "select_account"], "select_account"),
    (["none", "login", "consent"], "login"),
    (["none", "consent"], None),
])
def test_the_refusal_page_retries_with_another_account(
        flow: Flow, provider: FakeProvider, caplog: pytest.LogCaptureFixture,
        supported: list[str] | None, prompt: str | None) -> None:
    provider.tamper.prompt_values = supported
    provider.account.email = "mallory@corp.com"
    refused = flow.sign_in("/private?tab=2")
    assert_refused(refused, "not_allowed", caplog)
    body = refused.get_data(as_text=True)
    assert ">Sign in with another account</a>" in body
    link = html.unescape(body.split('id="another-account" href="')[1].split('"')[0])
    # The retry goes where the refused sign-in was to go.
    assert link == "/auth/start?another_account=1&next=/private?tab%3D2"
    assert 'href="/auth/login?next=/private?tab%3D2">Back to sign-in</a>' in body

    retry = flow.client.get(link)
    assert retry.status_code == 302
    authorize = retry.headers["Location"]
    assert query_of(authorize).get("prompt") == ([prompt] if prompt else None)
    # The provider takes the request (it refuses a prompt value it does not list).
    provider.account.email = "alice@corp.com"
    assert flow.client.get(flow.consent(authorize)).headers["Location"] == "/private?tab=2"
    assert provider.authorizations[-1].get("prompt") == prompt


@pytest.mark.parametrize(("setup", "code"), [
    ("email_verified", "email_unverified"),
    ("hd", "hosted_domain_mismatch"),
])
def test_every_account_refusal_offers_another_account(
        build_auth: t.Callable[..., Project], provider: FakeProvider,
        caplog: pytest.LogCaptureFixture, setup: str, code: str) -> None:
    project = build_auth(extra="HOSTED_DOMAIN = corp.com")
    provider.account.hd = "corp.com"
    setattr(provider.account, setup, False if setup == "email_verified" else "evil.com")
    refused = Flow(project.app.test_client(), provider).sign_in()
    assert_refused(refused, code, caplog)
    assert 'id="another-account"' in refused.get_data(as_text=True)


def test_other_refusals_do_not_offer_another_account(flow: Flow,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    refused = flow.client.get("/auth/oauth2callback?code=abc&state=forged")
    assert_refused(refused, "state_mismatch", caplog, 400)
    body = refused.get_data(as_text=True)
    assert "another account" not in body
    # An unknown state says nothing of where the sign-in was to go.
    assert 'href="/auth/login">Back to sign-in</a>' in body
    # A sign-in the provider did not complete: back to the sign-in page, 'next' kept.
    refused = flow.client.get(flow.consent(flow.start("/private"), approve=False))
    assert_refused(refused, "provider_error", caplog, 400)
    assert 'href="/auth/login?next=/private">Back to sign-in</a>' in refused.get_data(as_text=True)


# -- the provider's name on the button ------------------------------------------------------


def sign_in_button(project: Project) -> str:
    page = project.app.test_client().get("/auth/login").get_data(as_text=True)
    return page.split('id="sign-in"')[1].split(">", 1)[1].split("</a>")[0]


def test_the_button_names_google_for_googles_metadata(build_auth: t.Callable[..., Project],
                                                      provider: FakeProvider) -> None:
    project = build_auth(overrides={"AUTH": {"METADATA_URL": GOOGLE_METADATA_URL}})
    assert sign_in_button(project) == "Sign in with Google"
    assert provider.hits == []  # the page is drawn without asking the provider


def test_the_button_names_the_host_of_another_provider(project: Project) -> None:
    assert sign_in_button(project) == "Sign in with 127.0.0.1"


def test_provider_name_names_the_button_escaped(build_auth: t.Callable[..., Project]) -> None:
    project = build_auth(extra="PROVIDER_NAME = Acme <SSO> & Co")
    assert sign_in_button(project) == "Sign in with Acme &lt;SSO&gt; &amp; Co"


def test_provider_name_from_the_environment(
        build_auth: t.Callable[..., Project], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASKER__AUTH__PROVIDER_NAME", "Keycloak")
    assert sign_in_button(build_auth()) == "Sign in with Keycloak"
    monkeypatch.setenv("FLASKER__AUTH__PROVIDER_NAME", "")  # empty: the default
    assert sign_in_button(build_auth()) == "Sign in with 127.0.0.1"


@pytest.mark.parametrize(("value", "message"), [
    ("x" * 61, "Config 'AUTH.PROVIDER_NAME' has value 'x{61}'.*at most 60 printable"),
    ("Acme\tSSO", "Config 'AUTH.PROVIDER_NAME' has value 'Acme\\\\tSSO'.*printable"),
    (["Acme"], "Config 'AUTH.PROVIDER_NAME' has value \\['Acme'\\].*Expected a name"),
    ("Acme", None),
])
def test_a_bad_provider_name_stops_start_up(build_auth: t.Callable[..., Project], value: t.Any,
                                            message: str | None) -> None:
    if message is None:
        assert sign_in_button(build_auth(overrides={"AUTH": {"PROVIDER_NAME": value}})) == (
            "Sign in with Acme")
        return
    with pytest.raises(ConfigError, match=message):
        build_auth(overrides={"AUTH": {"PROVIDER_NAME": value}})


def test_a_misspelt_provider_name_suggests_the_key(build_auth: t.Callable[..., Project]) -> None:
    with pytest.raises(ConfigError, match="Unknown key 'PROVIDER_NAM' in section \\[AUTH\\]"
                                          ".*Did you mean 'PROVIDER_NAME'\\?"):
        build_auth(extra="PROVIDER_NAM = Okta")


@pytest.mark.parametrize(("supported", "prompt"), [
    (None, "select_account"), ("not a list", "select_account"), (["select_account"],
                                                                 "select_account"),
    (["login"], "login"), ([], None)])
def test_another_account_prompt(supported: t.Any, prompt: str | None) -> None:
    metadata = {} if supported is None else {"prompt_values_supported": supported}
    assert another_account_prompt(metadata) == prompt
