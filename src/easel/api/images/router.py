"""The route for /v1/images/generations."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from easel.api.auth import AuthorizedKey, caller_of
from easel.api.body import read_json_object
from easel.api.images.metering import admit_request, counted_request
from easel.api.images.serving import create_images
from easel.api.state import services

router = APIRouter()

_HOST_PATTERN = re.compile(r"^[A-Za-z0-9.\-:\[\]]+$")


@router.post("/v1/images/generations")
async def generations(request: Request, key: AuthorizedKey) -> JSONResponse:
    app_services = services(request)
    caller = caller_of(key)
    with counted_request() as outcome:
        # The key's requests per minute come first: every request counts, a malformed one too.
        await admit_request(app_services, caller)
        body = await read_json_object(request, app_services.settings.max_body_bytes)
        response = await create_images(
            app_services, body, public_base_url(request), caller, outcome
        )
    return JSONResponse(response.model_dump(exclude_none=True))


def public_base_url(request: Request) -> str:
    """The configured public URL, else what the client (or its proxy) called us by."""
    configured = services(request).settings.public_base_url
    if configured:
        return configured.rstrip("/")
    proto = _first(request.headers.get("x-forwarded-proto")) or request.url.scheme
    host = _first(request.headers.get("x-forwarded-host")) or request.headers.get("host", "")
    if proto not in ("http", "https"):
        proto = request.url.scheme
    if not _HOST_PATTERN.match(host):
        host = request.url.netloc
    return f"{proto}://{host}"


def _first(value: str | None) -> str:
    # Proxy chains append: the first entry is what the client used.
    return value.split(",")[0].strip() if value else ""
