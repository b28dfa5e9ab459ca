"""A fake OpenID Connect provider for the tests: real HTTP on a loopback port.

It serves a discovery document, a JWKS, an authorization endpoint with a consent
page, and a token endpoint that enforces the client's secret, the single-use code,
the redirect URI and PKCE (S256), and a userinfo endpoint that wants the bearer
access token the token endpoint issued. ID tokens are RS256-signed with joserfc (what
Authlib itself uses). ``provider.tamper`` injects one fault at a time: a wrong
nonce, audience, issuer, expiry, signing key, ``email_verified``, ``hd``... and
switches its habits: claims served by userinfo only (as OpenID Connect Core 5.4
allows), no userinfo endpoint, a userinfo about another ``sub``, the ``prompt``
values it supports.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
import typing as t
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from flasker.util.json import dumps, loads

CLIENT_ID = "flasker-test-client.apps.example"
CLIENT_SECRET = "test-client-secret-0123456789abcdef"


@dataclass
class Account:
    """The account that consents on the provider's page."""

    sub: str = "110248495921238986420"
    email: str = "alice@corp.com"
    email_verified: t.Any = True
    name: str = "Alice Example"
    hd: str | None = None


@dataclass
class Tamper:
    """One fault to inject into the next ID tokens (the defaults make a valid token)."""

    nonce: str | None = None
    aud: t.Any = None
    azp: t.Any = None
    iss: str | None = None
    exp_delta: int = 3600
    iat_delta: int = 0
    key: str = "current"  # current | unknown_kid | other_key | hs256
    omit_id_token: bool = False
    omit_access_token: bool = False
    authorize_error: str | None = None
    token_error: str | None = None
    metadata_issuer: str | None = None
    iss_param: str | None = None
    #: Claims left out of the ID token (the userinfo endpoint still serves them).
    id_token_omits: tuple[str, ...] = ()
    #: Claims of the userinfo response replaced (``None`` removes one).
    userinfo: dict[str, t.Any] = field(default_factory=dict)
    #: Whether the discovery document names the userinfo endpoint.
    userinfo_endpoint: bool = True
    #: The userinfo endpoint's status, raw body and content type, and how long it waits.
    userinfo_status: int = 200
    userinfo_body: str | None = None
    userinfo_type: str = "application/json"
    userinfo_delay: float = 0.0
    #: ``prompt_values_supported`` of the discovery document (``None``: not listed).
    prompt_values: list[str] | None = None


