"""The auth extension's pure parts: safe redirects, allow-lists, claim checks, the state store,
and the reference application's pattern of enabling sign-in from the environment."""

from __future__ import annotations

import functools
import importlib.util
import threading
import time
import typing as t
from pathlib import Path

import pytest

from flasker import Project
from flasker.ext.auth import auth_models, declare_models
from flasker.ext.auth.allowlist import AllowList, normalise_email
from flasker.ext.auth.oidc import GOOGLE_ISSUERS, StateStore, verify_claims
from flasker.ext.auth.redirects import safe_next
from flasker.ext.auth.refusals import Refusal

from .auth_cases import BYPASSES
from .conftest import ROOT, prepend_path, unique_package, write_project
from .oidc_provider import FakeProvider, Flow, auth_files

# -- next -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [*BYPASSES, "/%09/evil.com", "/a\\b", "//", "/\u3000/x",
                                    "/x#frag", "", None, "/" + "a" * 3000])
def test_safe_next_refuses(target: str | None) -> None:
    assert safe_next(target, forbidden_prefix="/auth") == "/"


@pytest.mark.parametrize("target", ["/", "/private", "/a/b?c=d&e=%2F%2F", "/caf%C3%A9",
                                    "/authors", "/api/things?x=1"])
def test_safe_next_keeps_same_site_paths(target: str) -> None:
    assert safe_next(target, forbidden_prefix="/auth") == target


# -- allow-lists ------------------------------------------------------------------------------


def test_allow_list_matches_exact_normalised_addresses_and_domains() -> None:
    allow = AllowList.parse([" Alice@Corp.com "], ["Example.org"])
    assert allow.allows("alice@corp.com") and allow.allows("ALICE@CORP.COM")
    assert allow.allows("anyone@example.org")
    for refused in ("malice@corp.com", "alice@corp.com.evil.com", "x@sub.example.org",
                    "x@example.org.evil.com", "\u212alice@corp.com", "\u0430lice@corp.com",
                    "alice@corp.com\u200b", None, 42, "", "@corp.com", "alice@"):
        assert not allow.allows(refused), refused


def test_an_empty_allow_list_allows_no_one() -> None:
    allow = AllowList.parse([], [])
    assert allow.empty and not allow.allows("alice@corp.com")


def test_normalising_only_folds_ascii() -> None:
    assert normalise_email(" Bob@Example.ORG\n") == "bob@example.org"
    assert normalise_email("STRASSE@x.de") == "strasse@x.de"
    assert normalise_email("STRAßE@x.de") == "straße@x.de"  # never casefolded to 'strasse'


@pytest.mark.parametrize("entry", ["alice", "alice@@corp.com", "a b@corp.com", "alice@corp..com"])
def test_malformed_allow_list_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match=repr(entry).replace("\\", "\\\\")):
        AllowList.parse([entry], [])


# -- claims -----------------------------------------------------------------------------------

NOW = 1_800_000_000


def claims(**changes: t.Any) -> dict[str, t.Any]:
    base = {"iss": "https://accounts.google.com", "aud": "me", "sub": "1", "exp": NOW + 60,
            "iat": NOW, "nonce": "n", "email": "a@corp.com", "email_verified": True}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def check(values: dict[str, t.Any], hosted_domain: str | None = None) -> str:
    try:
        verify_claims(values, client_id="me", issuers=GOOGLE_ISSUERS, nonce="n",
                      hosted_domain=hosted_domain, now=NOW)
    except Refusal as e:
        return e.code
    return "ok"


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, "ok"),
    ({"iss": "accounts.google.com"}, "ok"),
    ({"aud": ["me"]}, "ok"),
    ({"azp": "me"}, "ok"),
    ({"exp": NOW - 59}, "ok"),
    ({"iss": "https://accounts.google.com/"}, "issuer_mismatch"),
    ({"aud": "other", "azp": "me"}, "audience_mismatch"),
    ({"aud": ["me", "other"], "azp": "me"}, "audience_mismatch"),
    ({"aud": None}, "audience_mismatch"),
    ({"azp": "other"}, "audience_mismatch"),
    ({"exp": NOW - 61}, "token_expired"),
    ({"exp": "tomorrow"}, "invalid_id_token"),
    ({"iat": NOW + 61}, "invalid_id_token"),
    ({"nbf": NOW + 61}, "invalid_id_token"),
    ({"nonce": "m"}, "nonce_mismatch"),
    ({"nonce": None}, "nonce_mismatch"),
    ({"sub": ""}, "invalid_id_token"),
    ({"sub": 5}, "invalid_id_token"),
    ({"email": None}, "invalid_id_token"),
    ({"email_verified": "true"}, "email_unverified"),
    ({"email_verified": None}, "email_unverified"),
])
def test_each_claim_is_checked(changes: dict[str, t.Any], expected: str) -> None:
    assert check(claims(**changes)) == expected


