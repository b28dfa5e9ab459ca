"""Who may sign in: exact, normalised e-mail addresses and exact domains."""

from __future__ import annotations

import typing as t
import unicodedata
from dataclasses import dataclass

# Only ASCII is folded: Unicode case mapping turns lookalikes into real addresses
# ('\u212a' KELVIN SIGN lowers to 'k', 'ß' casefolds to 'ss').
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_SPACE = " \t\r\n\f\v"


def _fold(value: str) -> str:
    return value.strip(_ASCII_SPACE).translate(_ASCII_LOWER)


def _clean(value: str) -> bool:
    """No whitespace or control/format character anywhere (they hide lookalikes)."""
    return not any(unicodedata.category(c)[0] in ("Z", "C") for c in value)


def normalise_email(value: object) -> str | None:
    """The comparable form of an address (ASCII case and surrounding blanks removed).

    ``None`` when it is not one ``local@domain`` address without blanks or control
    characters, so that such a value never matches anything.
    """
    if not isinstance(value, str):
        return None
    folded = _fold(value)
    local, at, domain = folded.rpartition("@")
    if not at or not local or not domain or "@" in local or not _clean(folded):
        return None
    if domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return None
    return folded


def normalise_domain(value: object) -> str | None:
    """The comparable form of a domain, or ``None`` when it is not a bare domain name."""
    if not isinstance(value, str):
        return None
    folded = _fold(value)
    if (not folded or "@" in folded or "/" in folded or not _clean(folded)
            or folded.startswith(".") or folded.endswith(".") or ".." in folded):
        return None
    return folded


@dataclass(frozen=True)
class AllowList:
    """The accounts allowed in; an empty allow-list lets no one in."""

    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, emails: t.Iterable[str], domains: t.Iterable[str]) -> AllowList:
        """Build from configured values; ``ValueError`` names the first malformed entry."""
        good_emails = set()
        for raw in emails:
            email = normalise_email(raw)
            if email is None:
                raise ValueError(f"{raw!r} is not an e-mail address such as 'alice@example.com'.")
            good_emails.add(email)
        good_domains = set()
        for raw in domains:
            domain = normalise_domain(raw)
            if domain is None:
                raise ValueError(f"{raw!r} is not a domain name such as 'example.com'.")
            good_domains.add(domain)
        return cls(frozenset(good_emails), frozenset(good_domains))

    @property
    def empty(self) -> bool:
        return not self.emails and not self.domains

    def allows(self, email: object) -> bool:
        """Whether ``email`` is listed, or its domain is (exactly: no subdomains)."""
        normalised = normalise_email(email)
        if normalised is None:
            return False
        if normalised in self.emails:
            return True
        return normalised.rpartition("@")[2] in self.domains
