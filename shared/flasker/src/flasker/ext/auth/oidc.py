"""The OpenID Connect flow on Authlib's Flask client, with the checks Authlib leaves out.

Authlib (1.9, on joserfc) verifies the signature (refetching the JWKS once when the
``kid`` is unknown), the issuer it is told, ``exp``/``iat`` with a leeway, the
``nonce`` and ``azp``. It accepts, however, an ID token whose ``aud`` is another
client when ``azp`` names ours, and an ``aud`` list that merely contains our client.
:func:`verify_claims` therefore checks every claim again, explicitly and strictly.

A provider may leave ``email`` and ``email_verified`` out of the ID token and serve them
from its userinfo endpoint only (OpenID Connect Core 5.4): they are then asked of it with
the access token (:func:`merge_userinfo`), and the same checks apply to them.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import time
import typing as t
from dataclasses import dataclass

import requests
import sqlalchemy as sa
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from authlib.oidc.core import CodeIDToken
from flask import session
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
    UnsupportedAlgorithmError,
)

from .allowlist import normalise_domain, normalise_email
from .models import utcnow
from .refusals import Refusal

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from .options import Settings

CLIENT_NAME = "flasker_auth"
SCOPE = "openid email profile"
#: Clock skew tolerated on ``exp``, ``iat`` and ``nbf``, in seconds (Authlib's default is 120).
LEEWAY = 60
HTTP_TIMEOUT = 10
GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                "ES256", "ES384", "ES512", "EdDSA"})
#: Taken from the userinfo endpoint when the ID token lacks them; the ID token's win.
USERINFO_CLAIMS = ("email", "email_verified", "hd", "name", "picture")
#: What a provider must offer for its users' addresses, for the log of a refusal.
EMAIL_NEEDS = ("the provider must put 'email' and 'email_verified' in the ID token, or serve"
               " them from the 'userinfo_endpoint' of its discovery document")
_CLAIM_REFUSALS = {"iss": "issuer_mismatch", "aud": "audience_mismatch",
                   "azp": "audience_mismatch", "nonce": "nonce_mismatch",
                   "exp": "token_expired"}


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in, after every check."""

    sub: str
    issuer: str
    email: str
    name: str | None
    picture: str | None
    hosted_domain: str | None


class StateStore:
    """Authlib's ``cache`` on the database: the pending sign-in is consumed atomically.

    ``get`` deletes the row it returns, so one state is good for one callback even
    when a copy of the old session cookie is replayed or two callbacks race.
    """

    def __init__(self, engine: sa.Engine, table: sa.Table) -> None:
        self.engine = engine
        #: The project's ``auth_login_states`` (``auth_models().AuthLoginState.__table__``).
        self.table = table

    def set(self, key: str, value: str, expires_in: int) -> None:
        now = utcnow()
        with self.engine.begin() as connection:
            connection.execute(sa.delete(self.table).where(self.table.c.expires_at < now))
            connection.execute(sa.insert(self.table).values(
                key=key, value=value, expires_at=now + dt.timedelta(seconds=expires_in)))

    def get(self, key: str) -> str | None:
        table = self.table
        live = (table.c.key == key) & (table.c.expires_at > utcnow())
        with self.engine.begin() as connection:
            if connection.dialect.delete_returning:
                row = connection.execute(sa.delete(table).where(live).returning(table.c.value))
                value = row.scalar()
                return None if value is None else str(value)
            value = connection.execute(sa.select(table.c.value).where(live)).scalar()
            deleted = connection.execute(sa.delete(table).where(live)).rowcount
            return None if value is None or deleted != 1 else str(value)

    def delete(self, key: str) -> None:
        """Nothing to do: :meth:`get` removed the row already.

        Authlib also deletes on behalf of a callback whose session does not hold the
        state; doing so would let anyone who saw the state cancel the sign-in.
        """


class _IDToken(CodeIDToken):  # type: ignore[misc]
    """Authlib's ID token claims, refusing symmetric and unknown signing algorithms."""

    def validate(self, now: int | None = None, leeway: int = 0) -> None:
        alg = self.header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise UnsupportedAlgorithmError(f"ID tokens signed with {alg!r} are not accepted")
        super().validate(now=now, leeway=leeway)


