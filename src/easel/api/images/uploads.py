"""Reading a multipart/form-data body with python-multipart (through Starlette's parser) under
limits: part counts, field sizes and the whole body, refused while it streams in."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from easel.api.body import too_large
from easel.errors import InvalidRequestError

MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
# OpenAI's edit form has 17 fields besides its files; a few more leave room for new ones.
MAX_FORM_FIELDS = 32
# 16 images and a mask.
MAX_FORM_FILES = 17
# A 32000-character prompt in UTF-8 takes at most 128 KiB.
MAX_FIELD_BYTES = 256 * 1024


class _BodyTooLarge(MultiPartException):
    """Raised from inside the parser's read loop, which closes the files it spooled."""


@dataclass
class Form:
    """A form's text fields and files (file contents read), each in the order sent."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[bytes]] = field(default_factory=dict)


async def read_form(request: Request, limit: int) -> Form:
    """The multipart (or url-encoded) body as a Form, or a 400/413 in OpenAI's envelope."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    parser: MultiPartParser | FormParser
    if request.headers.get("content-type", "").lower().startswith(URLENCODED):
        # A form without files (so without an image): read, to answer what it lacks.
        parser = FormParser(
            request.headers,
            _limited(request, limit),
            max_fields=MAX_FORM_FIELDS,
            max_part_size=MAX_FIELD_BYTES,
        )
    else:
        parser = MultiPartParser(
            request.headers,
            _limited(request, limit),
            max_files=MAX_FORM_FILES,
            max_fields=MAX_FORM_FIELDS,
            max_part_size=MAX_FIELD_BYTES,
        )
    try:
        items = await parser.parse()
    except _BodyTooLarge:
        raise too_large(limit) from None
    except MultiPartException as exc:
        raise InvalidRequestError(
            f"The form body could not be read: {exc.message}",
            code="invalid_multipart",
        ) from None
    form = Form()
    try:
        for name, value in items.multi_items():
            if isinstance(value, UploadFile):
                form.files.setdefault(name, []).append(await value.read())
            else:
                form.fields.setdefault(name, []).append(value)
    finally:
        await items.close()
    return form


async def _limited(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _BodyTooLarge("body too large")
        yield chunk
