"""Sign in with Google: ``GoogleAuthManager`` restricts an app to allowed accounts.

Built on Authlib's OpenID Connect client and Flask-Login::

    from flasker import current_project
    from flasker.ext.auth import GoogleAuthManager

    current_project.register_manager(GoogleAuthManager(), config_section="AUTH")
"""

from __future__ import annotations

from .login import current_user as current_user
from .login import login_required as login_required
from .manager import GoogleAuthManager as GoogleAuthManager
from .models import AuthSession as AuthSession
from .models import AuthToken as AuthToken
from .models import AuthUser as AuthUser
from .protect import auth_method as auth_method
from .protect import public as public

__all__ = [
    "AuthSession",
    "AuthToken",
    "AuthUser",
    "GoogleAuthManager",
    "auth_method",
    "current_user",
    "login_required",
    "public",
]
