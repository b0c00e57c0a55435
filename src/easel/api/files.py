"""Serving stored images by signed URL: the signature is the credential, as with OpenAI's URLs."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from easel.api.state import services
from easel.errors import EaselError, GoneError, NotFoundError, PermissionDeniedError
from easel.storage.local_images import LocalImageStore, UrlCheck

# Where this server serves the local store's images; object storage serves its own.
IMAGE_ROUTE = "/files/images"

router = APIRouter()


@router.api_route(IMAGE_ROUTE + "/{filename}", methods=["GET", "HEAD"])
async def image_file(
    filename: str, request: Request, expires: str | None = None, signature: str | None = None
) -> FileResponse:
    store = services(request).images
    image_id, dot, extension = filename.partition(".")
    if not dot or extension != "png" or not isinstance(store, LocalImageStore):
        raise _refusal(UrlCheck.UNKNOWN_IMAGE)
    check = store.check(image_id, expires, signature)
    if check is not UrlCheck.VALID:
        raise _refusal(check)
    # A valid URL's `expires` is a short run of ASCII digits.
    max_age = max(0, int(expires or 0) - int(time.time()))
    return FileResponse(
        store.path(image_id),
        media_type="image/png",
        headers={"Cache-Control": f"private, max-age={max_age}"},
    )


def _refusal(check: UrlCheck) -> EaselError:
    """The client's error for a URL that does not open its image: 404 for an image this server
    never had, 403 for a URL it did not sign, 410 once the URL or the image is past its time."""
    match check:
        case UrlCheck.UNSIGNED:
            return PermissionDeniedError(
                "This image URL is not signed.", param="signature", code="invalid_signature"
            )
        case UrlCheck.BAD_SIGNATURE:
            return PermissionDeniedError(
                "This image URL's signature is not valid.",
                param="signature",
                code="invalid_signature",
            )
        case UrlCheck.EXPIRED:
            return GoneError("This image URL has expired.", code="url_expired")
        case UrlCheck.NO_LONGER_STORED:
            return GoneError("This image is no longer stored.", code="url_expired")
        case _:
            return NotFoundError("No such image.", code="image_not_found")
