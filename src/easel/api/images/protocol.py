"""The wire format of /v1/images/generations, and how invalid fields are reported."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from easel.api.body import json_type_name
from easel.catalog import GenerationPlan, ModelSpec
from easel.catalog.output import OutputPlan, OutputRequest
from easel.catalog.usage_tokens import ImageUsage
from easel.engine.types import MAX_SEED, highest_first_seed
from easel.errors import InvalidRequestError, invalid_value, unknown_parameter

RESPONSE_FORMATS = ("url", "b64_json")
# OpenAI's schema: dall-e-2 unless a field only the GPT image models take is given; then the GPT
# model its examples and the edits endpoint default to.
DEFAULT_MODEL = "dall-e-2"
DEFAULT_GPT_MODEL = "gpt-image-1.5"


@dataclass(frozen=True)
class ImageJob:
    """A request checked against its model's rules: what to generate and how to deliver it."""

    plan: GenerationPlan
    # None: the engine draws one. Image i of the plan is made with seed + i.
    seed: int | None
    response_format: str
    output: OutputPlan
    # Answer with OpenAI's server-sent events, sending this many partial images first.
    stream: bool = False
    partial_images: int = 0
    # A GPT image model: its answers report the output fields used and `usage`.
    reports_output: bool = False


class RequestBody(BaseModel):
    """A request's body fields, checked as OpenAI checks them: unknown fields and wrong types are
    refused with its wording."""

    # Strict: a string "2" for n, or true for n, is a type error as on OpenAI, not coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Self:
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise request_error(exc, body) from None


class CreateImageRequest(RequestBody):
    """The request body. Every field but `prompt` may be null, which means its default."""

    prompt: str
    model: str | None = None
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    response_format: str | None = None
    # OpenAI's GPT image output fields (catalog.output): a dall-e family model accepts the values
    # that describe what it makes, so wrappers that forward every field keep working.
    stream: bool | None = None
    partial_images: int | None = None
    output_format: str | None = None
    output_compression: int | None = None
    background: str | None = None
    moderation: str | None = None
    user: str | None = None
    # OpenAI's successor to `user`.
    safety_identifier: str | None = None
    # Easel extension (OpenAI's SDK sends it with extra_body): makes a generation reproducible.
    seed: int | None = None

    @property
    def model_name(self) -> str:
        if self.model is not None:
            return self.model
        return DEFAULT_GPT_MODEL if self.output_request.given() else DEFAULT_MODEL

    @property
    def output_request(self) -> OutputRequest:
        # The request model has a field of the same name for each of OutputRequest's.
        return OutputRequest(
            **{field.name: getattr(self, field.name) for field in fields(OutputRequest)}
        )

    @property
    def end_user(self) -> str | None:
        """Who the key's per-user limits and usage records count: `safety_identifier` when given,
        being the field OpenAI asks new code to send, else `user`."""
        return self.safety_identifier if self.safety_identifier is not None else self.user

    def resolve(self, spec: ModelSpec) -> ImageJob:
        """Check every field against the requested model's catalog entry."""
        response_format = self._response_format(spec)
        plan = spec.plan(
            prompt=self.prompt, n=self.n, size=self.size, quality=self.quality, style=self.style
        )
        output = spec.plan_output(self.output_request)
        if self.seed is not None:
            _check_seed(self.seed, plan.n)
        return ImageJob(
            plan=plan,
            seed=self.seed,
            response_format=response_format,
            output=output,
            stream=bool(self.stream),
            partial_images=self.partial_images or 0,
            reports_output=spec.is_gpt_image,
        )

    def _response_format(self, spec: ModelSpec) -> str:
        if spec.is_gpt_image:
            # OpenAI's GPT image models always answer b64_json and refuse the field.
            if self.response_format is not None:
                raise unknown_parameter("response_format")
            return "b64_json"
        response_format = self.response_format or "url"
        if response_format not in RESPONSE_FORMATS:
            raise invalid_value("response_format", response_format, RESPONSE_FORMATS)
        return response_format


def _check_seed(seed: int, n: int) -> None:
    highest = highest_first_seed(n)
    if seed < 0:
        raise InvalidRequestError(
            f"{seed} is less than the minimum of 0 - 'seed'",
            param="seed",
            code="integer_below_min_value",
        )
    if seed > highest:
        raise InvalidRequestError(
            f"{seed} is greater than the maximum of {highest} - 'seed' (image i uses seed + i, "
            f"and seeds go up to {MAX_SEED})",
            param="seed",
            code="integer_above_max_value",
        )


_EXPECTED = {
    "n": "an integer",
    "seed": "an integer",
    "partial_images": "an integer",
    "output_compression": "an integer",
    "stream": "a boolean",
}


def request_error(exc: ValidationError, body: dict[str, Any]) -> InvalidRequestError:
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
    # Easel extension: the seed this image was made with; send it back (n=1) to re-make it.
    seed: int | None = None


class InputTokensDetails(BaseModel):
    text_tokens: int
    image_tokens: int


class ImagesUsage(BaseModel):
    """OpenAI's `usage` of a GPT image model's response or completed stream event."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: ImageUsage) -> ImagesUsage:
        return cls(
            input_tokens=usage.input_tokens,
            input_tokens_details=InputTokensDetails(
                text_tokens=usage.text_tokens, image_tokens=usage.image_tokens
            ),
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
        )


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    # What a GPT image model made, as OpenAI reports it; absent for the dall-e names.
    background: str | None = None
    output_format: str | None = None
    size: str | None = None
    quality: str | None = None
    usage: ImagesUsage | None = None


class _ImageStreamEvent(BaseModel):
    """What every streamed event of a GPT image model carries: its name (`image_generation.` or
    `image_edit.` by endpoint, then the kind), an image and the settings used."""

    type: str
    b64_json: str
    created_at: int
    size: str
    quality: str
    background: str
    output_format: str


class PartialImageEvent(_ImageStreamEvent):
    partial_image_index: int


class CompletedEvent(_ImageStreamEvent):
    usage: ImagesUsage