def accepted_issuers(metadata_issuer: str) -> frozenset[str]:
    """The issuer of the discovery document; for Google both of its spellings."""
    if metadata_issuer in GOOGLE_ISSUERS:
        return GOOGLE_ISSUERS
    return frozenset({metadata_issuer})


def _numeric(value: object) -> t.TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def verify_claims(claims: Mapping[str, t.Any], *, client_id: str, issuers: frozenset[str],
                  nonce: str, hosted_domain: str | None, now: float | None = None,
                  leeway: int = LEEWAY) -> Identity:
    """Check the verified ID token's claims one by one; :class:`Refusal` names the failure."""
    now = time.time() if now is None else now
    iss = claims.get("iss")
    if iss not in issuers:
        raise Refusal("issuer_mismatch", f"iss={iss!r}, expected one of {sorted(issuers)}")
    aud = claims.get("aud")
    # Equal, not "contains": a token minted for another client is never ours.
    if not (aud == client_id or aud == [client_id]):
        raise Refusal("audience_mismatch", f"aud={aud!r}, expected {client_id!r}")
    azp = claims.get("azp")
    if azp is not None and azp != client_id:
        raise Refusal("audience_mismatch", f"azp={azp!r}, expected {client_id!r}")
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    if not _numeric(exp) or not _numeric(iat):
        raise Refusal("invalid_id_token", "'exp' and 'iat' must be numbers")
    if exp <= now - leeway:
        raise Refusal("token_expired", f"exp={exp}, now={int(now)}")
    if iat > now + leeway or (nbf is not None and (not _numeric(nbf) or nbf > now + leeway)):
        raise Refusal("invalid_id_token", f"issued in the future: iat={iat}, nbf={nbf}")
    token_nonce = claims.get("nonce")
    if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce, nonce):
        raise Refusal("nonce_mismatch", "the ID token's nonce is not this sign-in's")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise Refusal("invalid_id_token", f"sub={sub!r} is not a subject identifier")
    raw_email = claims.get("email")
    email = normalise_email(raw_email)
    if email is None:
        raise Refusal("invalid_id_token", f"email={raw_email!r} is not one e-mail address")
    if claims.get("email_verified") is not True:
        raise Refusal("email_unverified", f"email_verified={claims.get('email_verified')!r}",
                      email=email)
    hd = claims.get("hd")
    if hosted_domain is not None and normalise_domain(hd) != hosted_domain:
        raise Refusal("hosted_domain_mismatch", f"hd={hd!r}, expected {hosted_domain!r}",
                      email=email)
    name, picture = claims.get("name"), claims.get("picture")
    return Identity(
        sub=sub,
        issuer="https://accounts.google.com" if iss in GOOGLE_ISSUERS else str(iss),
        email=email,
        name=name[:255] if isinstance(name, str) else None,
        picture=picture if isinstance(picture, str) and picture.startswith("https://")
        and len(picture) <= 2048 else None,
        hosted_domain=hd if isinstance(hd, str) else None,
    )


def lacks_email(claims: Mapping[str, t.Any]) -> bool:
    """Whether ``claims`` miss ``email`` or ``email_verified`` (so userinfo must be asked)."""
    return claims.get("email") is None or claims.get("email_verified") is None


def merge_userinfo(claims: Mapping[str, t.Any], userinfo: Mapping[str, t.Any]
                   ) -> dict[str, t.Any]:
    """The ID token's claims completed with the userinfo response's.

    The userinfo response is about the ID token's subject only if its ``sub`` is the
    same (OpenID Connect Core 5.3.2): else it may describe another account, and is
    refused. Only :data:`USERINFO_CLAIMS` are taken, and only where the ID token has
    none: the checks of :func:`verify_claims` then apply to them as to the ID token's.
    ``email_verified`` is about the address beside it, so the userinfo's is taken only
    when its ``email`` is the one kept.
    """
    sub = userinfo.get("sub")
    if not isinstance(sub, str) or sub != claims.get("sub"):
        raise Refusal("subject_mismatch",
                      f"userinfo sub={sub!r}, the ID token's sub={claims.get('sub')!r}",
                      sub=claims.get("sub"))
    merged = dict(claims)
    for name in USERINFO_CLAIMS:
        if merged.get(name) is None and userinfo.get(name) is not None:
            merged[name] = userinfo[name]
    if (claims.get("email_verified") is None
            and normalise_email(userinfo.get("email")) != normalise_email(merged.get("email"))):
        merged.pop("email_verified", None)
    return merged


