"""Cases shared by the auth tests: ``next`` targets that must never leave the site.

``test_ext_auth.py`` sends them through a real sign-in, ``test_ext_auth_units.py`` to
``safe_next`` itself.
"""

from __future__ import annotations

BYPASSES = [
    "//evil.com",
    "///evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "/\\/evil.com",
    "https:evil.com",
    "https://evil.com",
    "http://localhost.evil.com/",
    "/%2F%2Fevil.com",
    "/%2f%2fevil.com",
    "%2F%2Fevil.com",
    "/%5Cevil.com",
    "/%252F%252Fevil.com",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r/evil.com",
    " //evil.com",
    "evil.com",
    "/auth/logout",
    "/auth/start?next=//evil.com",
]
