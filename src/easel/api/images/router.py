"""The route for /v1/images/generations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from easel.api.auth import AuthorizedKey, caller_of
from easel.api.body import read_json_object
from easel.api.images.metering import (
    CLIENT_CLOSED_REQUEST,
    Outcome,
    admit_request,
    counted_request,
)
from easel.api.images.protocol import ImagesResponse
from easel.api.images.serving import Requester, serve_job, validated
from easel.api.images.streaming import open_stream
from easel.api.state import services

log = logging.getLogger(__name__)
router = APIRouter()

_HOST_PATTERN = re.compile(r"^[A-Za-z0-9.\-:\[\]]+$")


@router.post("/v1/images/generations")
async def generations(request: Request, key: AuthorizedKey) -> Response:
    app_services = services(request)
    caller = caller_of(key)
    async with contextlib.AsyncExitStack() as exits:
        outcome = exits.enter_context(counted_request())
        # The key's requests per minute come first: every request counts, a malformed one too.
        await admit_request(app_services, caller)
        body = await read_json_object(request, app_services.settings.max_body_bytes)
        image_request, job = validated(app_services, body, caller, outcome)
        requester = Requester(caller, image_request.end_user, public_base_url(request))
        if job.stream:
            # The generation takes over `exits`: the request is counted when it ends.
            return await open_stream(app_services, job, requester, outcome, "generations", exits)
        work = serve_job(app_services, job, requester, outcome, "generations")
        response = await unless_disconnected(request, asyncio.ensure_future(work), outcome)
        if response is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
    # pydantic-core writes the JSON (megabytes of base64 for large images) far faster than
    # json.dumps.
    return Response(response.model_dump_json(exclude_none=True), media_type="application/json")


async def unless_disconnected(
    request: Request, work: asyncio.Future[ImagesResponse], outcome: Outcome
) -> ImagesResponse | None:
    """The work's result, or None once the client has gone: then the request ends as 499 and
    its work is cancelled, which takes it out of the engine's queue or lets its batch stop
    early."""
    gone = asyncio.ensure_future(_client_gone(request))
    either: set[asyncio.Future[Any]] = {work, gone}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            return work.result()
        log.info("client disconnected; cancelling its generation")
        # Before the cancellation lands in the work, whose usage record and log line report it.
        outcome.status = CLIENT_CLOSED_REQUEST
        work.cancel()
        return None
    except asyncio.CancelledError:  # the server is shutting down: take the work with us
        work.cancel()
        raise
    finally:
        gone.cancel()


async def _client_gone(request: Request) -> None:
    """Returns when the server reports the client's disconnect. The body has been read, so the
    next ASGI message is the disconnect: waiting on it costs nothing, unlike polling."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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
