"""The admin key: a separate Bearer secret from the environment, never an API key."""

from __future__ import annotations

import hmac

from fastapi import Request

from easel.api.auth import bearer_secret
from easel.api.state import services
from easel.errors import AuthenticationError, PermissionDeniedError


def require_admin(request: Request) -> None:
    admin_key = services(request).settings.admin_key
    if admin_key is None:
        raise PermissionDeniedError(
            "The admin API is disabled on this server: start it with EASEL_ADMIN_KEY set to a "
            "random secret of at least 32 characters.",
            code="admin_disabled",
        )
    secret = bearer_secret(request)
    if not hmac.compare_digest(secret.encode(), admin_key.encode()):
        raise AuthenticationError("Incorrect admin key provided.", code="invalid_admin_key")
