"""Reading a JSON request body under a size limit (oversize bodies refused before read whole)."""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any

from fastapi import Request

from easel.errors import InvalidRequestError, PayloadTooLargeError

# OpenAI's request bodies nest two levels; deeper ones are refused before anything walks them.
MAX_JSON_DEPTH = 32
# JSON may escape half of a UTF-16 surrogate pair (`"\ud800"`): Python keeps it, but it is not
# a character, and encoding it (for the pipeline's tokenizer, the database, a log) fails.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than this server's limit of {limit} bytes.",
        code="request_too_large",
    )


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or a 400/413 error in OpenAI's envelope."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    if not body:
        raise InvalidRequestError(
            "The request body is empty: send a JSON object with at least a 'prompt'."
        )
    return parse_json_object(bytes(body))


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A UTF-8 JSON object of valid Unicode strings, nested at most MAX_JSON_DEPTH levels."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequestError(
            "The request body is not UTF-8. Send a JSON object encoded as UTF-8."
        ) from None
    try:
        document = json.loads(text)
    except RecursionError:  # the parser gives up on nesting deeper than Python's stack
        raise _too_deep() from None
    except ValueError:
        raise InvalidRequestError(
            "The request body is not valid JSON. Send a JSON object with "
            "'Content-Type: application/json'."
        ) from None
    if not isinstance(document, dict):
        raise InvalidRequestError(
            f"The request body must be a JSON object, not {json_type_name(document)}."
        )
    _check_values(document)
    return document


def _check_values(document: dict[str, Any]) -> None:
    """Refuse nesting beyond MAX_JSON_DEPTH and strings that are not valid Unicode, anywhere,
    naming the first offending field (breadth first, so a top-level field before its children)."""
    pending: deque[tuple[object, str | None, int]] = deque([(document, None, 0)])
    while pending:
        value, path, depth = pending.popleft()
        if depth > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                raise _not_unicode(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                if _LONE_SURROGATE.search(key):
                    raise _not_unicode(path)
                pending.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            pending.extend(
                (item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)
            )


def _too_deep() -> InvalidRequestError:
    return InvalidRequestError(
        f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels.",
        code="invalid_json",
    )


def _not_unicode(param: str | None) -> InvalidRequestError:
    where = f"'{param}'" if param else "a field name"
    return InvalidRequestError(
        f"Invalid value for {where}: the string is not valid Unicode (it holds an unpaired "
        "UTF-16 surrogate escape such as \\ud800).",
        param=param,
        code="invalid_value",
    )


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