def test_the_hosted_domain_claim_must_match() -> None:
    assert check(claims(hd="corp.com"), "corp.com") == "ok"
    assert check(claims(hd="CORP.com"), "corp.com") == "ok"
    assert check(claims(), "corp.com") == "hosted_domain_mismatch"
    assert check(claims(hd="evil.com"), "corp.com") == "hosted_domain_mismatch"


# -- the pending sign-ins ---------------------------------------------------------------------


def race(work: t.Callable[[], t.Any], threads: int) -> list[t.Any]:
    """Run ``work`` in ``threads`` threads released at the same instant; their results."""
    results: list[t.Any] = []
    barrier = threading.Barrier(threads)

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        except Exception as e:  # shown by the main thread, not lost in this one
            results.append(e)

    started = [threading.Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise errors[0]
    return results


def test_a_pending_sign_in_is_consumed_once_even_under_a_race(
        db_url: str, make_project: t.Callable[..., Project]) -> None:
    project = make_project(overrides={"PROJECT": {"DB_URL": db_url}})
    table = declare_models(project).AuthLoginState.__table__
    table.create(project.engine)
    store = StateStore(project.engine, table)
    for round_ in range(5):
        key = f"k{round_}"
        store.set(key, '{"data": {}}', 60)
        results = race(functools.partial(store.get, key), 4)
        assert results.count('{"data": {}}') == 1 and results.count(None) == 3
    store.set("old", "{}", 1)
    time.sleep(1.1)
    assert store.get("old") is None  # expired


# -- the reference application's pattern --------------------------------------------------------

REFERENCE_VIEWS = '''
from flasker import current_project
from flasker.ext.auth import GoogleAuthManager, declare_models

app = current_project.app
declare_models()  # the tables stay in the project (and its migrations) with sign-in off
if current_project.config.get("AUTH", "CLIENT_ID"):
    current_project.register_manager(GoogleAuthManager())


@app.route("/")
def index():
    return "home"
'''


def reference_project(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The reference pattern's project in ``folder``, with modules of its own."""
    package = unique_package()
    prepend_path(monkeypatch, str(folder))
    return write_project(folder, f"""
        [PROJECT]
        NAME = Reference
        MODULES = {package}.views
        [APP]
        TESTING = true
        SECRET_KEY = test-secret-key-0123456789abcdef
        """, {**auth_files(package), f"{package}/views.py": REFERENCE_VIEWS})


def test_sign_in_is_enabled_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    server = FakeProvider().start()
    try:
        off = Project(reference_project(tmp_path / "off", monkeypatch))
        assert off.app.test_client().get("/").get_data(as_text=True) == "home"
        assert "flasker_auth" not in off.app.extensions
        assert "auth_users" in off.metadata.tables
        off.close()

        monkeypatch.setenv("FLASKER__AUTH__CLIENT_ID", server.client_id)
        monkeypatch.setenv("FLASKER__AUTH__CLIENT_SECRET", server.client_secret)
        monkeypatch.setenv("FLASKER__AUTH__AUTHORIZED_EMAILS", "alice@corp.com")
        monkeypatch.setenv("FLASKER__AUTH__METADATA_URL", server.metadata_url)
        on = Project(reference_project(tmp_path / "on", monkeypatch))
        # The manager uses the classes the module declared first.
        assert on.app.extensions["flasker_auth"].models is auth_models(on.app)
        on.metadata.create_all(on.engine)
        client = on.app.test_client()
        assert client.get("/").status_code == 302
        assert Flow(client, server).sign_in(next_url="/").headers["Location"] == "/"
        assert client.get("/").get_data(as_text=True) == "home"
        on.close()
    finally:
        server.stop()


def test_the_reference_migration_matches_the_auth_models(
        make_project: t.Callable[..., Project]) -> None:
    """Applications' migrations keep working: tables, columns and constraints unchanged."""
    from alembic.autogenerate import compare_metadata  # heavy optional dependency
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    path = ROOT / "reference" / "migrations" / "versions" / "9c6b3641ef1b_auth_tables.py"
    spec = importlib.util.spec_from_file_location("auth_tables_migration", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)

    project = make_project()
    declare_models(project)
    with project.engine.begin() as connection:
        context = MigrationContext.configure(connection)
        with Operations.context(context):
            migration.upgrade()
        assert compare_metadata(context, project.metadata) == []
