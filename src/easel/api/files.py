"""Serving stored images by signed URL: the signature is the credential, as with OpenAI's URLs."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from easel.api.state import services
from easel.errors import NotFoundError
from easel.storage.local_images import IMAGE_ROUTE, LocalImageStore

router = APIRouter()


@router.api_route(IMAGE_ROUTE + "/{filename}", methods=["GET", "HEAD"])
async def image_file(
    filename: str, request: Request, expires: str | None = None, signature: str | None = None
) -> FileResponse:
    image_id, dot, extension = filename.partition(".")
    if not dot or extension != "png":
        raise NotFoundError("No such image.", code="image_not_found")
    store = services(request).images
    if not isinstance(store, LocalImageStore):  # object storage answers its own URLs
        raise NotFoundError("No such image.", code="image_not_found")
    path = store.open(image_id, expires, signature)
    max_age = max(0, int(expires or 0) - int(time.time()))
    return FileResponse(
        path, media_type="image/png", headers={"Cache-Control": f"private, max-age={max_age}"}
    )
