"""The options of ``GoogleAuthManager``: constructor keywords, overridden by ``[AUTH]``."""

from __future__ import annotations

import ipaddress
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from ...config import (
    ENV_PREFIX,
    SECRET_HOWTO,
    Config,
    ConfigError,
    Option,
    to_bool,
    to_list,
    to_str,
    weak_secret_reason,
)
from ...util.convert import sentence
from .allowlist import AllowList, normalise_domain

GOOGLE_METADATA_URL = "https://accounts.google.com/.well-known/openid-configuration"
GOOGLE_CONSOLE = "https://console.cloud.google.com/apis/credentials"

OPTIONS: tuple[Option, ...] = (
    Option("CLIENT_ID", to_str, None,
           "Client ID of the OAuth client (Google Cloud console, 'Web application')."),
    Option("CLIENT_SECRET", to_str, None,
           "Its client secret; required outside testing (use the _FILE variable for a secret)."),
    Option("AUTHORIZED_EMAILS", to_list, [],
           "Addresses allowed to sign in (comma list); compared exactly, ignoring case."),
    Option("AUTHORIZED_DOMAINS", to_list, [],
           "Domains whose addresses may sign in (comma list); subdomains are not included."),
    Option("HOSTED_DOMAIN", to_str, None,
           "Google Workspace domain the account must belong to (the ID token's 'hd')."),
    Option("PROTECT_ALL_VIEWS", to_bool, True,
           "Require a signed-in user on every view but static files, auth routes, health"
           " checks and views marked @public."),
    Option("URL_PREFIX", to_str, "/auth", "URL prefix of the sign-in, sign-out and token pages."),
    Option("CALLBACK_URL", to_str, "/oauth2callback",
           "Path of the OAuth redirect URI, joined to URL_PREFIX."),
    Option("METADATA_URL", to_str, GOOGLE_METADATA_URL,
           "OpenID Connect discovery document of the provider."),
    Option("PROVIDER_NAME", to_str, None,
           "The provider's name on the sign-in button ('Sign in with <name>'); by default"
           " 'Google' for Google's METADATA_URL, else that URL's host."),
)
#: The longest ``PROVIDER_NAME``: it is a button's label.
MAX_PROVIDER_NAME = 60


@dataclass(frozen=True)
class Settings:
    """Resolved, validated options of one app."""

    client_id: str
    client_secret: str | None
    allow_list: AllowList
    hosted_domain: str | None
    protect_all_views: bool
    url_prefix: str
    callback_path: str
    metadata_url: str
    #: Shown on the sign-in button; see :func:`default_provider_name`.
    provider_name: str

    @property
    def callback_url(self) -> str:
        """The redirect URI's path, as registered with the provider."""
        return self.url_prefix + self.callback_path


def default_provider_name(metadata_url: str) -> str:
    """'Google' for Google's discovery document, else the host of ``metadata_url``.

    The host of the URL, not the discovery document's ``issuer``: the sign-in page is
    drawn without asking the provider anything, so it works while the provider is down.
    A discovery document sits under its issuer, so the two hosts are the same in practice.
    """
    if metadata_url == GOOGLE_METADATA_URL:
        return "Google"
    return urlsplit(metadata_url).hostname or "your identity provider"


class _Where:
    """Says where an option came from, for error messages."""

    def __init__(self, config: Config, section: str, constructor: t.Mapping[str, t.Any]) -> None:
        self.config = config
        self.section = section
        self.constructor = constructor

    def name(self, key: str) -> str:
        return f"{self.section}.{key}"

    def source(self, key: str) -> str:
        source = self.config.source_of(self.section, key)
        if source is not None:
            return f" ({source})"
        if self.constructor.get(key) is not None:
            return " (GoogleAuthManager's arguments)"
        return ""

    def how_to_set(self, key: str) -> str:
        return (f"set '{key}' under [{self.section}] or the environment variable"
                f" '{ENV_PREFIX}{self.section}__{key}'")

    def error(self, key: str, value: t.Any, problem: str) -> ConfigError:
        return ConfigError(f"Config '{self.name(key)}' has value {value!r}{self.source(key)}."
                           f" {problem}")