def another_account_prompt(metadata: Mapping[str, t.Any]) -> str | None:
    """The ``prompt`` that lets a refused user sign in as someone else.

    OpenID Connect Core's ``select_account`` (Google shows its account chooser), unless
    the provider lists its ``prompt_values_supported`` without it: then ``login`` (sign
    in again, as anyone) if listed, else nothing.
    """
    supported = metadata.get("prompt_values_supported")
    if not isinstance(supported, list) or "select_account" in supported:
        return "select_account"
    return "login" if "login" in supported else None


class OIDCClient:
    """A typed face on Authlib's (untyped) Flask OAuth 2 client for one app."""

    def __init__(self, settings: Settings, engine: sa.Engine, app: t.Any,
                 states: sa.Table) -> None:
        self.settings = settings
        oauth = OAuth(cache=StateStore(engine, states))
        # Not 'oauth.init_app(app)': it would take over
        # app.extensions["authlib.integrations.flask_client"], which belongs to the
        # app's own OAuth registry if it has one.
        oauth.app = app
        # Every client parameter is given, so that 'FLASKER_AUTH_*' keys of app.config
        # (which Authlib would read) cannot change the endpoints.
        self._client: t.Any = oauth.register(
            CLIENT_NAME,
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            server_metadata_url=settings.metadata_url,
            client_kwargs={"scope": SCOPE, "code_challenge_method": "S256",
                           "default_timeout": HTTP_TIMEOUT},
            request_token_url=None, request_token_params=None,
            access_token_url=None, access_token_params=None,
            refresh_token_url=None, refresh_token_params=None,
            authorize_url=None, authorize_params=None, api_base_url=None,
        )

    def _metadata(self) -> dict[str, t.Any]:
        try:
            metadata = self._client.load_server_metadata()
        except (requests.RequestException, ValueError) as e:
            raise Refusal("provider_unavailable",
                          f"discovery document {self.settings.metadata_url}: {e}") from e
        if not isinstance(metadata.get("issuer"), str):
            raise Refusal("provider_unavailable",
                          f"discovery document {self.settings.metadata_url} has no 'issuer'")
        return t.cast(dict[str, t.Any], metadata)

    def authorization_url(self, redirect_uri: str, next_url: str, *,
                          another_account: bool = False) -> str:
        """Start a sign-in: remember its PKCE verifier, nonce and ``next``; the provider's URL.

        :param another_account: ask the provider to let the user pick another account
            (the retry of a refused sign-in), with :func:`another_account_prompt`.
        """
        metadata = self._metadata()
        nonce = secrets.token_urlsafe(32)
        extra = {"hd": self.settings.hosted_domain} if self.settings.hosted_domain else {}
        prompt = another_account_prompt(metadata) if another_account else None
        if prompt is not None:
            extra["prompt"] = prompt
        try:
            rv = dict(self._client.create_authorization_url(redirect_uri, nonce=nonce, **extra))
        except (requests.RequestException, RuntimeError, ValueError) as e:
            raise Refusal("provider_unavailable", str(e)) from e
        url = rv.pop("url")
        self._client.save_authorize_data(redirect_uri=redirect_uri, next=next_url, **rv)
        return str(url)

    def finish(self, args: Mapping[str, str]) -> tuple[Identity, str]:
        """Complete a sign-in from the callback's query: the identity and where to go next."""
        framework = self._client.framework
        state = args.get("state")
        data: dict[str, t.Any] | None = None
        if state:
            data = framework.get_state_data(session, state)
            framework.clear_state_data(session, state)
        next_url = str(data.get("next") or "/") if data else None
        try:
            if args.get("error"):
                raise Refusal("provider_error",
                              f"{args.get('error')}: {args.get('error_description', '')}".strip())
            if not data or not data.get("nonce") or not data.get("code_verifier"):
                raise Refusal("state_mismatch", "no pending sign-in of this session has this"
                              " state (unknown, already used, expired or from another browser)")
            return self._complete(args, data), next_url or "/"
        except Refusal as refusal:  # the refusal page's retry goes where the sign-in was to
            refusal.next_url = next_url
            raise

    def _complete(self, args: Mapping[str, str], data: dict[str, t.Any]) -> Identity:
        """The identity of the sign-in ``data`` (found by its state) that ``args`` completes."""
        metadata = self._metadata()
        issuers = accepted_issuers(metadata["issuer"])
        # RFC 9207: a provider that names itself in the response must be the expected one.
        if "iss" in args and args["iss"] not in issuers:
            raise Refusal("issuer_mismatch", f"authorization response from iss={args['iss']!r}")
        code = args.get("code")
        if not code:
            raise Refusal("token_exchange_failed", "the callback has no 'code'")
        try:
            token = self._client.fetch_access_token(
                redirect_uri=data["redirect_uri"], code=code, code_verifier=data["code_verifier"])
        except OAuthError as e:
            raise Refusal("token_exchange_failed", f"{e.error}: {e.description}") from e
        except requests.RequestException as e:
            raise Refusal("provider_unavailable", f"token endpoint: {e}") from e
        except ValueError as e:
            raise Refusal("token_exchange_failed", f"unreadable token response: {e}") from e
        if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
            raise Refusal("invalid_id_token", "the token response has no 'id_token'")
        claims = self._parse_id_token(token, data["nonce"], issuers)
        if lacks_email(claims):
            claims = merge_userinfo(claims, self._userinfo(token, metadata, claims))
            if claims.get("email") is None:
                raise Refusal("email_missing", f"neither the ID token nor the userinfo response"
                              f" has 'email' (the scope 'email' was asked for): {EMAIL_NEEDS}",
                              sub=claims.get("sub"))
        return verify_claims(claims, client_id=self.settings.client_id, issuers=issuers,
                             nonce=data["nonce"], hosted_domain=self.settings.hosted_domain)

    def _userinfo(self, token: dict[str, t.Any], metadata: Mapping[str, t.Any],
                  claims: Mapping[str, t.Any]) -> dict[str, t.Any]:
        """The userinfo endpoint's answer, asked with the sign-in's access token."""
        endpoint = metadata.get("userinfo_endpoint")
        sub = claims.get("sub")
        if not isinstance(endpoint, str) or not endpoint:
            raise Refusal("email_missing", f"the ID token has no 'email' or 'email_verified' and"
                          f" the discovery document has no 'userinfo_endpoint': {EMAIL_NEEDS}",
                          sub=sub)
        if not isinstance(token.get("access_token"), str) or not token["access_token"]:
            raise Refusal("email_missing", f"the ID token has no 'email' or 'email_verified' and"
                          f" the token response has no 'access_token' to ask the userinfo"
                          f" endpoint with: {EMAIL_NEEDS}", sub=sub)
        try:
            # Authlib's: GET on the metadata's 'userinfo_endpoint' with the bearer token.
            info = self._client.userinfo(token=token)
        except (ValueError, TypeError) as e:
            # First: requests' JSONDecodeError is a RequestException too.
            raise Refusal("userinfo_failed", f"userinfo endpoint {endpoint}: the answer is not a"
                          f" JSON object (a signed or encrypted userinfo response,"
                          f" 'application/jwt', is not supported): {e}", sub=sub) from e
        except (requests.RequestException, AuthlibBaseError) as e:
            raise Refusal("userinfo_failed", f"userinfo endpoint {endpoint}: {e}", sub=sub) from e
        return dict(info)

    def _parse_id_token(self, token: dict[str, t.Any], nonce: str,
                        issuers: frozenset[str]) -> dict[str, t.Any]:
        options = {
            "iss": {"essential": True, "values": sorted(issuers)},
            "aud": {"essential": True, "value": self.settings.client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        try:
            claims = self._client.parse_id_token(token, nonce=nonce, claims_options=options,
                                                 claims_cls=_IDToken, leeway=LEEWAY)
        except InvalidKeyIdError as e:
            raise Refusal("unknown_signing_key", str(e)) from e
        except (BadSignatureError, UnsupportedAlgorithmError) as e:
            raise Refusal("bad_signature", str(e)) from e
        except ExpiredTokenError as e:
            raise Refusal("token_expired", str(e)) from e
        except ClaimError as e:
            raise Refusal(_CLAIM_REFUSALS.get(e.claim, "invalid_id_token"), str(e)) from e
        except JoseError as e:
            raise Refusal("invalid_id_token", str(e)) from e
        except requests.RequestException as e:
            raise Refusal("provider_unavailable", f"JWKS: {e}") from e
        except ValueError as e:
            raise Refusal("invalid_id_token", f"unreadable ID token or keys: {e}") from e
        return dict(claims)
