"""Bearer API-key authentication, answering as OpenAI does when the key is missing or wrong."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from easel.api.state import services
from easel.errors import AuthenticationError
from easel.storage.api_keys import ApiKey, mask_key

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def require_api_key(request: Request) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationError(NO_KEY_MESSAGE)
    key = services(request).keys.verify(secret)
    if key is None:
        raise AuthenticationError(
            f"Incorrect API key provided: {mask_key(secret)}. You can find your API key "
            "with `easel keys list` or make a new one with `easel keys create`.",
            code="invalid_api_key",
        )
    return key


AuthorizedKey = Annotated[ApiKey, Depends(require_api_key)]
