"""Sign in with Google: ``GoogleAuthManager`` restricts an app to allowed accounts.

Built on Authlib's OpenID Connect client and Flask-Login; it reads ``[AUTH]``::

    from flasker import current_project
    from flasker.ext.auth import GoogleAuthManager

    current_project.register_manager(GoogleAuthManager())

Its tables belong to the project: ``auth_models()`` returns the current app's classes.
"""

from __future__ import annotations

from .login import current_user as current_user
from .login import login_required as login_required
from .manager import GoogleAuthManager as GoogleAuthManager
from .models import AuthLoginStateBase as AuthLoginStateBase
from .models import AuthModels as AuthModels
from .models import AuthSessionBase as AuthSessionBase
from .models import AuthTokenBase as AuthTokenBase
from .models import AuthUserBase as AuthUserBase
from .models import auth_models as auth_models
from .models import declare_models as declare_models
from .protect import auth_method as auth_method
from .protect import public as public

__all__ = [
    "AuthLoginStateBase",
    "AuthModels",
    "AuthSessionBase",
    "AuthTokenBase",
    "AuthUserBase",
    "GoogleAuthManager",
    "auth_method",
    "auth_models",
    "current_user",
    "declare_models",
    "login_required",
    "public",
]
