"""The wire format of /v1/images/generations, and how invalid fields are reported."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from easel.api.body import json_type_name
from easel.errors import InvalidRequestError, unknown_parameter

RESPONSE_FORMATS = ("url", "b64_json")
DEFAULT_MODEL = "dall-e-2"


class CreateImageRequest(BaseModel):
    """The request body. Every field but `prompt` may be null, which means its default."""

    # Strict: a string "2" for n, or true for n, is a type error as on OpenAI, not coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    response_format: str | None = None
    user: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CreateImageRequest:
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise _first_error(exc, body) from None


_EXPECTED = {"n": "an integer"}


def _first_error(exc: ValidationError, body: dict[str, Any]) -> InvalidRequestError:
    error = exc.errors()[0]
    param = str(error["loc"][0]) if error["loc"] else None
    if error["type"] == "missing":
        return InvalidRequestError(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if error["type"] == "extra_forbidden" and param is not None:
        return unknown_parameter(param)
    expected = _EXPECTED.get(param or "", "a string")
    got = json_type_name(body.get(param)) if param else "another type"
    return InvalidRequestError(
        f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
        param=param,
        code="invalid_type",
    )


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