def _as_list(value: t.Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return to_list(value)
    return [str(v) for v in value]


def _path(where: _Where, key: str, value: t.Any, *, allow_root: bool) -> str:
    if not isinstance(value, str):
        raise where.error(key, value, "Expected a path such as '/auth'.")
    path = value.strip()
    if path != "/":
        path = path.rstrip("/")
    if (not path.startswith("/") or "//" in path or "?" in path or "#" in path
            or any(c.isspace() for c in path) or (path == "/" and not allow_root)):
        raise where.error(key, value, "Expected a path such as '/auth' (starting with '/',"
                                      " without query or fragment).")
    return path


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_settings(values: t.Mapping[str, t.Any], *, config: Config, section: str,
                   constructor: t.Mapping[str, t.Any], testing: bool) -> Settings:
    """Check the options read from ``section`` (over the constructor's) and settle them.

    ``values`` are the section's, as :meth:`flasker.Extension.init_app` resolved them
    (option defaults < constructor keywords < the section). Every malformed or missing
    value is a :class:`ConfigError` naming the key, where it came from and the fix.
    """
    where = _Where(config, section, constructor)

    client_id = values["CLIENT_ID"]
    if not isinstance(client_id, str) or not client_id.strip():
        raise ConfigError(
            f"Config '{where.name('CLIENT_ID')}' is required: create an OAuth client of type"
            f" 'Web application' at {GOOGLE_CONSOLE} and {where.how_to_set('CLIENT_ID')}."
        )
    secret = values["CLIENT_SECRET"]
    if secret is not None and not isinstance(secret, str):
        raise where.error("CLIENT_SECRET", "********", "Expected a string.")
    if not testing:
        reason = weak_secret_reason(secret)
        if reason is not None:
            raise ConfigError(
                f"Config '{where.name('CLIENT_SECRET')}' cannot be used outside testing:"
                f" {reason}{where.source('CLIENT_SECRET')}. Copy the client secret of the OAuth"
                f" client from {GOOGLE_CONSOLE} and {where.how_to_set('CLIENT_SECRET')}"
                f" (or '..._FILE' naming a file that holds it)."
            )

    emails, domains = values["AUTHORIZED_EMAILS"], values["AUTHORIZED_DOMAINS"]
    try:
        allow_list = AllowList.parse(_as_list(emails), [])
    except ValueError as e:
        raise where.error("AUTHORIZED_EMAILS", emails, sentence(e)) from None
    try:
        allow_list = AllowList(allow_list.emails, AllowList.parse([], _as_list(domains)).domains)
    except ValueError as e:
        raise where.error("AUTHORIZED_DOMAINS", domains, sentence(e)) from None

    hosted_domain = values["HOSTED_DOMAIN"] or None  # an empty variable means "not set"
    if hosted_domain is not None:
        normalised = normalise_domain(hosted_domain)
        if normalised is None:
            raise where.error("HOSTED_DOMAIN", hosted_domain,
                              "Expected a domain name such as 'example.com'.")
        hosted_domain = normalised

    protect = values["PROTECT_ALL_VIEWS"]
    if isinstance(protect, str):
        try:
            protect = to_bool(protect)
        except ValueError as e:
            raise where.error("PROTECT_ALL_VIEWS", protect, sentence(e)) from None
    if not isinstance(protect, bool):
        raise where.error("PROTECT_ALL_VIEWS", protect, "Expected true or false.")

    url_prefix = _path(where, "URL_PREFIX", values["URL_PREFIX"], allow_root=False)
    callback = _path(where, "CALLBACK_URL", values["CALLBACK_URL"], allow_root=False)

    metadata_url = values["METADATA_URL"]
    parts = urlsplit(metadata_url if isinstance(metadata_url, str) else "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise where.error("METADATA_URL", metadata_url,
                          f"Expected the URL of a discovery document, such as"
                          f" '{GOOGLE_METADATA_URL}'.")
    if parts.scheme != "https" and not _is_loopback(parts.hostname) and not testing:
        raise where.error("METADATA_URL", metadata_url,
                          "Expected an 'https://' URL: keys and endpoints fetched over plain"
                          " HTTP could be replaced on the way.")

    provider_name = values["PROVIDER_NAME"]
    if provider_name is not None and not isinstance(provider_name, str):
        raise where.error("PROVIDER_NAME", provider_name, "Expected a name such as 'Okta'.")
    provider_name = (provider_name or "").strip()  # an empty variable means "not set"
    if len(provider_name) > MAX_PROVIDER_NAME or not provider_name.isprintable():
        raise where.error("PROVIDER_NAME", values["PROVIDER_NAME"],
                          f"Expected a name such as 'Okta' of at most {MAX_PROVIDER_NAME}"
                          f" printable characters, for the button 'Sign in with <name>'.")

    return Settings(
        client_id=client_id.strip(),
        client_secret=secret,
        allow_list=allow_list,
        hosted_domain=hosted_domain,
        protect_all_views=protect,
        url_prefix=url_prefix,
        callback_path=callback,
        metadata_url=metadata_url,
        provider_name=provider_name or default_provider_name(metadata_url),
    )


def check_secret_key(app_config: t.Mapping[str, t.Any], config: Config) -> None:
    """Refuse a weak Flask ``SECRET_KEY``: it signs the session that carries the sign-in."""
    reason = weak_secret_reason(app_config.get("SECRET_KEY"))
    if reason is None:
        return
    source = config.source_of("APP", "SECRET_KEY")
    where = f" ({source})" if source else ""
    raise ConfigError(
        f"Config 'APP.SECRET_KEY' cannot be used with GoogleAuthManager outside testing:"
        f" {reason}{where}; it signs the session cookie that carries the sign-in."
        f" {SECRET_HOWTO} and set it as 'SECRET_KEY' under [APP] or as the environment"
        f" variable '{ENV_PREFIX}APP__SECRET_KEY'."
    )
