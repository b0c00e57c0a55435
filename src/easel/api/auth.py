"""Bearer API-key authentication, answering as OpenAI does when the key is missing or wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from easel.api.context import current_response_headers
from easel.api.state import services
from easel.errors import AuthenticationError
from easel.keys.store import ApiKey, mask_key

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
UNUSABLE_KEY_MESSAGES = {
    "disabled": "The API key {key_id} is disabled. Ask the server's administrator to enable it.",
    "expired": "The API key {key_id} has expired. Ask the server's administrator for a new one.",
}


def bearer_secret(request: Request) -> str:
    """The Bearer token of the request, or OpenAI's 401 for a missing one."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationError(NO_KEY_MESSAGE)
    return secret


def require_api_key(request: Request) -> ApiKey:
    secret = bearer_secret(request)
    key = services(request).keys.find(secret)
    status = key.status() if key is not None else "unknown"
    if key is None or status == "revoked":
        raise AuthenticationError(
            f"Incorrect API key provided: {mask_key(secret)}. You can find your API key "
            "with `easel keys list` or make a new one with `easel keys create`.",
            code="invalid_api_key",
        )
    # The access log names the key by id, never by its secret.
    request.state.key_id = key.id
    if status != "active":
        raise AuthenticationError(
            UNUSABLE_KEY_MESSAGES[status].format(key_id=key.id), code=f"key_{status}"
        )
    return key


AuthorizedKey = Annotated[ApiKey, Depends(require_api_key)]


@dataclass
class Caller:
    """Who is asking, and the rate-limit headers every response to them carries."""

    key: ApiKey
    response_headers: dict[str, str]


def caller_of(key: ApiKey) -> Caller:
    # The request's own response-header dict: RequestContextMiddleware sends it with every
    # response, error responses included.
    return Caller(key, current_response_headers())
