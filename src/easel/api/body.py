"""Reading a JSON request body under a size limit, refusing oversize bodies before reading them whole."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from easel.errors import InvalidRequestError, PayloadTooLargeError


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than this server's limit of {limit} bytes.",
        code="request_too_large",
    )


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or a 400/413 error in OpenAI's envelope."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    if not body:
        raise InvalidRequestError(
            "The request body is empty: send a JSON object with at least a 'prompt'."
        )
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestError(
            "The request body is not valid JSON. Send a JSON object with "
            "'Content-Type: application/json'."
        ) from None
    if not isinstance(document, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, not {json_type_name(document)}."
        )
    return document


def json_type_name(value: object) -> str:
    """How a JSON value's type reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
