"""The routes for /v1/images/edits (multipart or JSON; streamed as OpenAI's `image_edit.*`
events with `stream: true`) and /v1/images/variations (multipart; never streamed, as on OpenAI)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from easel.api.auth import AuthorizedKey, Caller, caller_of
from easel.api.body import read_json_object
from easel.api.images.edit_request import (
    CreateEditRequest,
    CreateVariationRequest,
    ImageUrl,
    form_body,
    form_images,
    json_image_urls,
)
from easel.api.images.image_urls import UrlPolicy, image_url_bytes, is_public_address, resolve_host
from easel.api.images.metering import (
    CLIENT_CLOSED_REQUEST,
    Outcome,
    admit_request,
    counted_request,
)
from easel.api.images.protocol import ImageJob, ImagesResponse
from easel.api.images.router import public_base_url, unless_disconnected
from easel.api.images.serving import Requester, serve_job
from easel.api.images.streaming import open_stream
from easel.api.images.uploads import MULTIPART, URLENCODED, Form, read_form
from easel.api.state import AppServices, services
from easel.catalog import ModelSpec
from easel.catalog.edit_rules import ImageFile
from easel.errors import InvalidRequestError, unknown_parameter
from easel.limits.limiter import require_model

router = APIRouter()

JSON = "application/json"
FORMS = (MULTIPART, URLENCODED)


@router.post("/v1/images/edits")
async def edits(request: Request, key: AuthorizedKey) -> Response:
    app_services = services(request)
    caller = caller_of(key)
    async with contextlib.AsyncExitStack() as exits:
        outcome = exits.enter_context(counted_request())
        await admit_request(app_services, caller)
        limit = app_services.settings.max_upload_bytes
        # The body is read whole before the work starts: then the next message is a disconnect.
        media_type = _media_type(request)
        if media_type in FORMS:
            form = await read_form(request, limit)
            job, user = await _edit_form(app_services, form, caller, outcome)
        elif media_type == JSON:
            body = await read_json_object(request, limit)
            job, user = await _edit_json(app_services, body, caller, outcome)
        else:
            raise _unsupported_media_type(media_type, f"'{MULTIPART}' or '{JSON}'")
        requester = Requester(caller, user, public_base_url(request))
        if job.stream:
            # The edit takes over `exits`: the request is counted when it ends.
            return await open_stream(app_services, job, requester, outcome, "edits", exits)
        work = serve_job(app_services, job, requester, outcome, "edits")
        return await _respond(request, work, outcome)


@router.post("/v1/images/variations")
async def variations(request: Request, key: AuthorizedKey) -> Response:
    app_services = services(request)
    caller = caller_of(key)
    with counted_request() as outcome:
        await admit_request(app_services, caller)
        media_type = _media_type(request)
        if media_type not in FORMS:
            raise _unsupported_media_type(media_type, f"'{MULTIPART}'")
        form = await read_form(request, app_services.settings.max_upload_bytes)
        requester = Requester(caller, None, public_base_url(request))
        return await _respond(request, _vary(app_services, form, requester, outcome), outcome)


async def _edit_form(
    app_services: AppServices, form: Form, caller: Caller, outcome: Outcome
) -> tuple[ImageJob, str | None]:
    edit = CreateEditRequest.parse(form_body(form))
    images, mask = form_images(form)
    spec = _model(app_services, caller, edit.model_name, outcome)
    return await _checked_edit(spec, edit, images, mask)


async def _edit_json(
    app_services: AppServices, body: dict[str, Any], caller: Caller, outcome: Outcome
) -> tuple[ImageJob, str | None]:
    image_urls, mask_url = json_image_urls(body)
    edit = CreateEditRequest.parse(body)
    spec = _model(app_services, caller, edit.model_name, outcome)
    if not spec.is_gpt_image:
        raise InvalidRequestError(
            f"JSON edits support the GPT image models only; '{spec.name}' edits take "
            f"'{MULTIPART}'.",
            param="model",
            code="invalid_value",
        )
    policy = _url_policy(app_services, spec)
    images = [await _image_file(image_url, policy) for image_url in image_urls]
    mask = await _image_file(mask_url, policy) if mask_url is not None else None
    return await _checked_edit(spec, edit, images, mask)


async def _image_file(image_url: ImageUrl, policy: UrlPolicy | None) -> ImageFile:
    data = await image_url_bytes(image_url.url, image_url.param, policy)
    return ImageFile(image_url.param, data)


async def _checked_edit(
    spec: ModelSpec, edit: CreateEditRequest, images: list[ImageFile], mask: ImageFile | None
) -> tuple[ImageJob, str | None]:
    """The edit's job, and the end user its limits and usage count."""
    # Decoding and checking images is CPU work: off the event loop.
    job = await asyncio.to_thread(edit.resolve_edit, spec, images, mask)
    return job, edit.end_user


async def _vary(
    app_services: AppServices, form: Form, requester: Requester, outcome: Outcome
) -> ImagesResponse:
    variation = CreateVariationRequest.parse(form_body(form))
    for name in form.files:
        if name != "image":
            raise unknown_parameter(name)
    images = form.files.get("image", [])
    if len(images) != 1:
        raise InvalidRequestError(
            "Missing required parameter: 'image'."
            if not images
            else "Invalid 'image': a variation takes exactly one image.",
            param="image",
            code="missing_required_parameter" if not images else "invalid_value",
        )
    spec = _model(app_services, requester.caller, variation.model_name, outcome)
    job = await asyncio.to_thread(variation.resolve_variation, spec, ImageFile("image", images[0]))
    requester = Requester(requester.caller, variation.user, requester.base_url)
    return await serve_job(app_services, job, requester, outcome, "variations")


def _model(app_services: AppServices, caller: Caller, name: str, outcome: Outcome) -> ModelSpec:
    spec = app_services.catalog.get(name)
    outcome.model = spec.name
    require_model(caller.key, spec.name)
    return spec


def _url_policy(app_services: AppServices, spec: ModelSpec) -> UrlPolicy | None:
    settings = app_services.settings
    if not settings.fetch_image_urls:
        return None
    return UrlPolicy(
        max_bytes=spec.max_input_bytes,
        timeout_seconds=settings.fetch_timeout_seconds,
        resolve=resolve_host,
        allowed=is_public_address,
    )


async def _respond(
    request: Request, work: Coroutine[Any, Any, ImagesResponse], outcome: Outcome
) -> Response:
    response = await unless_disconnected(request, asyncio.ensure_future(work), outcome)
    if response is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return Response(response.model_dump_json(exclude_none=True), media_type=JSON)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _unsupported_media_type(media_type: str, expected: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Unsupported Content-Type '{media_type or 'none'}': send {expected}.",
        code="unsupported_content_type",
    )