#: Claims only the ID token carries: the rest of an account's may come from userinfo.
USERINFO_ONLY = ("email", "email_verified", "hd")


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    account: Account


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class FakeProvider:
    """The provider; ``start()`` serves it on 127.0.0.1, ``reset()`` clears every switch."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    account: Account = field(default_factory=Account)
    tamper: Tamper = field(default_factory=Tamper)
    hits: list[str] = field(default_factory=list)
    #: The query of every authorization request (GET), in order.
    authorizations: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._keys: list[RSAKey] = []
        self._codes: dict[str, _Grant] = {}
        #: Access tokens issued, and the account each is for.
        self._access: dict[str, Account] = {}
        self._lock = threading.Lock()
        self._server: t.Any = None
        self.rotate_key()
        self.stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"}, private=True)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeProvider:
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def metadata_url(self) -> str:
        return self.url + "/.well-known/openid-configuration"

    def reset(self) -> None:
        self.account = Account()
        self.tamper = Tamper()
        self.hits.clear()
        self.authorizations.clear()
        with self._lock:
            self._codes.clear()
            self._access.clear()
            del self._keys[1:]

    # -- keys ---------------------------------------------------------------------------

    @property
    def signing_key(self) -> RSAKey:
        return self._keys[-1]

    def rotate_key(self) -> RSAKey:
        """Publish a new key and sign with it from now on (the old one stays published)."""
        key = RSAKey.generate_key(2048, parameters={"kid": f"key-{secrets.token_hex(4)}"},
                                  private=True)
        self._keys.append(key)
        return key

    def jwks(self) -> dict[str, t.Any]:
        return {"keys": [k.as_dict(private=False, use="sig", alg="RS256") for k in self._keys]}

    # -- tokens -------------------------------------------------------------------------

    def id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        fault = self.tamper
        account = grant.account
        claims: dict[str, t.Any] = {
            "iss": fault.iss or self.url,
            "sub": account.sub,
            "aud": fault.aud if fault.aud is not None else grant.client_id,
            "iat": now + fault.iat_delta,
            "exp": now + fault.exp_delta,
            "nonce": fault.nonce if fault.nonce is not None else grant.nonce,
            "email": account.email,
            "email_verified": account.email_verified,
            "name": account.name,
            "picture": "https://example.com/alice.png",
        }
        if fault.azp is not None:
            claims["azp"] = fault.azp
        if account.hd is not None:
            claims["hd"] = account.hd
        for name in fault.id_token_omits:
            claims.pop(name, None)
        key: t.Any = self.signing_key
        header = {"alg": "RS256", "kid": key.kid}
        if fault.key == "unknown_kid":
            key, header = self.stranger, {"alg": "RS256", "kid": "stranger"}
        elif fault.key == "other_key":
            key = self.stranger  # a known kid, another key
        elif fault.key == "hs256":
            key, header = OctKey.import_key(self.client_secret), {"alg": "HS256"}
        return jwt.encode(header, claims, key, algorithms=[header["alg"]])

    # -- HTTP ---------------------------------------------------------------------------

    def wsgi(self, environ: t.Any, start_response: t.Any) -> t.Any:
        request = Request(environ)
        self.hits.append(request.path)
        routes = {
            "/.well-known/openid-configuration": self.discovery,
            "/jwks": lambda r: self.json(self.jwks()),
            "/authorize": self.authorize,
            "/token": self.token,
            "/userinfo": self.userinfo_response,
        }
        handler = routes.get(request.path)
        response = handler(request) if handler else Response("not found", 404)
        return response(environ, start_response)

    @staticmethod
    def json(body: t.Any, status: int = 200) -> Response:
        return Response(dumps(body), status=status, mimetype="application/json")

    def discovery(self, request: Request) -> Response:
        extra: dict[str, t.Any] = {}
        if self.tamper.userinfo_endpoint:
            extra["userinfo_endpoint"] = self.url + "/userinfo"
        if self.tamper.prompt_values is not None:
            extra["prompt_values_supported"] = self.tamper.prompt_values
        return self.json({
            **extra,
            "issuer": self.tamper.metadata_issuer or self.url,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "jwks_uri": self.url + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        })

    def authorize(self, request: Request) -> Response:
        params = request.args if request.method == "GET" else request.form
        problems = []
        if params.get("client_id") != self.client_id:
            problems.append("unknown client_id")
        if params.get("response_type") != "code":
            problems.append("response_type must be 'code'")
        if "openid" not in params.get("scope", "").split():
            problems.append("scope must include 'openid'")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            problems.append("PKCE with S256 is required")
        for name in ("redirect_uri", "state", "nonce"):
            if not params.get(name):
                problems.append(f"'{name}' is required")
        prompt, supported = params.get("prompt"), self.tamper.prompt_values
        if prompt is not None and supported is not None and prompt not in supported:
            problems.append(f"prompt {prompt!r} is not supported")
        if problems:
            return Response("Bad authorization request: " + "; ".join(problems), 400)
        if request.method == "GET":
            self.authorizations.append(dict(params))
            return Response(self.consent_page(params), mimetype="text/html")
        redirect_uri, state = params["redirect_uri"], params["state"]
        extra = {"iss": self.tamper.iss_param} if self.tamper.iss_param else {}
        if "deny" in params or self.tamper.authorize_error:
            error = self.tamper.authorize_error or "access_denied"
            query = {"error": error, "error_description": "The user said no.", "state": state}
            return Response(status=302, headers={
                "Location": redirect_uri + "?" + urlencode({**query, **extra})})
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(params["client_id"], redirect_uri,
                                       params["code_challenge"], params["nonce"],
                                       replace(self.account))
        return Response(status=302, headers={
            "Location": redirect_uri + "?" + urlencode({"code": code, "state": state, **extra})})

    def consent_page(self, params: t.Mapping[str, str]) -> str:
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in params.items())
        who = html.escape(self.account.email)
        return (
            "<!doctype html><html><head><title>Fake provider: consent</title></head><body>"
            f"<h1>Sign in as {who}?</h1><p>The application asks for your e-mail address.</p>"
            f'<form method="post" action="/authorize">{hidden}'
            '<button id="allow" name="allow" value="1" type="submit">Allow</button> '
            '<button id="deny" name="deny" value="1" type="submit">Deny</button>'
            "</form></body></html>"
        )

    def _client_ok(self, request: Request) -> bool:
        auth = request.authorization
        if auth is not None and auth.type == "basic":
            return bool(auth.username == self.client_id and auth.password == self.client_secret)
        return (request.form.get("client_id") == self.client_id
                and request.form.get("client_secret") == self.client_secret)

    def token(self, request: Request) -> Response:
        if request.method != "POST":
            return Response("POST only", 405)
        if not self._client_ok(request):
            return self.json({"error": "invalid_client"}, 401)
        form = request.form
        if self.tamper.token_error:
            return self.json({"error": self.tamper.token_error}, 400)
        if form.get("grant_type") != "authorization_code":
            return self.json({"error": "unsupported_grant_type"}, 400)
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # single use
        if grant is None or grant.client_id != self.client_id:
            return self.json({"error": "invalid_grant", "error_description": "bad code"}, 400)
        if form.get("redirect_uri") != grant.redirect_uri:
            return self.json({"error": "invalid_grant",
                              "error_description": "redirect_uri differs"}, 400)
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(_s256(verifier), grant.challenge):
            return self.json({"error": "invalid_grant",
                              "error_description": "PKCE verification failed"}, 400)
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self._access[access_token] = grant.account
        body: dict[str, t.Any] = {"access_token": access_token,
                                  "token_type": "Bearer", "expires_in": 3599,
                                  "scope": "openid email profile"}
        if not self.tamper.omit_id_token:
            body["id_token"] = self.id_token(grant)
        if self.tamper.omit_access_token:
            del body["access_token"]
        return self.json(body)

    def userinfo_claims(self, account: Account) -> dict[str, t.Any]:
        claims: dict[str, t.Any] = {
            "sub": account.sub, "email": account.email,
            "email_verified": account.email_verified, "name": account.name,
            "picture": "https://example.com/alice.png"}
        if account.hd is not None:
            claims["hd"] = account.hd
        claims.update(self.tamper.userinfo)
        return {k: v for k, v in claims.items() if v is not None}

    def userinfo_response(self, request: Request) -> Response:
        """OpenID Connect Core 5.3: the claims of the bearer access token's account."""
        auth = request.headers.get("Authorization", "")
        with self._lock:
            account = self._access.get(auth[7:]) if auth.startswith("Bearer ") else None
        if account is None:
            return Response(status=401,
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        fault = self.tamper
        if fault.userinfo_delay:
            time.sleep(fault.userinfo_delay)
        if fault.userinfo_body is not None or fault.userinfo_status != 200:
            return Response(fault.userinfo_body or "", status=fault.userinfo_status,
                            mimetype=fault.userinfo_type)
        return self.json(self.userinfo_claims(account))


def decode_unverified(token: str) -> dict[str, t.Any]:
    """The claims of a JWT, unverified (for tests that look inside)."""
    payload = token.split(".")[1]
    return t.cast(dict[str, t.Any], loads(base64.urlsafe_b64decode(payload + "==")))


# -- a project signing in through the provider ---------------------------------------------------

APP_SECRET = "test-secret-key-0123456789abcdef"

_HEAD = '''
import sqlalchemy as sa
from flask import jsonify, render_template_string, request, session
from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model, current_project
from flasker.ext.auth import GoogleAuthManager, current_user, login_required, public

app = current_project.app
current_project.register_manager(GoogleAuthManager())


class Note(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(100))

'''

# After the auth extension, which must therefore ask where the API lives at request time.
_API = '''
from flasker.ext.api import APIManager

api = current_project.register_manager(APIManager())
api.add_model(Note)

'''

_BODY = '''
PAGE = """<!doctype html><html><head><title>{{ title }}</title></head><body>
<h1 id="who">{{ title }}: {{ current_user.email }}</h1>
<form method="post" action="{{ url_for('flasker_auth.logout') }}">
<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
<button id="sign-out" type="submit">Sign out</button></form></body></html>"""


@app.route("/")
def index():
    return render_template_string(PAGE, title="Home")


@app.route("/private")
def private():
    return render_template_string(PAGE, title="Private")


@app.route("/guarded")
@login_required
def guarded():
    return "guarded " + current_user.email


@app.route("/open")
@public
def open_page():
    return "open to everyone"


@app.route("/api/things", methods=["GET", "POST", "DELETE"])
def things():
    session["touched"] = True  # must not turn into a cookie for bearer requests
    return jsonify(user=current_user.email, method=request.method)


@app.route("/api/guarded")
@login_required
def api_guarded():
    return jsonify(user=current_user.email)
'''

#: The project's MODULES: sign-in, the API (at ``[API] URL_PREFIX``) serving ``Note``, and
#: plain views, ``/api/things`` among them (under the API's prefix when it is ``/api``).
VIEWS = _HEAD + _API + _BODY
#: The same without an API: the app has no API paths, so tokens are accepted nowhere.
VIEWS_WITHOUT_API = _HEAD + _BODY


def auth_cfg(provider: FakeProvider, package: str, db_url: str, *, testing: bool = True,
             emails: str = "alice@corp.com, Bob@Example.org", extra: str = "",
             api_prefix: str = "/api") -> str:
    """A ``default.cfg`` for a project whose MODULES register ``GoogleAuthManager``.

    :param extra: more lines of ``[AUTH]`` (the file's last section).
    :param api_prefix: ``[API] URL_PREFIX``.
    """
    return f"""
        [PROJECT]
        NAME = Auth Test
        MODULES = {package}.views
        DB_URL = {db_url}

        [APP]
        TESTING = {testing}
        SECRET_KEY = {APP_SECRET}

        [API]
        URL_PREFIX = {api_prefix}

        [AUTH]
        CLIENT_ID = {provider.client_id}
        CLIENT_SECRET = {provider.client_secret}
        AUTHORIZED_EMAILS = {emails}
        METADATA_URL = {provider.metadata_url}
        {extra}
        """


def auth_files(package: str, views: str = VIEWS) -> dict[str, str]:
    return {f"{package}/__init__.py": "", f"{package}/views.py": views,
            "app/static/hello.txt": "static hello\n"}


class Flow:
    """Drives sign-ins: the app through Flask's test client, the provider over real HTTP."""

    def __init__(self, client: t.Any, provider: FakeProvider) -> None:
        self.client = client
        self.provider = provider

    def start(self, next_url: str = "/private") -> str:
        """``/auth/start``: the provider's authorization URL the app redirects to."""
        response = self.client.get("/auth/start", query_string={"next": next_url})
        assert response.status_code == 302, response.get_data(as_text=True)
        location = str(response.headers["Location"])
        assert location.startswith(self.provider.url + "/authorize?"), location
        return location

    def consent(self, authorize_url: str, approve: bool = True) -> str:
        """Open the consent page, press Allow (or Deny): the callback's path and query."""
        page = requests.get(authorize_url, timeout=10)
        assert page.status_code == 200, page.text
        assert 'id="allow"' in page.text
        params = dict(parse_qsl(urlsplit(authorize_url).query))
        params["allow" if approve else "deny"] = "1"
        answer = requests.post(self.provider.url + "/authorize", data=params, timeout=10,
                               allow_redirects=False)
        assert answer.status_code == 302, answer.text
        parts = urlsplit(answer.headers["Location"])
        return f"{parts.path}?{parts.query}"

    def sign_in(self, next_url: str = "/private", approve: bool = True) -> t.Any:
        """The whole round trip; the callback's response."""
        return self.client.get(self.consent(self.start(next_url), approve))
